"""Checks that a derived table says what its raw table says: from the ledger, the data, and scratch.

`audit_derived` compares the derived table's ledger with the raw table's (absorbed offsets are
raw covered offsets), its counts with the raw rows it absorbed, and its rows with a
recomputation from scratch (every absorbed raw row decoded and reduced to the best row per
key). Work the derived table has not done yet (raw offsets not absorbed, windows rewritten
since) is reported as pending, not as a problem: the next `lakeport derive` does it.
`reconcile` compares one time window of the raw table with the derived table, for the
per-partition check in Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable

from connectors.delta_store import sql_source, window_filter
from connectors.derived.run import best_sql
from connectors.derived.table import DerivedTable, quote
from connectors.ledger import Ledger, read_ledger
from connectors.ranges import OffsetRange, Spans


@dataclass
class DerivedAudit:
    """What the audit of one derived table found."""

    table: str
    problems: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    rows: int = 0
    dead: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class DerivedStatus:
    """How far a derived table is, from its ledger and its raw table's ledger alone."""

    table: str
    table_version: int | None
    absorbed: dict[int, Spans]
    behind: dict[int, Spans]
    """Raw covered offsets not absorbed yet."""
    rewritten: dict[int, Spans]
    """Absorbed offsets the raw table rewrote since (derived again by the next run)."""

    @property
    def behind_offsets(self) -> int:
        return sum(s.size for s in self.behind.values())

    @property
    def rewritten_offsets(self) -> int:
        return sum(s.size for s in self.rewritten.values())


def derived_status(derived: DerivedTable) -> DerivedStatus:
    """Absorbed, behind and rewritten offsets per partition (no data is read)."""
    own_table = derived.table.open_existing()
    raw_table = derived.source.table.open_existing()
    own = read_ledger(own_table, derived.topic) if own_table else Ledger(derived.topic)
    raw = read_ledger(raw_table, derived.topic) if raw_table else Ledger(derived.topic)
    return _progress(derived.name, raw, own)


def _progress(name: str, raw: Ledger, own: Ledger) -> DerivedStatus:
    parts = sorted(set(raw.partitions) | set(own.partitions))
    mine = {p: own.partition(p) for p in parts}
    return DerivedStatus(
        name,
        own.table_version,
        {p: mine[p].covered for p in parts},
        {p: raw.partition(p).covered.minus(mine[p].covered) for p in parts},
        {
            p: raw.partition(p).rewritten_after(mine[p].source_seq).intersect(mine[p].covered)
            for p in parts
        },
    )


def _spans(ledger: Ledger) -> list[OffsetRange]:
    return [OffsetRange(p, s, e) for p, part in ledger.partitions.items() for s, e in part.covered]


def recompute(derived: DerivedTable, raw: DeltaTable, ledger: Ledger) -> pa.Table:
    """The derived table from scratch: the raw rows `ledger` covers, decoded, best per key."""
    spans = _spans(ledger)
    best = derived.arrow.empty_table()
    if not spans:
        return best
    con = duckdb.connect(config={"threads": 2})
    con.execute("SET TimeZone = 'UTC'")
    for rows in derived.projection().scan(raw.to_pyarrow_dataset(), window_filter(spans)):
        con.register("rows", pa.concat_tables([best, rows]))
        best = con.sql(best_sql(derived, "rows")).to_arrow_table().cast(derived.arrow)
        con.unregister("rows")
    return best


def audit_derived(derived: DerivedTable) -> DerivedAudit:
    """Ledger against the raw ledger, counts against the raw rows, rows against scratch."""
    result = DerivedAudit(derived.name)
    own_table = derived.table.open_existing()
    raw_table = derived.source.table.open_existing()
    if own_table is None or raw_table is None:
        if raw_table is not None:
            result.pending.append("nothing derived yet: run `lakeport derive`")
        return result
    raw, own = read_ledger(raw_table, derived.topic), read_ledger(own_table, derived.topic)
    for p in sorted(own.partitions):
        beyond = own.partition(p).covered.minus(raw.partition(p).covered)
        if beyond:
            result.problems.append(
                f"partition {p}: absorbed offsets {beyond} that the raw table does not cover"
            )
    progress = _progress(derived.name, raw, own)
    for p, spans in progress.behind.items():
        if spans:
            result.pending.append(f"partition {p}: raw offsets {spans} not derived yet")
    stale = {p for p, spans in progress.rewritten.items() if spans}
    for p in sorted(stale):
        result.pending.append(
            f"partition {p}: raw offsets {progress.rewritten[p]} rewritten since they were derived"
        )

    con = duckdb.connect(config={"threads": 2})
    con.execute("SET TimeZone = 'UTC'")
    con.register("derived", sql_source(own_table))
    dead_table = derived.dead_letters.open_existing()
    con.register(
        "dead",
        dead_table.to_pyarrow_dataset()
        if dead_table
        else derived.dead_letters.schema.empty_table(),
    )
    con.register("raw", raw_table.to_pyarrow_dataset())
    coverage = pa.table(
        {
            "p": pa.array([r.partition for r in _spans(own)], pa.int32()),
            "s": pa.array([r.start for r in _spans(own)], pa.int64()),
            "e": pa.array([r.end for r in _spans(own)], pa.int64()),
        }
    )
    con.register("cov", coverage)
    inside = (
        "EXISTS (SELECT 1 FROM cov WHERE cov.p = {t}.kafka_partition"
        " AND {t}.kafka_offset >= cov.s AND {t}.kafka_offset < cov.e)"
    )
    key = ", ".join(quote(k) for k in derived.key)
    (dupes,) = con.execute(
        f"SELECT count(*) FROM (SELECT {key} FROM derived GROUP BY ALL HAVING count(*) > 1)"
    ).fetchall()[0]
    if dupes:
        result.problems.append(f"{dupes} keys ({key}) hold more than one row")
    (outside,) = con.execute(
        f"SELECT count(*) FROM derived WHERE NOT {inside.format(t='derived')}"
    ).fetchall()[0]
    if outside:
        result.problems.append(f"{outside} rows come from raw offsets the ledger does not cover")
    matching = dict(
        con.execute(
            f"SELECT kafka_partition, count(*) FROM raw WHERE {inside.format(t='raw')}"
            f" AND ({derived.config.where}) GROUP BY 1"
        ).fetchall()
    )
    dead = dict(
        con.execute(
            f"SELECT kafka_partition, count(*) FROM dead WHERE {inside.format(t='dead')} GROUP BY 1"
        ).fetchall()
    )
    result.rows = int(con.execute("SELECT count(*) FROM derived").fetchall()[0][0])
    result.dead = sum(dead.values())
    for p, part in sorted(own.partitions.items()):
        if p in stale:
            continue
        if (part.records, part.dead) != (matching.get(p, 0), dead.get(p, 0)):
            result.problems.append(
                f"partition {p}: ledger counts {part.records} raw rows ({part.dead} dead letters)"
                f" but the absorbed offsets hold {matching.get(p, 0)} ({dead.get(p, 0)})"
            )
    if not stale:
        _compare(con, derived, recompute(derived, raw_table, own), result)
    return result


def _compare(
    con: duckdb.DuckDBPyConnection, derived: DerivedTable, scratch: pa.Table, result: DerivedAudit
) -> None:
    """Rows of the table and of a recomputation from scratch must be the same multiset."""
    con.register("scratch", scratch)
    columns = ", ".join(quote(c) for c in derived.arrow.names)
    for a, b in (("derived", "scratch"), ("scratch", "derived")):
        differ, first = con.execute(
            f"SELECT count(*), min(({', '.join(quote(k) for k in derived.key)})::VARCHAR)"
            f" FROM (SELECT {columns} FROM {a} EXCEPT ALL SELECT {columns} FROM {b})"
        ).fetchall()[0]
        if differ:
            where = "table" if a == "derived" else "recomputation from scratch"
            result.problems.append(
                f"{differ} rows of the {where} differ from the other (first key {first})"
            )


@dataclass(frozen=True)
class Reconciliation:
    """One time window of the raw table against the derived table."""

    records: int
    """Raw rows of the window the derived table takes (its `where`), absorbed so far."""
    dead: int
    """Of those, rows whose JSON does not fit the derived schema (dead letters)."""
    keys: int
    """Distinct keys (event ids, or entities) among the others."""
    present: int
    """How many of those keys the derived table holds."""
    dead_in_table: int

    @property
    def ok(self) -> bool:
        return self.present == self.keys and self.dead_in_table == self.dead


def reconcile(derived: DerivedTable, start: datetime, end: datetime) -> Reconciliation:
    """Raw rows with Kafka timestamps in [start, end) against the derived table's keys."""
    own_table = derived.table.open_existing()
    raw_table = derived.source.table.open_existing()
    if own_table is None or raw_table is None:
        return Reconciliation(0, 0, 0, 0, 0)
    own = read_ledger(own_table, derived.topic)
    spans = _spans(own)
    when = (ds.field("kafka_timestamp") >= start) & (ds.field("kafka_timestamp") < end)
    window = window_filter(spans)
    if window is None:
        return Reconciliation(0, 0, 0, 0, 0)
    projection = derived.projection()
    decoded = projection(raw_table.to_pyarrow_dataset().to_table(filter=when & window))
    keys = decoded.rows.select(derived.key).group_by(derived.key).aggregate([])
    present = (
        own_table.to_pyarrow_dataset()
        .to_table(columns=derived.key)
        .join(keys, keys=derived.key, join_type="left semi")
    )
    held = present.group_by(derived.key).aggregate([]).num_rows
    dead_table = derived.dead_letters.open_existing()
    dead_in_table = (
        dead_table.to_pyarrow_dataset().count_rows(filter=when & window) if dead_table else 0
    )
    return Reconciliation(
        records=decoded.rows.num_rows + decoded.dead.num_rows,
        dead=decoded.dead.num_rows,
        keys=keys.num_rows,
        present=held,
        dead_in_table=dead_in_table,
    )
