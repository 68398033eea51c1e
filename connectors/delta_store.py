"""Where a Delta table lives, how to open and read it, and storage failures in plain words.

Readers (`status`, `audit`, `query`, re-drive) and the writer open tables only through
`DeltaStore`, so storage options (which may hold keys) stay out of reprs and every storage
failure becomes one catalogued error naming the table and the fix.

Tables are read through `source` / `read_rows`: pyarrow's dataset (lazy, with projection and
filter pushdown) when delta-rs can give one, else delta-rs' own DataFusion `scan()`, which also
reads what other writers add, such as Spark's deletion vectors (`to_pyarrow_dataset()` refuses
those tables).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, DeltaProtocolError, TableNotFoundError

from connectors.errors import (
    AccessDenied,
    ConfigError,
    LakeportError,
    NotFound,
    StorageUnavailable,
)
from connectors.ranges import OffsetRange
from connectors.retry import retrying


def window_predicate(ranges: Iterable[OffsetRange], alias: str = "") -> str:
    """A Delta predicate selecting exactly the rows of `ranges` (of table `alias`, in a MERGE)."""
    p, o = (f"{alias}.{c}" if alias else c for c in ("kafka_partition", "kafka_offset"))
    parts = [
        f"({p} = {r.partition} AND {o} >= {r.start} AND {o} < {r.end})" for r in sorted(ranges)
    ]
    return f"({' OR '.join(parts)})" if parts else "false"


def window_filter(ranges: Iterable[OffsetRange]) -> ds.Expression | None:
    """The same window as a pyarrow dataset filter, for counting rows with file pruning."""
    expr: ds.Expression | None = None
    for r in ranges:
        one = (
            (ds.field("kafka_partition") == r.partition)
            & (ds.field("kafka_offset") >= r.start)
            & (ds.field("kafka_offset") < r.end)
        )
        expr = one if expr is None else expr | one
    return expr


class TableScan:
    """A Delta table that DuckDB (or any Arrow consumer) can scan again and again.

    Each scan is a fresh `DeltaTable.scan()`: delta-rs' DataFusion reader, which applies
    deletion vectors and column mapping. It has no projection pushdown from DuckDB, so it is
    the fallback for tables `to_pyarrow_dataset()` refuses, not the default.
    """

    def __init__(self, table: DeltaTable, columns: list[str] | None = None) -> None:
        self.table = table
        self.columns = columns

    def __arrow_c_stream__(self, requested_schema: object = None) -> Any:
        return self.table.scan(columns=self.columns).__arrow_c_stream__(requested_schema)


def source(table: DeltaTable, columns: list[str] | None = None) -> ds.Dataset | TableScan:
    """The table as something DuckDB can register: a lazy dataset, or a `TableScan` when the
    table uses reader features pyarrow's dataset cannot apply (deletion vectors)."""
    try:
        return table.to_pyarrow_dataset()
    except DeltaProtocolError:
        return TableScan(table, columns)


def sql_source(table: DeltaTable) -> ds.Dataset | TableScan:
    """The table for DuckDB to register: `source`, its string columns typed as string views.

    delta-rs 1.6's MERGE (derived tables) writes strings as Arrow `string_view`, and pyarrow
    26 cannot compare `string` with `string_view`: a filter DuckDB pushes into a plain dataset
    fails. Declared as views, plain-string files are cast as they are read and DuckDB passes
    view literals, so filters work on files of either kind.
    """
    found = source(table)
    if not isinstance(found, ds.FileSystemDataset):
        return found
    schema = pa.schema(
        [f.with_type(pa.string_view()) if f.type == pa.string() else f for f in found.schema]
    )
    return ds.FileSystemDataset(list(found.get_fragments()), schema, found.format, found.filesystem)


def read_rows(
    table: DeltaTable, ranges: Iterable[OffsetRange] | None = None, columns: list[str] | None = None
) -> pa.Table:
    """The rows of `ranges` (all rows if None) of this snapshot, honouring deletion vectors."""
    window = None if ranges is None else list(ranges)
    found = source(table, columns)
    if isinstance(found, ds.Dataset):
        return found.to_table(
            columns=columns, filter=None if window is None else window_filter(window)
        )
    predicate = None if window is None else window_predicate(window)
    return pa.table(table.scan(columns=columns, predicate=predicate))


def storage_error(uri: str, exc: BaseException, doing: str = "open") -> LakeportError:
    """One catalogued error for a storage failure (delta-rs reports them as OSError/DeltaError)."""
    text = _plain(str(exc))
    lower = text.lower()
    where = f"cannot {doing} table {uri}"
    if "allow_http" in lower or "url scheme is not allowed" in lower:
        return ConfigError(
            f"{where}: the storage endpoint uses http:// but HTTP is not allowed; set"
            ' AWS_ALLOW_HTTP: "true" in lakehouse.storage_options (or use https)'
        )
    if "nosuchbucket" in lower or "bucket does not exist" in lower:
        return NotFound(f"{where}: the bucket does not exist; check lakehouse.root")
    if any(
        word in lower
        for word in (
            "permission denied",
            "operation not permitted",
            "accessdenied",
            "access denied",
            "forbidden",
        )
    ):
        return AccessDenied(
            f"{where}: permission denied; check the storage credentials in"
            " lakehouse.storage_options and that they may read and write there"
        )
    if "read-only file system" in lower:
        return AccessDenied(f"{where}: the file system is read-only")
    if "connect error" in lower or "connection refused" in lower or "dns error" in lower:
        return StorageUnavailable(
            f"{where}: the storage endpoint did not answer ({_last_cause(text)}); check"
            " lakehouse.root and AWS_ENDPOINT_URL in lakehouse.storage_options, and that the"
            " store is up"
        )
    return StorageUnavailable(f"{where}: {_first_sentence(text)}")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _plain(text: str) -> str:
    """object_store's multi-line, coloured cause chain (`↳` per cause) as one line."""
    causes = [" ".join(part.split()) for part in _ANSI.sub("", text).split("↳")]
    return ": ".join(cause for cause in causes if cause)


def _last_cause(text: str) -> str:
    return text.rsplit(": ", 1)[-1]


def _first_sentence(text: str) -> str:
    """delta-rs chains its causes into one long line; the first 300 characters say enough."""
    return text if len(text) <= 300 else text[:297] + "..."


@dataclass
class DeltaStore:
    """One Delta table at `uri`, created on first write with `schema`."""

    uri: str
    schema: pa.Schema
    storage_options: dict[str, str] = field(repr=False)  # may hold storage keys

    def open(self) -> DeltaTable:
        """The table, created empty if it does not exist yet (so writers never race on creation)."""

        def attempt() -> DeltaTable:
            try:
                return DeltaTable(self.uri, storage_options=self.storage_options)
            except TableNotFoundError:
                return DeltaTable.create(
                    self.uri, self.schema, mode="ignore", storage_options=self.storage_options
                )
            except (OSError, DeltaError) as exc:
                raise storage_error(self.uri, exc) from None

        return retrying(attempt, f"open {self.uri}")

    def open_existing(self) -> DeltaTable | None:
        """The table, or None if nothing was written to it yet."""

        def attempt() -> DeltaTable | None:
            try:
                return DeltaTable(self.uri, storage_options=self.storage_options)
            except TableNotFoundError:
                return None
            except (OSError, DeltaError) as exc:
                raise storage_error(self.uri, exc) from None

        return retrying(attempt, f"open {self.uri}")

    def count_in(self, table: DeltaTable, ranges: Iterable[OffsetRange]) -> int:
        """Rows of `ranges` in this snapshot (file statistics prune most files)."""
        window = list(ranges)
        if not window:
            return 0
        found = source(table)
        if isinstance(found, ds.Dataset):
            return found.count_rows(filter=window_filter(window))
        return read_rows(table, window, columns=["kafka_offset"]).num_rows
