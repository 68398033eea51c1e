"""A replace backfill's decoded micro-batches, staged on local disk until one commit swaps them in.

A window replace is a copy-on-write overwrite: every file holding a row of the replaced spans is
rewritten without those rows. Committed per micro-batch, the spans of one replace batch cut
across the files of many forward batches (Kafka hands out partitions in a different order each
time), so the same files were rewritten again and again: a 1M-row window took 2-5x as long as
ingesting it forward. Staged, one commit replaces the spans of many micro-batches: the files
inside them are removed whole and only the files at the chunk's edges are rewritten.

The stage is an uncompressed Arrow IPC file, memory-mapped back for the commit (zero copy), so
memory stays bounded by the micro-batch; a crash loses only the stage, never table state.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import pyarrow as pa

from connectors.decoders import Decoded
from connectors.errors import ScratchSpaceError
from connectors.ranges import OffsetRange

CHUNK_BYTES = 1024**3
"""Arrow bytes staged before a commit (1M Upvest events are ~0.7 GiB)."""


class Stage:
    """Decoded batches of consecutive spans, gathered for one commit."""

    def __init__(self, chunk_bytes: int | None = None) -> None:
        self._chunk_bytes = chunk_bytes or CHUNK_BYTES
        self._dir: tempfile.TemporaryDirectory[str] | None = None  # made on first use
        self._chunks = 0
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._clear()

    def _clear(self) -> None:
        self.spans: list[OffsetRange] = []
        self.bytes = 0  # Kafka value bytes, for the report
        self._staged = 0  # Arrow bytes of the staged rows
        self._dead: list[pa.Table] = []
        self._chunks += 1

    @property
    def _file(self) -> Path:
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="lakeport-replace-")
        return Path(self._dir.name) / f"chunk-{self._chunks}.arrow"

    def add(self, spans: Iterable[OffsetRange], decoded: Decoded, value_bytes: int) -> None:
        """Stage one micro-batch (its spans follow the staged ones)."""
        try:
            if self._writer is None:
                self._writer = pa.ipc.new_file(str(self._file), decoded.rows.schema)
            for batch in decoded.rows.to_batches():
                self._writer.write_batch(batch)
        except OSError as exc:  # a small or missing scratch folder, e.g. a pod's ephemeral disk
            raise ScratchSpaceError(
                f"cannot stage the replace backfill in {tempfile.gettempdir()}: {exc}. Nothing"
                f" of it was committed; set TMPDIR to a folder with {self._chunk_bytes >> 20} MiB"
                " free and run it again"
            ) from None
        self._dead.append(decoded.dead)
        self.spans = _joined(self.spans, spans)
        self.bytes += value_bytes
        self._staged += decoded.rows.nbytes

    @property
    def full(self) -> bool:
        return self._staged >= self._chunk_bytes

    def __bool__(self) -> bool:
        return bool(self.spans)

    def take(self) -> tuple[list[OffsetRange], Decoded, int]:
        """The staged spans, rows (memory-mapped) and dead letters; the stage starts over."""
        assert self._writer is not None, "nothing staged"
        self._writer.close()
        self._writer = None
        rows = pa.ipc.open_file(pa.memory_map(str(self._file))).read_all()
        staged = (self.spans, Decoded(rows, pa.concat_tables(self._dead)), self.bytes)
        self._clear()
        return staged

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._dir is not None:
            self._dir.cleanup()


def _joined(spans: list[OffsetRange], more: Iterable[OffsetRange]) -> list[OffsetRange]:
    """`spans` and `more`, a partition's adjacent spans joined into one."""
    last = {s.partition: i for i, s in enumerate(spans)}
    result = list(spans)
    for span in more:
        i = last.get(span.partition)
        if i is not None and result[i].end == span.start:
            result[i] = OffsetRange(span.partition, result[i].start, span.end)
        else:
            last[span.partition] = len(result)
            result.append(span)
    return result
