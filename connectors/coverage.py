"""Coverage from the ledger alone (`status`) and the check that the data agrees with it (`audit`).

`status` reads only the table's log (plus the broker's watermarks when reachable): covered
spans, spans lost to retention, missing spans, frontier and lag. `audit` also scans the data:
no (partition, offset) twice, no row outside the covered spans, and per partition as many
rows (table + dead letters) as the ledger recorded. `window_coverage` answers the same
question per time window (what an orchestrator shows as partitions): a window is complete
when the ledger handles every offset whose record timestamp falls in it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable

from connectors.delta_store import source
from connectors.errors import LakeportError
from connectors.kafka_client import offsets_at, open_consumer, partition_marks
from connectors.ledger import Ledger, PartitionLedger, read_ledger
from connectors.ranges import OffsetRange, PartitionMarks, Spans
from connectors.reader import read_ranges
from connectors.stream import Stream

_KEY = ["kafka_partition", "kafka_offset"]


@dataclass(frozen=True)
class PartitionStatus:
    partition: int
    covered: Spans
    lost: Spans
    missing: Spans
    frontier: int
    high: int | None
    records: int
    dead: int

    @property
    def holes(self) -> Spans:
        """Missing offsets below the last handled one: gaps, as opposed to lag at the end."""
        last = max((e for _, e in self.covered.union(self.lost)), default=0)
        return self.missing.intersect([(0, last)])

    @property
    def lag(self) -> int | None:
        """Offsets from the frontier to the high watermark (holes above the frontier included)."""
        return None if self.high is None else max(0, self.high - self.frontier)

    @property
    def unread(self) -> int:
        """Missing offsets above everything handled: new records not read yet (holes apart)."""
        return self.missing.size - self.holes.size

    @property
    def landed(self) -> int:
        """Rows in the table (the ledger's records count dead letters too)."""
        return self.records - self.dead


@dataclass(frozen=True)
class StreamStatus:
    stream: str
    topic: str
    table_version: int | None
    partitions: list[PartitionStatus]
    broker_error: str | None = None

    @property
    def missing_offsets(self) -> int:
        return sum(p.missing.size for p in self.partitions)

    @property
    def hole_offsets(self) -> int:
        return sum(p.holes.size for p in self.partitions)

    @property
    def lost_offsets(self) -> int:
        return sum(p.lost.size for p in self.partitions)


def status(stream: Stream, with_broker: bool = True) -> StreamStatus:
    """The ledger as a report; `missing` needs the broker's high watermark (else: gaps only)."""
    table = stream.table.open_existing()
    ledger = read_ledger(table, stream.topic) if table else Ledger(stream.topic)
    marks: dict[int, PartitionMarks] = {}
    error = None
    if with_broker:
        try:
            with open_consumer(stream.connection, stream.group_id) as consumer:
                marks = partition_marks(consumer, stream.topic)
        except LakeportError as exc:
            error = str(exc)
    parts = sorted(set(ledger.partitions) | set(marks))
    return StreamStatus(
        stream.name,
        stream.topic,
        ledger.table_version,
        [_partition_status(ledger.partition(p), marks.get(p)) for p in parts],
        error,
    )


def _partition_status(part: PartitionLedger, mark: PartitionMarks | None) -> PartitionStatus:
    last = max((e for _, e in part.handled), default=0)
    top = mark.high if mark else last
    return PartitionStatus(
        part.partition,
        part.covered,
        part.lost,
        part.missing(top),
        part.frontier,
        mark.high if mark else None,
        part.records,
        part.dead,
    )


@dataclass
class AuditResult:
    stream: str
    problems: list[str] = field(default_factory=list)
    rows: int = 0
    dead: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def audit(stream: Stream) -> AuditResult:
    """Scan the data and compare it with the ledger; every disagreement is a named problem."""
    result = AuditResult(stream.name)
    table = stream.table.open_existing()
    if table is None:
        return result
    ledger = read_ledger(table, stream.topic)
    coverage = pa.table(
        {
            "p": pa.array(
                [p for p, part in ledger.partitions.items() for _ in part.covered], pa.int32()
            ),
            "s": pa.array(
                [s for part in ledger.partitions.values() for s, _ in part.covered], pa.int64()
            ),
            "e": pa.array(
                [e for part in ledger.partitions.values() for _, e in part.covered], pa.int64()
            ),
        }
    )
    con = duckdb.connect()
    con.register("cov", coverage)
    con.register("main", source(table, _KEY))
    dead_table = stream.dead_letters.open_existing()
    con.register(
        "dead",
        source(dead_table, _KEY) if dead_table else stream.dead_letters.schema.empty_table(),
    )
    for name in ("main", "dead"):
        for p, dupes in con.execute(
            f"SELECT kafka_partition, count(*) - count(DISTINCT kafka_offset) FROM {name}"
            " GROUP BY 1 HAVING count(*) > count(DISTINCT kafka_offset) ORDER BY 1"
        ).fetchall():
            result.problems.append(f"{name} table: partition {p} has {dupes} duplicated offsets")
    for p, n, lo, hi in con.execute(
        "SELECT kafka_partition, count(*), min(kafka_offset), max(kafka_offset) FROM main"
        " WHERE NOT EXISTS (SELECT 1 FROM cov WHERE cov.p = main.kafka_partition"
        " AND main.kafka_offset >= cov.s AND main.kafka_offset < cov.e) GROUP BY 1 ORDER BY 1"
    ).fetchall():
        result.problems.append(
            f"main table: partition {p} has {n} rows outside the ledger's coverage (offsets {lo}..{hi})"
        )
    both = con.execute(
        "SELECT count(*) FROM main JOIN dead USING (kafka_partition, kafka_offset)"
    ).fetchone()
    if both and both[0]:
        result.problems.append(f"{both[0]} records are both in the table and in the dead letters")
    in_dead = dict(
        con.execute(
            "SELECT kafka_partition, count(*) FROM dead WHERE EXISTS (SELECT 1 FROM cov WHERE"
            " cov.p = dead.kafka_partition AND dead.kafka_offset >= cov.s AND dead.kafka_offset < cov.e)"
            " GROUP BY 1"
        ).fetchall()
    )
    in_main = dict(con.execute("SELECT kafka_partition, count(*) FROM main GROUP BY 1").fetchall())
    result.rows = sum(in_main.values())
    result.dead = sum(in_dead.values())
    for p in sorted(set(ledger.partitions) | set(in_main) | set(in_dead)):
        part = ledger.partition(p)
        landed = in_main.get(p, 0) + in_dead.get(p, 0)
        if landed != part.records or in_dead.get(p, 0) != part.dead:
            result.problems.append(
                f"partition {p}: ledger records {part.records} ({part.dead} dead letters) but the"
                f" data holds {landed} ({in_dead.get(p, 0)} dead letters)"
            )
    return result


def dead_letters_since(stream: Stream, since: datetime) -> int:
    """Dead letters whose Kafka timestamp is at or after `since`."""
    table = stream.dead_letters.open_existing()
    if table is None:
        return 0
    con = duckdb.connect()
    con.register("dead", source(table, ["kafka_timestamp"]))
    found = con.execute("SELECT count(*) FROM dead WHERE kafka_timestamp >= ?", [since]).fetchone()
    return int(found[0]) if found else 0


def last_ingest(stream: Stream, look_back: int = 100) -> datetime | None:
    """When lakeport last committed to the table (from the newest `look_back` commits)."""
    table = stream.table.open_existing()
    if table is None:
        return None
    for entry in table.history(look_back):
        if "lakeport.operation" in entry:
            return datetime.fromtimestamp(entry["timestamp"] / 1000, UTC)
    return None


Window = tuple[datetime, datetime]
"""A half-open time window [start, end) of record timestamps."""


@dataclass(frozen=True)
class WindowState:
    """Whether the ledger handles every offset of a window, and which of them were lost."""

    complete: bool
    lost: tuple[OffsetRange, ...] = ()


UNTOUCHED_SPLIT = 64


def covered_windows(
    ledger: Ledger, bound: Callable[[datetime], dict[int, int]], windows: Sequence[Window]
) -> list[WindowState]:
    """Per window: complete when every offset in [bound(start), bound(end)) is covered or lost.

    `bound(t)` gives, per partition, the first offset whose timestamp is at or after `t` (the
    high watermark when there is none), i.e. `offsets_for_times`. Consecutive windows are
    judged together and split only where coverage changes, so a long run of complete windows
    costs two look-ups instead of one per window. A block the ledger does not touch at all is
    split only while it is short (`UNTOUCHED_SPLIT` windows): beyond that it is incomplete as
    a whole, including any empty window inside it, which keeps the cost of a long never-read
    history bounded (those empty windows complete with their neighbours).
    """
    states: list[WindowState] = []
    known: dict[datetime, dict[int, int]] = {}

    def at(when: datetime) -> dict[int, int]:
        if when not in known:
            known[when] = bound(when)
        return known[when]

    def judge(block: Sequence[Window]) -> list[WindowState]:
        lo, hi = at(block[0][0]), at(block[-1][1])
        missing: list[OffsetRange] = []
        lost: list[OffsetRange] = []
        touched = False
        for p in sorted(lo):
            start, end = lo[p], max(lo[p], hi.get(p, lo[p]))
            part = ledger.partition(p)
            span = Spans.of([(start, end)])
            missing += [OffsetRange(p, s, e) for s, e in span.minus(part.handled)]
            lost += [OffsetRange(p, s, e) for s, e in span.intersect(part.lost)]
            touched |= span.overlaps(part.handled)
        if not missing and not lost:
            return [WindowState(True)] * len(block)
        if len(block) == 1:
            return [WindowState(not missing, tuple(lost))]
        if not touched and len(block) > UNTOUCHED_SPLIT:
            return [WindowState(False)] * len(block)
        middle = len(block) // 2
        return judge(block[:middle]) + judge(block[middle:])

    run: list[Window] = []
    for window in windows:
        if run and run[-1][1] != window[0]:
            states += judge(run)
            run = []
        run.append(window)
    if run:
        states += judge(run)
    return states


@dataclass(frozen=True)
class WindowCoverage:
    """One time window as the ledger sees it, with what the table holds of it."""

    start: datetime
    end: datetime
    complete: bool
    lost: tuple[OffsetRange, ...]
    rows: int
    dead: int
    ranges: tuple[OffsetRange, ...]
    """Per partition, from the window's first to its last offset in the table or dead letters."""
    table_version: int | None

    @property
    def records(self) -> int:
        return self.rows + self.dead


def window_coverage(stream: Stream, windows: Sequence[Window]) -> list[WindowCoverage]:
    """Which closed windows the ledger covers completely, with their rows, dead letters and ranges.

    The ledger is read before the broker is asked, so a record produced meanwhile can only make
    a window look incomplete, never complete. Windows must be sorted and of equal length.
    """
    table = stream.table.open_existing()
    ledger = read_ledger(table, stream.topic) if table else Ledger(stream.topic)
    if not windows:
        return []
    with open_consumer(stream.connection, stream.group_id) as consumer:
        marks = partition_marks(consumer, stream.topic)

        def bound(when: datetime) -> dict[int, int]:
            found = offsets_at(consumer, stream.topic, sorted(marks), when)
            return {
                p: m.high if (offset := found.get(p)) is None else offset for p, m in marks.items()
            }

        states = covered_windows(ledger, bound, windows)
    done = [w for w, state in zip(windows, states, strict=True) if state.complete]
    dead_table = stream.dead_letters.open_existing()
    rows = _per_window(table, done)
    dead = _per_window(dead_table, done)
    result = []
    for window, state in zip(windows, states, strict=True):
        held, failed = rows.get(window[0], {}), dead.get(window[0], {})
        both = [*held.items(), *failed.items()]
        ranges = tuple(
            OffsetRange(
                p,
                min(lo for q, (_, lo, _) in both if q == p),
                1 + max(hi for q, (_, _, hi) in both if q == p),
            )
            for p in sorted(set(held) | set(failed))
        )
        result.append(
            WindowCoverage(
                window[0],
                window[1],
                state.complete,
                state.lost,
                sum(n for n, _, _ in held.values()),
                sum(n for n, _, _ in failed.values()),
                ranges,
                ledger.table_version,
            )
        )
    return result


def _per_window(
    table: DeltaTable | None, windows: Sequence[Window]
) -> dict[datetime, dict[int, tuple[int, int, int]]]:
    """Rows per window and partition: (count, first offset, last offset), by record timestamp."""
    if table is None or not windows:
        return {}
    origin, width = windows[0][0], windows[0][1] - windows[0][0]
    step = int(width.total_seconds() * 1_000_000)
    scanner = table.to_pyarrow_dataset().scanner(
        columns=["kafka_partition", "kafka_offset", "kafka_timestamp"],
        filter=(ds.field("kafka_timestamp") >= origin)
        & (ds.field("kafka_timestamp") < windows[-1][1]),
    )
    parts = []
    for batch in scanner.to_batches():
        micros = pc.subtract(
            batch["kafka_timestamp"].cast(pa.int64()), int(origin.timestamp() * 1_000_000)
        )
        parts.append(
            pa.table(
                {
                    "w": pc.divide(micros, step),
                    "p": batch["kafka_partition"],
                    "o": batch["kafka_offset"],
                }
            )
            .group_by(["w", "p"])
            .aggregate([("o", "count"), ("o", "min"), ("o", "max")])
        )
    if not parts:
        return {}
    totals = (
        pa.concat_tables(parts)
        .group_by(["w", "p"])
        .aggregate([("o_count", "sum"), ("o_min", "min"), ("o_max", "max")])
    )
    starts = {int((w[0] - origin) / width): w[0] for w in windows}
    result: dict[datetime, dict[int, tuple[int, int, int]]] = {}
    for w, p, n, lo, hi in zip(*(totals[c].to_pylist() for c in totals.column_names), strict=True):
        if w in starts:
            result.setdefault(starts[w], {})[p] = (n, lo, hi)
    return result


def first_record_time(stream: Stream, ask_broker: bool = True) -> datetime | None:
    """The earliest record timestamp of the stream: from the table's file statistics, else
    (a stream not ingested yet) from the first record of each partition on the broker.

    Orchestrators call this while loading definitions: once the table exists it reads only
    the Delta log, never the broker; with `ask_broker=False` it never contacts the broker.
    """
    earliest: list[datetime] = []
    for store in (stream.table, stream.dead_letters):
        table = store.open_existing()
        if table is None:
            continue
        stats = pa.table(table.get_add_actions(flatten=True))
        if "min.kafka_timestamp" in stats.column_names:
            first = pc.min(stats["min.kafka_timestamp"]).as_py()
            if first is not None:
                earliest.append(first)
    if earliest or not ask_broker:
        return min(earliest, default=None)
    with open_consumer(stream.connection, stream.group_id) as consumer:
        marks = partition_marks(consumer, stream.topic)
        heads = [
            OffsetRange(p, m.low, m.low + 1) for p, m in sorted(marks.items()) if m.high > m.low
        ]
        limits = replace(stream.limits(), idle_timeout=min(stream.limits().idle_timeout, 5.0))
        for batch in read_ranges(consumer, stream.topic, heads, limits):
            first = pc.min(batch.records["kafka_timestamp"]).as_py()
            if first is not None:
                earliest.append(first)
    return min(earliest, default=None)
