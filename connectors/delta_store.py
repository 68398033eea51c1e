"""Delta tables of a stream: data and ledger committed together, dead letters beside them.

Every data commit carries the ledger update as `txn` actions and a description of the ranges as
commit metadata, so a commit lands all of its micro-batch and its progress, or nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from connectors.errors import LakeportError
from connectors.ledger import LedgerUpdate
from connectors.ranges import OffsetRange
from connectors.table_schema import DEAD_LETTER_SCHEMA


class ConcurrentChange(LakeportError):
    """Another writer changed the same partitions first; re-plan from the new ledger."""


class TableWriteError(LakeportError):
    """The table could not be written (permissions, storage outage); nothing was committed."""


def window_predicate(ranges: Iterable[OffsetRange]) -> str:
    """A Delta predicate selecting exactly the rows of `ranges`."""
    parts = [
        f"(kafka_partition = {r.partition} AND kafka_offset >= {r.start} AND kafka_offset < {r.end})"
        for r in sorted(ranges)
    ]
    return " OR ".join(parts) if parts else "false"


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


@dataclass
class DeltaStore:
    """One Delta table at `uri`, created on first use with `schema`."""

    uri: str
    schema: pa.Schema
    storage_options: dict[str, str] = field(repr=False)  # may hold storage keys

    def open(self) -> DeltaTable:
        """The table, created empty if it does not exist yet (so writers never race on creation)."""
        try:
            return DeltaTable(self.uri, storage_options=self.storage_options)
        except TableNotFoundError:
            return DeltaTable.create(
                self.uri, self.schema, mode="ignore", storage_options=self.storage_options
            )

    def open_existing(self) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri, storage_options=self.storage_options)
        except TableNotFoundError:
            return None

    def count_in(self, table: DeltaTable, ranges: Iterable[OffsetRange]) -> int:
        """Rows of `ranges` in this snapshot (file statistics prune most files)."""
        expr = window_filter(ranges)
        if expr is None:
            return 0
        return table.to_pyarrow_dataset().count_rows(filter=expr)

    def commit(
        self,
        table: DeltaTable,
        rows: pa.Table,
        update: LedgerUpdate,
        operation: str,
        replace: list[OffsetRange] | None = None,
        extra: dict[str, str] | None = None,
    ) -> int:
        """Append `rows` (or swap them in for the `replace` window) with the ledger update.

        Raises ConcurrentChange when another writer committed to the same partitions since
        `table`'s snapshot: the loser never lands a duplicate.
        """
        properties = CommitProperties(
            custom_metadata=update.commit_metadata(operation, extra),
            app_transactions=update.transactions(),
        )
        try:
            write_deltalake(
                table,
                rows,
                mode="overwrite" if replace is not None else "append",
                predicate=window_predicate(replace) if replace is not None else None,
                schema_mode="merge",
                commit_properties=properties,
                writer_properties=WriterProperties(compression="SNAPPY"),
                storage_options=self.storage_options,
            )
        except CommitFailedError as exc:
            raise ConcurrentChange(f"{self.uri}: {exc}") from None
        except (OSError, DeltaError) as exc:
            raise TableWriteError(f"cannot write to table {self.uri}: {exc}") from None
        return table.version()

    def replace_window(self, ranges: list[OffsetRange], rows: pa.Table) -> None:
        """Make the window hold exactly `rows` (dead letters: idempotent on retry)."""
        table = self.open_existing()
        if table is None:
            if rows.num_rows == 0:
                return
            table = self.open()
        elif rows.num_rows == 0 and self.count_in(table, ranges) == 0:
            return
        try:
            write_deltalake(
                table,
                rows,
                mode="overwrite",
                predicate=window_predicate(ranges),
                schema_mode="merge",
                storage_options=self.storage_options,
            )
        except (OSError, DeltaError) as exc:
            raise TableWriteError(f"cannot write to table {self.uri}: {exc}") from None


def dead_letter_store(uri: str, storage_options: dict[str, str]) -> DeltaStore:
    return DeltaStore(uri, DEAD_LETTER_SCHEMA, storage_options)
