"""Derive: absorb the raw rows committed since the last run, and derive rewritten windows again.

A derived table's ledger (the raw table's `Ledger` layout, in the derived table's own log)
records which raw offsets it absorbed, the raw `seq` per partition it has caught up with, and
the raw table's retention losses. A run reads the raw table's ledger and rows from *one*
snapshot and works out, per partition:

- **new**: raw covered offsets the derived table has not absorbed;
- **again**: absorbed offsets the raw table rewrote since (`replace` backfills, re-drives:
  the raw ledger's rewritten spans with a higher `seq`), plus any window asked for.

Both are read, decoded and reduced to the best row per key (`DerivedTable.ranking`), then
merged into the table in ONE commit through `TableWriter`, together with the ledger update:
crash before it and nothing happened; after it and the ledger says so. The MERGE keeps a
table row unless the new row beats it, except rows that came from a window derived again:
those are replaced whatever their rank, and a key whose row came from such a window and has
no equally good row there any more is looked up in the raw history (an event id is a plain
column; an entity key needs the JSON decoded) and replaced by its best row, or deleted.

Each commit fences every partition of the derived table (its seq goes up everywhere): one
key's events come from any partition, so two derive runs must never commit side by side; the
loser re-plans. A MERGE that changes no file makes no commit in delta-rs, so such a batch
commits its ledger update with an empty append instead.

Cost: the MERGE joins on the key, plus `cluster_by` when declared (a column that never changes
for a key, such as an order's `created_at`): delta-rs then skips the files outside the batch's
range of that column, so absorbing a batch costs in proportion to the batch and the files it
touches, not to the table. Re-deriving a window reads the derived table's rows of that window
and, only for keys whose row disappeared or got worse, the raw history.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable

from connectors.delta_store import window_filter, window_predicate
from connectors.derived.table import POSITION, DerivedTable, Projection, quote
from connectors.errors import ConcurrentChange, LedgerError, TransientError
from connectors.ledger import Ledger, read_ledger
from connectors.ranges import OffsetRange, Spans
from connectors.retry import Backoff, retrying
from connectors.writer import TableWriter, Write, append_rows

log = logging.getLogger("lakeport")


@dataclass
class DeriveReport:
    """What a derive run did, for the CLI and Dagster metadata."""

    table: str
    absorbed: list[OffsetRange] = field(default_factory=list)
    rederived: list[OffsetRange] = field(default_factory=list)
    records: int = 0
    dead: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    files_rewritten: int = 0
    """Table files the MERGEs replaced (copy-on-write): what an update cost beyond its rows."""
    commits: int = 0
    table_version: int | None = None
    replans: int = 0
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Batch:
    """The raw ranges one commit derives."""

    again: list[OffsetRange]
    new: list[OffsetRange]
    caught_up: bool
    """True once every rewrite this run found is derived again (then `source_seq` moves on)."""

    @property
    def ranges(self) -> list[OffsetRange]:
        return [*self.again, *self.new]


def plan(raw: Ledger, own: Ledger, window: list[OffsetRange], batch_records: int) -> list[Batch]:
    """The batches of one run: rewritten (and requested) windows first, then new offsets."""
    again: list[OffsetRange] = []
    new: list[OffsetRange] = []
    for p in sorted(raw.partitions):
        source, mine = raw.partition(p), own.partition(p)
        asked = Spans.of((r.start, r.end) for r in window if r.partition == p)
        redo = source.rewritten_after(mine.source_seq).union(asked).intersect(mine.covered)
        again += [OffsetRange(p, s, e) for s, e in redo]
        new += [OffsetRange(p, s, e) for s, e in source.covered.minus(mine.covered)]
    first = [Batch(chunk, [], False) for chunk in _split(again, batch_records)]
    rest = [Batch([], chunk, True) for chunk in _split(new, batch_records)]
    if first:
        first[-1] = Batch(first[-1].again, [], True)
    return first + rest


def _split(ranges: list[OffsetRange], size: int) -> list[list[OffsetRange]]:
    """Ranges cut into groups of at most about `size` offsets; group k holds the k-th slice of
    every partition, so a group spans one stretch of time and the table's files follow time
    (which is what lets a MERGE joined on `cluster_by` skip the older ones)."""
    total = sum(len(r) for r in ranges)
    count = -(-total // size) if total else 0
    groups: list[list[OffsetRange]] = [[] for _ in range(count)]
    for r in ranges:
        for k in range(count):
            start, end = r.start + len(r) * k // count, r.start + len(r) * (k + 1) // count
            if end > start:
                groups[k].append(OffsetRange(r.partition, start, end))
    return [g for g in groups if g]


def derive(derived: DerivedTable, window: list[OffsetRange] | None = None) -> DeriveReport:
    """Bring a derived table up to date with its raw table; `window` is derived again too.

    Re-plans when another derive run commits first, until `replan_timeout_seconds`.
    """
    report = DeriveReport(derived.name)
    began = time.monotonic()
    projections: list[Projection] = []

    def attempt() -> None:
        try:
            raw_table = derived.source.table.open_existing()
            if raw_table is None:
                return
            raw = read_ledger(raw_table, derived.topic)
            writer = derived.writer()
            batches = plan(raw, writer.ledger, window or [], derived.config.batch_records)
            if batches:
                projections[:] = projections or [derived.projection()]
            else:
                _mirror_losses(writer, raw, report)
            for batch in batches:
                _commit(derived, writer, raw, raw_table, projections[0], batch, report)
            report.table_version = writer.version
        except LedgerError as exc:  # another run absorbed these offsets meanwhile
            raise ConcurrentChange(str(exc)) from None

    def replan(exc: TransientError) -> None:
        report.replans += 1
        log.info(
            "derived table %s: another run got there first (%s); re-planning", derived.name, exc
        )

    patience = Backoff(attempts=1_000, deadline_s=derived.source.config.replan_timeout_seconds)
    retrying(attempt, f"derived table {derived.name}", patience, replan, (ConcurrentChange,))
    report.seconds = time.monotonic() - began
    return report


def time_window(derived: DerivedTable, start: datetime, end: datetime) -> list[OffsetRange]:
    """Per partition, the raw offsets from the first to the last record whose Kafka timestamp is
    in [start, end) (what a Dagster partition of the derived asset stands for)."""
    raw = derived.source.table.open_existing()
    if raw is None:
        return []
    when = (ds.field("kafka_timestamp") >= start) & (ds.field("kafka_timestamp") < end)
    found = raw.to_pyarrow_dataset().to_table(filter=when, columns=POSITION)
    stats = found.group_by("kafka_partition").aggregate(
        [("kafka_offset", "min"), ("kafka_offset", "max")]
    )
    return [
        OffsetRange(row["kafka_partition"], row["kafka_offset_min"], row["kafka_offset_max"] + 1)
        for row in stats.to_pylist()
    ]


def _mirror_losses(writer: TableWriter, raw: Ledger, report: DeriveReport) -> None:
    """Nothing to derive, but the raw table recorded retention losses: record them too."""
    own = writer.ledger
    if all(not part.lost.minus(own.partition(p).lost) for p, part in raw.partitions.items()):
        return
    update = writer.update()
    for part in raw.partitions.values():
        update.caught_up(part)
    writer.commit(update, append_rows(writer.store.schema.empty_table()), "derive")
    report.commits += 1


def _commit(
    derived: DerivedTable,
    writer: TableWriter,
    raw: Ledger,
    raw_table: DeltaTable,
    projection: Projection,
    batch: Batch,
    report: DeriveReport,
) -> None:
    """Derive one batch: its dead letters, then rows + ledger update in one commit."""
    dataset = raw_table.to_pyarrow_dataset()
    decoded = projection(dataset.scanner(filter=window_filter(batch.ranges)).to_reader())
    own = writer.ledger
    covered = {
        p: own.partition(p).covered.union((r.start, r.end) for r in batch.new if r.partition == p)
        for p in raw.partitions
    }
    source = _merge_source(derived, writer.table, dataset, projection, decoded.rows, batch, covered)
    writer.replace_dead_letters(batch.ranges, decoded.dead)

    update = writer.update()
    for span in batch.new:
        dead = _count_in(decoded.dead, span)
        update.add(span, _count_in(decoded.rows, span) + dead, dead)
    if batch.again:
        parts = sorted({r.partition for r in batch.again})
        matching = _count_matching(derived, dataset, {p: covered[p] for p in parts})
        dead_table = derived.dead_letters.open_existing()
        for p in parts:
            spans = [OffsetRange(p, s, e) for s, e in covered[p]]
            dead = derived.dead_letters.count_in(dead_table, spans) if dead_table else 0
            update.rederive(p, matching.get(p, 0), dead)
    for part in raw.partitions.values():
        if batch.caught_up:
            update.caught_up(part)
        else:
            update.touch(part.partition)

    metrics: dict[str, int] = {}
    report.table_version = writer.commit(
        update,
        _merge(derived, source, batch.again, metrics),
        "derive",
        extra={
            "lakeport.derived": derived.name,
            "lakeport.rederived": _ranges_text(batch.again),
            "lakeport.source_version": str(raw_table.version()),
        },
    )
    report.commits += 1
    report.absorbed += batch.new
    report.rederived += batch.again
    report.records += decoded.rows.num_rows + decoded.dead.num_rows
    report.dead += decoded.dead.num_rows
    report.inserted += metrics.get("num_target_rows_inserted", 0)
    report.updated += metrics.get("num_target_rows_updated", 0)
    report.deleted += metrics.get("num_target_rows_deleted", 0)
    report.files_rewritten += metrics.get("num_target_files_removed", 0)


def _count_in(rows: pa.Table, span: OffsetRange) -> int:
    where = window_filter([span])
    return rows.filter(where).num_rows if where is not None else 0


def _ranges_text(ranges: list[OffsetRange]) -> str:
    return " ".join(str(r) for r in ranges)


def best_sql(derived: DerivedTable, relation: str) -> str:
    """The best row per key of `relation`."""
    key = ", ".join(quote(k) for k in derived.key)
    return (
        f"SELECT * FROM {relation}"
        f" QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {derived.order_sql()}) = 1"
    )


def _same_key(derived: DerivedTable, a: str, b: str) -> str:
    return " AND ".join(f"{a}.{quote(k)} = {b}.{quote(k)}" for k in derived.key)


def _merge_source(
    derived: DerivedTable,
    table: DeltaTable,
    raw: ds.Dataset,
    projection: Projection,
    rows: pa.Table,
    batch: Batch,
    covered: dict[int, Spans],
) -> pa.Table:
    """The rows to MERGE: each key's best new row; for keys whose row came from a window
    derived again and has nothing as good there any more, their best row in the raw history,
    or a delete marker (offset -1) when there is none."""
    con = duckdb.connect(config={"threads": 2})
    con.execute("SET TimeZone = 'UTC'")
    con.register("candidates", rows)
    best = best_sql(derived, "candidates")
    if not batch.again:
        return _as_table(derived, con.sql(best).to_arrow_table())
    needed = list(dict.fromkeys([*derived.join_columns, *(c for c, _ in derived.ranking)]))
    old = table.to_pyarrow_dataset().to_table(filter=window_filter(batch.again), columns=needed)
    con.register("old", old)
    stale = con.sql(
        f"SELECT o.* FROM old o LEFT JOIN ({best}) b ON {_same_key(derived, 'o', 'b')}"
        f" WHERE b.{quote(derived.key[0])} IS NULL OR {derived.beats('o', 'b')}"
    ).to_arrow_table()
    if stale.num_rows == 0:
        return _as_table(derived, con.sql(best).to_arrow_table())
    con.register("stale", stale)
    con.register("history", _history(derived, raw, projection, stale.select(derived.key), covered))
    marker = ", ".join(
        [*(f"s.{quote(c)}" for c in derived.join_columns), *(f"-1 AS {quote(c)}" for c in POSITION)]
    )
    source = con.sql(
        f"SELECT * FROM ({best}) b WHERE NOT EXISTS"
        f" (SELECT 1 FROM stale s WHERE {_same_key(derived, 's', 'b')})"
        f" UNION ALL BY NAME SELECT * FROM ({best_sql(derived, 'history')})"
        f" UNION ALL BY NAME SELECT {marker} FROM stale s WHERE NOT EXISTS"
        f" (SELECT 1 FROM history h WHERE {_same_key(derived, 'h', 's')})"
    ).to_arrow_table()
    return _as_table(derived, source)


def _as_table(derived: DerivedTable, rows: pa.Table) -> pa.Table:
    return rows.select(derived.arrow.names).cast(derived.arrow)


def _history(
    derived: DerivedTable,
    raw: ds.Dataset,
    projection: Projection,
    keys: pa.Table,
    covered: dict[int, Spans],
) -> pa.Table:
    """Every absorbed raw row of `keys`, decoded (an event id is a raw column, so the scan is
    narrowed to it; an entity key lives in the JSON, so every selected row is decoded)."""
    spans = [OffsetRange(p, s, e) for p, part in covered.items() for s, e in part]
    scan = window_filter(spans)
    if derived.config.kind == "events":
        ids = keys.column(0).unique()
        scan = ds.field(derived.config.event_id).isin(ids) & scan if scan is not None else None
    found = [
        rows.join(keys, keys=derived.key, join_type="left semi")
        for rows in projection.scan(raw, scan)
    ]
    return pa.concat_tables(found) if found else derived.arrow.empty_table()


def _count_matching(
    derived: DerivedTable, raw: ds.Dataset, covered: dict[int, Spans]
) -> dict[int, int]:
    """Per partition, the raw rows `where` selects in `covered` (after a window changed)."""
    con = duckdb.connect(config={"threads": 2})
    con.register("raw", raw)
    window = window_predicate(OffsetRange(p, s, e) for p, part in covered.items() for s, e in part)
    counted = con.execute(
        f"SELECT kafka_partition, count(*) FROM raw WHERE {window} AND ({derived.config.where})"
        " GROUP BY 1"
    ).fetchall()
    return {int(p): int(n) for p, n in counted}


def _merge(
    derived: DerivedTable, source: pa.Table, again: list[OffsetRange], metrics: dict[str, int]
) -> Write:
    """The MERGE of `source` into the table, committing with the ledger update's properties.

    A row is replaced when the new one beats it, or when it came from a window derived again;
    a delete marker removes a row only if it still came from such a window.
    """
    stale = window_predicate(again, alias="t")
    marker = "s.kafka_offset < 0"
    columns = {quote(c): f"s.{quote(c)}" for c in derived.arrow.names}

    def write(table: DeltaTable, properties: CommitProperties) -> None:
        if source.num_rows:
            merger = (
                table.merge(
                    source,
                    predicate=_same_key_join(derived),
                    source_alias="s",
                    target_alias="t",
                    merge_schema=True,
                    commit_properties=properties,
                )
                .when_matched_delete(predicate=f"({marker}) AND {stale}")
                .when_matched_update(
                    updates=columns,
                    predicate=f"(NOT {marker}) AND ({stale} OR {derived.beats('s', 't')})",
                )
                .when_not_matched_insert(updates=columns, predicate=f"NOT {marker}")
            )
            metrics.update(merger.execute())
            if metrics["num_target_files_added"] or metrics["num_target_files_removed"]:
                return
        # nothing changed (delta-rs commits no MERGE that touches no file): the ledger alone
        append_rows(derived.arrow.empty_table())(table, properties)

    return write


def _same_key_join(derived: DerivedTable) -> str:
    return " AND ".join(f"t.{quote(c)} = s.{quote(c)}" for c in derived.join_columns)
