"""Coverage from the ledger alone (`status`) and the check that the data agrees with it (`audit`).

`status` reads only the table's log (plus the broker's watermarks when reachable): covered
spans, spans lost to retention, missing spans, frontier and lag. `audit` also scans the data:
no (partition, offset) twice, no row outside the covered spans, and per partition as many
rows (table + dead letters) as the ledger recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
import pyarrow as pa

from connectors.delta_store import source
from connectors.errors import LakeportError
from connectors.kafka_client import open_consumer, partition_marks
from connectors.ledger import Ledger, PartitionLedger, read_ledger
from connectors.ranges import PartitionMarks, Spans
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
