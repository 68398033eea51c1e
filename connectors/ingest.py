"""One run of a stream: plan, read, decode and commit micro-batches, each with its ledger update.

Forward runs (the schedule) read from the ledger's frontier to the high watermark captured at
plan time; window runs (backfills) `replace` or `fill` any offset window. Every micro-batch (for
a `replace`, every staged chunk of them) is one Delta commit that lands its rows and its ledger
update together, fenced per partition, so a crash or a concurrent writer can cost work but never
a duplicate or a hole. When another writer wins a race the run re-plans from the new ledger.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TypeVar

from confluent_kafka import Consumer

from connectors.background import ahead
from connectors.decoders import Decoded, Decoder, per_partition
from connectors.errors import (
    ConcurrentChange,
    DecodeError,
    LedgerError,
    NotFound,
    RetentionLossError,
    TransientError,
    UsageError,
)
from connectors.kafka_client import mirror_group_offsets, offsets_at, open_consumer, partition_marks
from connectors.ledger import Ledger
from connectors.planner import Mode, Plan, plan_forward, plan_window, time_window
from connectors.progress import Progress, ProgressHook
from connectors.ranges import OffsetRange, PartitionMarks, Partitions, Shard
from connectors.reader import RawBatch, read_ranges
from connectors.retry import Backoff, retrying
from connectors.staging import Stage
from connectors.stream import Stream
from connectors.writer import TableWriter, append_rows

log = logging.getLogger("lakeport")
T = TypeVar("T")


@dataclass
class RunReport:
    """What a run did, for logs, the CLI and Dagster metadata."""

    stream: str
    mode: Mode
    shard: str | None = None
    """`i/n` when the run was one of n shard workers."""
    ranges: list[OffsetRange] = field(default_factory=list)
    lost: list[OffsetRange] = field(default_factory=list)
    never_read: list[OffsetRange] = field(default_factory=list)
    """History deleted by retention before the table existed (recorded as lost, no failure)."""
    records: int = 0
    dead: int = 0
    bytes: int = 0
    commits: int = 0
    table_version: int | None = None
    lag: dict[int, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    replans: int = 0
    conflicts: int = 0
    """Commits that lost a race on partitions they did not touch and were simply retried."""
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    """Seconds per phase: `read_s` (reader thread), `wait_for_reader_s`, `decode_s`, `commit_s`."""

    @property
    def events_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


PlanMaker = Callable[[Ledger, dict[int, PartitionMarks], Consumer], Plan]


def run_forward(
    stream: Stream,
    max_records: int | None = None,
    partitions: Partitions | None = None,
    progress: ProgressHook | None = None,
) -> RunReport:
    """The scheduled path: land everything new, up to the high watermark seen at plan time.

    `partitions` restricts the run to some of the topic's partitions, or to a `Shard` of them
    (one worker of a stream spread over several); the ledger fences each partition, so shards
    of disjoint partitions commit to the same table independently.
    """
    budget = max_records or stream.config.max_records_per_run
    return _run(
        stream,
        "forward",
        lambda ledger, marks, _: plan_forward(ledger, marks, budget),
        partitions,
        progress,
    )


def run_window(
    stream: Stream, window: list[OffsetRange], mode: Mode, progress: ProgressHook | None = None
) -> RunReport:
    """Backfill an offset window: `replace` swaps it in atomically, `fill` lands what is missing."""
    return _run(
        stream,
        mode,
        lambda ledger, marks, _: plan_window(ledger, marks, window, mode),
        {r.partition for r in window},
        progress,
    )


def run_time_window(
    stream: Stream,
    start: datetime,
    end: datetime,
    mode: Mode,
    partitions: Partitions | None = None,
    progress: ProgressHook | None = None,
) -> RunReport:
    """Backfill the records whose Kafka timestamps fall in [start, end), per partition."""
    if start >= end:
        raise UsageError(
            f"the time window [{start.isoformat()}, {end.isoformat()}) is empty or reversed:"
            " --from must be earlier than --to"
        )

    def make(ledger: Ledger, marks: dict[int, PartitionMarks], consumer: Consumer) -> Plan:
        window = offset_window(consumer, stream.topic, marks, start, end)
        plan = plan_window(ledger, marks, window, mode)
        if window:
            return plan
        when = f"[{start.isoformat()}, {end.isoformat()})"
        return replace(plan, notes=[f"no record of topic {stream.topic!r} has a time in {when}"])

    return _run(stream, mode, make, partitions, progress)


def offset_window(
    consumer: Consumer, topic: str, marks: dict[int, PartitionMarks], start: datetime, end: datetime
) -> list[OffsetRange]:
    """The offset window per partition that a time window maps to (`offsets_for_times`)."""
    parts = sorted(marks)
    return time_window(
        offsets_at(consumer, topic, parts, start), offsets_at(consumer, topic, parts, end), marks
    )


def _run(
    stream: Stream,
    mode: Mode,
    make_plan: PlanMaker,
    partitions: Partitions | None,
    progress: ProgressHook | None = None,
) -> RunReport:
    """Plan, land and mirror; when another writer wins a race, re-plan from the new ledger.

    With `partitions`, the plan, the consumer, the commits and the group mirror touch only
    those partitions.
    """
    report = RunReport(
        stream.name, mode, str(partitions) if isinstance(partitions, Shard) else None
    )
    began = time.monotonic()
    decoders: list[Decoder] = []  # built once, on the first plan that reads anything

    def attempt() -> None:
        with open_consumer(stream.connection, stream.group_id) as consumer:
            marks = _only(partition_marks(consumer, stream.topic), partitions, stream.topic)
            writer = stream.writer()
            try:
                plan = make_plan(writer.ledger, marks, consumer)
                report.warnings += [n for n in plan.notes if n not in report.warnings]
                _record_unreadable(writer, plan, report)
                if plan.ranges:
                    decoders[:] = decoders or [stream.decoder()]
                    _land(stream, consumer, writer, plan, decoders[0], report, began, progress)
            except LedgerError as exc:  # the plan overlaps what another writer landed meanwhile
                raise ConcurrentChange(str(exc)) from None
            finally:
                report.conflicts += writer.conflicts
            report.table_version = writer.version
            _mirror(stream, consumer, writer.ledger, marks, report)

    def replan(exc: TransientError) -> None:
        report.replans += 1
        log.info("stream %s: another writer got there first (%s); re-planning", stream.name, exc)

    replans = Backoff(attempts=1_000, deadline_s=stream.config.replan_timeout_seconds)
    retrying(attempt, f"stream {stream.name}", replans, replan, retry_on=(ConcurrentChange,))
    report.seconds = time.monotonic() - began
    if report.lost and stream.config.on_retention_loss == "fail":
        lost = ", ".join(str(r) for r in report.lost)
        raise RetentionLossError(
            f"stream {stream.name}: offsets {lost} of topic {stream.topic!r} were deleted by"
            " retention before lakeport read them. They are recorded as lost in the ledger; the"
            " next run continues after them (set on_retention_loss: record-and-continue to"
            " not fail)."
        )
    return report


def _only(
    marks: dict[int, PartitionMarks], partitions: Partitions | None, topic: str
) -> dict[int, PartitionMarks]:
    """The watermarks of the partitions a run is restricted to (all when None)."""
    if partitions is None:
        return marks
    unknown = [] if isinstance(partitions, Shard) else sorted(set(partitions) - set(marks))
    if unknown:
        raise NotFound(
            f"topic {topic!r} has no partition {', '.join(map(str, unknown))} (it has"
            f" partitions 0..{max(marks, default=-1)}): check --partition"
        )
    return {p: m for p, m in marks.items() if p in partitions}


def _mirror(
    stream: Stream,
    consumer: Consumer,
    ledger: Ledger,
    marks: dict[int, PartitionMarks],
    report: RunReport,
) -> None:
    """Mirror the run's partitions' frontiers to the consumer group (for Kafka tools; other
    shards mirror their own) and compute the lag."""
    frontiers = {p: ledger.partition(p).frontier for p in ledger.partitions if p in marks}
    warning = mirror_group_offsets(
        consumer, stream.topic, frontiers, check_reachable=report.commits > 0
    )
    if warning:
        report.warnings.append(warning)
    if report.commits:
        marks = _only(partition_marks(consumer, stream.topic), set(marks), stream.topic)
    report.lag = {p: max(0, m.high - frontiers.get(p, 0)) for p, m in marks.items()}


def _land(
    stream: Stream,
    consumer: Consumer,
    writer: TableWriter,
    plan: Plan,
    decoder: Decoder,
    report: RunReport,
    began: float,
    progress: ProgressHook | None = None,
) -> None:
    """Read the plan's ranges and commit them: micro-batch by micro-batch, or for a `replace`,
    staged chunk by staged chunk (`staging` says why); report progress after each."""
    limit = stream.config.max_seconds_per_run
    total, done, records, started = sum(map(len, plan.ranges)), 0, 0, time.monotonic()
    batches = _timed(read_ranges(consumer, stream.topic, plan.ranges, stream.limits()), report)

    def commit(spans: list[OffsetRange], decoded: Decoded, value_bytes: int) -> None:
        args = (stream, writer, spans, decoded, value_bytes, plan.mode, report)
        _phase(report, "commit_s", _commit_batch, *args)

    with closing(ahead(batches)) as prefetched, Stage() as stage:  # reader ends before reuse
        waited = time.perf_counter()
        for raw in prefetched:
            report.timings["wait_for_reader_s"] += time.perf_counter() - waited
            decoded = _phase(report, "decode_s", decoder.decode, raw.records)
            _refuse_dead(stream, decoded)
            stopping = limit is not None and time.monotonic() - began > limit
            if plan.mode != "replace":
                commit(list(raw.spans), decoded, raw.bytes)
            else:
                stage.add(raw.spans, decoded, raw.bytes)
                if stage.full or stopping:
                    commit(*stage.take())
            done += sum(map(len, raw.spans))
            records += raw.records.num_rows
            if progress is not None:
                elapsed = time.monotonic() - started
                progress(Progress(stream.name, plan.mode, done, total, records, elapsed))
            if stopping:
                report.warnings.append("stopped at max_seconds_per_run")
                break
            waited = time.perf_counter()
        if stage:
            commit(*stage.take())


def _timed(batches: Iterator[RawBatch], report: RunReport) -> Iterator[RawBatch]:
    """The reader's batches, adding the time spent reading each to `report.timings`."""
    while True:
        began = time.perf_counter()
        batch = next(batches, None)
        report.timings["read_s"] += time.perf_counter() - began
        if batch is None:
            return
        yield batch


def _phase(report: RunReport, name: str, fn: Callable[..., T], *args: object) -> T:
    began = time.perf_counter()
    try:
        return fn(*args)
    finally:
        report.timings[name] += time.perf_counter() - began


def _record_unreadable(writer: TableWriter, plan: Plan, report: RunReport) -> None:
    """Record offsets retention deleted before they were read, in one ledger-only commit."""
    unreadable = [*plan.never_read, *plan.retention_loss]
    if not unreadable:
        return
    update = writer.update()
    for r in unreadable:
        update.mark_lost(r)
    writer.commit(update, append_rows(writer.store.schema.empty_table()), "retention")
    report.lost += plan.retention_loss
    report.never_read += plan.never_read
    report.commits += 1
    if plan.retention_loss:
        report.warnings.append(
            "lost to retention: " + ", ".join(str(r) for r in plan.retention_loss)
        )
    if plan.never_read:
        report.warnings.append(
            "never landed: offsets "
            + ", ".join(str(r) for r in plan.never_read)
            + " were deleted by retention before this table existed (recorded as lost to"
            " retention; this is not a failure)"
        )


def _refuse_dead(stream: Stream, decoded: Decoded) -> None:
    """With `on_decode_error: fail`, a batch with undecodable records stops the run uncommitted."""
    if decoded.dead.num_rows and stream.config.on_decode_error == "fail":
        first = decoded.dead.slice(0, 1).to_pylist()[0]
        raise DecodeError(
            f"stream {stream.name}: {decoded.dead.num_rows} records do not decode, first at"
            f" partition {first['kafka_partition']} offset {first['kafka_offset']}:"
            f" {first['error_class']}: {first['error_message']} (nothing of this batch was"
            " committed; set on_decode_error: dead-letter to keep going)"
        )


def _commit_batch(
    stream: Stream,
    writer: TableWriter,
    spans: list[OffsetRange],
    decoded: Decoded,
    value_bytes: int,
    mode: Mode,
    report: RunReport,
) -> None:
    """Land the rows read from `spans`: its ledger update, then dead letters and rows through
    the writer."""
    rows, dead = per_partition(decoded.rows), per_partition(decoded.dead)
    update = writer.update()
    held = writer.held(spans) if mode == "replace" else {}
    for span in spans:
        n_rows, n_dead = rows.get(span.partition, 0), dead.get(span.partition, 0)
        if mode == "replace":
            old_records, old_dead = held[span]
            update.replace(span, n_rows + n_dead, n_dead, old_records, old_dead)
        else:
            update.add(span, n_rows + n_dead, n_dead)
    report.table_version = writer.commit_batch(
        update,
        decoded.rows,
        decoded.dead,
        spans,
        mode,
        extra={
            "lakeport.stream": stream.name,
            "lakeport.records": str(decoded.rows.num_rows),
            "lakeport.dead_letters": str(decoded.dead.num_rows),
        },
    )
    report.commits += 1
    report.ranges += spans
    report.records += decoded.rows.num_rows
    report.dead += decoded.dead.num_rows
    report.bytes += value_bytes
