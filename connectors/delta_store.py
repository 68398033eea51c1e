"""Where a Delta table lives, how to open it, and storage failures in plain words.

Readers (`status`, `audit`, `query`, re-drive) and the writer open tables only through
`DeltaStore`, so storage options (which may hold keys) stay out of reprs and every storage
failure becomes one catalogued error naming the table and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

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


def storage_error(uri: str, exc: BaseException, doing: str = "open") -> LakeportError:
    """One catalogued error for a storage failure (delta-rs reports them as OSError/DeltaError)."""
    text = str(exc).replace("\n", " ")
    lower = text.lower()
    where = f"cannot {doing} table {uri}"
    if "allow_http" in lower or ("http://" in lower and "https" in lower and "scheme" in lower):
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
    return StorageUnavailable(f"{where}: {_first_sentence(text)}")


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
        expr = window_filter(ranges)
        if expr is None:
            return 0
        return table.to_pyarrow_dataset().count_rows(filter=expr)
