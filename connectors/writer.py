"""The one commit path: rows and their ledger update in one Delta commit, against a known snapshot.

A `TableWriter` owns the snapshot a writer works on and the ledger as of that snapshot, so an
update is always checked against the state it is committed on. It

- writes a micro-batch's dead letters before its rows (an idempotent window replace, retried on
  conflicts), so a crash in between leaves nothing the ledger counts;
- commits rows and `txn` actions together through a `Write` (append, window replace, or any
  other delta-rs write that takes commit properties, such as a MERGE);
- handles lost races: when the partitions an update touches are unchanged in the newer snapshot,
  the update is rebased and committed again; when they changed, `ConcurrentChange` tells the
  caller to re-plan;
- reloads the table every `RELOAD_EVERY` commits (a long-lived DeltaTable replays an ever
  longer log after each commit; a fresh one starts from the latest checkpoint).

Ingestion, backfills and re-drive commit only through it; so do shard writers (disjoint
partitions never conflict in the ledger) and derived tables (their ledger records the raw
ranges they absorbed, in the same `txn` layout).
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import (
    ColumnProperties,
    CommitProperties,
    DeltaTable,
    WriterProperties,
    write_deltalake,
)
from deltalake.exceptions import CommitFailedError, DeltaError

from connectors.delta_store import DeltaStore, storage_error, window_predicate
from connectors.errors import ConcurrentChange, TransientError
from connectors.ledger import Ledger, LedgerUpdate, read_ledger
from connectors.ranges import OffsetRange
from connectors.retry import Backoff, retrying

Write = Callable[[DeltaTable, CommitProperties], None]
"""One delta-rs write of a commit's rows; it must commit with the given properties."""

_SAMPLE = 1024
_PLAIN = ColumnProperties(dictionary_enabled=False)


def parquet_properties(rows: pa.Table) -> WriterProperties:
    """Snappy, and no dictionary for the columns that look unique in a sample of `rows`.

    Event columns are mostly unique (offsets, timestamps, ids, JSON text): Parquet would build
    a dictionary for each page and throw it away. Plain encoding for those cut the commit
    phase of 1M Upvest events from ~2.6 s to ~2.2 s; columns such as an event type keep theirs.
    """
    sample = rows.slice(0, _SAMPLE)
    plain = {
        field.name: _PLAIN
        for field, column in zip(sample.schema, sample.columns, strict=True)
        if not pa.types.is_nested(field.type)
        and sample.num_rows
        and pc.count_distinct(column).as_py() > sample.num_rows // 2
    }
    return WriterProperties(compression="SNAPPY", column_properties=plain)


# Lost races are retried for longer than outages: each retry is cheap and progress is certain.
RACE_BACKOFF = Backoff(attempts=12, deadline_s=60.0)


def append_rows(rows: pa.Table) -> Write:
    """Add `rows` (new columns merge into the schema)."""

    def write(table: DeltaTable, properties: CommitProperties) -> None:
        write_deltalake(
            table,
            rows,
            mode="append",
            schema_mode="merge",
            commit_properties=properties,
            writer_properties=parquet_properties(rows),
        )

    return write


def replace_window(rows: pa.Table, ranges: list[OffsetRange]) -> Write:
    """Make the window `ranges` hold exactly `rows`, atomically (copy-on-write of its files)."""

    def write(table: DeltaTable, properties: CommitProperties) -> None:
        write_deltalake(
            table,
            rows,
            mode="overwrite",
            predicate=window_predicate(ranges),
            schema_mode="merge",
            commit_properties=properties,
            writer_properties=parquet_properties(rows),
        )

    return write


class TableWriter:
    """A writer's view of one ledgered table (and its dead letters), and its only way to commit."""

    RELOAD_EVERY = 100

    def __init__(
        self,
        store: DeltaStore,
        topic: str,
        dead_letters: DeltaStore | None = None,
        label: str | None = None,
    ) -> None:
        self.store = store
        self.dead_letters = dead_letters
        self.topic = topic
        self.label = label or topic
        self.table = store.open()
        self._ledger = read_ledger(self.table, topic)
        self.commits = 0
        self.conflicts = 0
        """Lost races this writer resolved by itself (rebased commits, retried dead letters)."""

    @property
    def version(self) -> int:
        return self.table.version()

    @property
    def ledger(self) -> Ledger:
        """The ledger as of the writer's snapshot (re-read only after someone else's commit)."""
        if self._ledger.table_version != self.table.version():
            self._ledger = read_ledger(self.table, self.topic, known=self._ledger)
        return self._ledger

    def update(self) -> LedgerUpdate:
        """A new ledger update against the current snapshot."""
        return LedgerUpdate(self.ledger)

    def held(self, spans: list[OffsetRange]) -> dict[OffsetRange, tuple[int, int]]:
        """Per span, the rows and dead letters the ledger counts there now (a replace swaps them)."""
        ledger = self.ledger
        dead_table = self.dead_letters.open_existing() if self.dead_letters else None
        result: dict[OffsetRange, tuple[int, int]] = {}
        for span in spans:
            covered = ledger.partition(span.partition).covered.intersect([(span.start, span.end)])
            inside = [OffsetRange(span.partition, s, e) for s, e in covered]
            rows = self.store.count_in(self.table, inside) if inside else 0
            dead = 0
            if inside and dead_table is not None and self.dead_letters is not None:
                dead = self.dead_letters.count_in(dead_table, inside)
            result[span] = (rows + dead, dead)
        return result

    def commit(
        self,
        update: LedgerUpdate,
        write: Write,
        operation: str,
        extra: dict[str, str] | None = None,
    ) -> int:
        """Commit `write` with `update`'s `txn` actions; the new table version.

        Raises `ConcurrentChange` when another writer changed the partitions `update` touches.
        """

        def attempt() -> None:
            properties = CommitProperties(
                custom_metadata=update.commit_metadata(operation, extra),
                app_transactions=update.transactions(),
            )
            try:
                write(self.table, properties)
            except CommitFailedError as exc:
                raise ConcurrentChange(f"{self.store.uri}: {exc}") from None
            except (OSError, DeltaError) as exc:
                raise storage_error(self.store.uri, exc, "write to") from None

        def rebase(_: TransientError) -> None:
            self.conflicts += 1
            self.table = self.store.open()
            update.rebase(self.ledger)

        if update.before.table_version != self.table.version():
            update.rebase(self.ledger)
        retrying(attempt, f"commit to {self.store.uri}", RACE_BACKOFF, before_retry=rebase)
        version = self.table.version()
        if update.before.table_version is not None and version == update.before.table_version + 1:
            self._ledger = update.applied(version)  # nobody committed in between: no re-read
        self.commits += 1
        if self.commits % self.RELOAD_EVERY == 0:
            self.table = self.store.open()
        return version

    def commit_batch(
        self,
        update: LedgerUpdate,
        rows: pa.Table,
        dead: pa.Table,
        spans: list[OffsetRange],
        operation: str,
        extra: dict[str, str] | None = None,
    ) -> int:
        """Land a micro-batch read from `spans`: its dead letters first, then rows + ledger.

        A `replace` swaps the window's rows; any other operation appends them.
        """
        self.replace_dead_letters(spans, dead)
        write = replace_window(rows, spans) if operation == "replace" else append_rows(rows)
        return self.commit(update, write, operation, extra)

    def replace_dead_letters(self, spans: list[OffsetRange], rows: pa.Table) -> None:
        """Make the dead letters of `spans` exactly `rows`; idempotent, so conflicts just retry."""
        store = self.dead_letters
        if store is None:
            if rows.num_rows:
                raise ValueError(f"{self.label}: dead letters but no dead-letter table")
            return

        def attempt() -> None:
            table = store.open_existing()
            if table is None:
                if rows.num_rows == 0:
                    return
                table = store.open()
            elif rows.num_rows == 0 and store.count_in(table, spans) == 0:
                return
            try:
                write_deltalake(
                    table,
                    rows,
                    mode="overwrite",
                    predicate=window_predicate(spans),
                    schema_mode="merge",
                    writer_properties=parquet_properties(rows),
                )
            except CommitFailedError as exc:
                raise ConcurrentChange(f"{store.uri}: {exc}") from None
            except (OSError, DeltaError) as exc:
                raise storage_error(store.uri, exc, "write to") from None

        retrying(attempt, f"write dead letters to {store.uri}", RACE_BACKOFF, self._conflict)

    def _conflict(self, _: TransientError) -> None:
        self.conflicts += 1
