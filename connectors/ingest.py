"""One run of a stream: plan, read, decode and commit micro-batches, each with its ledger update.

Forward runs (the schedule) read from the ledger's frontier to the high watermark captured at
plan time; window runs (backfills) `replace` or `fill` any offset window. Every micro-batch is
one Delta commit that lands its rows and its ledger update together, fenced per partition, so a
crash or a concurrent writer can cost work but never a duplicate or a hole. When another writer
wins a race the run re-plans from the new ledger.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime

from confluent_kafka import Consumer
from deltalake import DeltaTable

from connectors.background import ahead
from connectors.config import ConnectionConfig, LakeportConfig, StreamConfig
from connectors.decoding import Decoded, Decoder, per_partition
from connectors.delta_store import ConcurrentChange, DeltaStore, dead_letter_store
from connectors.errors import LakeportError
from connectors.json_decoder import JsonDecoder
from connectors.kafka_client import (
    PartitionMarks,
    mirror_group_offsets,
    offsets_at,
    open_consumer,
    partition_marks,
)
from connectors.ledger import Ledger, LedgerError, LedgerUpdate, LedgerView
from connectors.planner import Mode, Plan, plan_forward, plan_window, time_window
from connectors.ranges import OffsetRange
from connectors.reader import RawBatch, ReadLimits, read_ranges
from connectors.table_schema import StreamSchema, load_schema

log = logging.getLogger("lakeport")


class DecodeError(LakeportError):
    """A record did not decode and the stream's policy is to stop rather than dead-letter."""


class RetentionLossError(LakeportError):
    """Offsets the table still needed were deleted by retention (recorded, then the run stops)."""


@dataclass(frozen=True)
class Stream:
    """Everything a run of one configured stream needs."""

    name: str
    config: StreamConfig
    connection: ConnectionConfig
    schema: StreamSchema
    table: DeltaStore
    dead_letters: DeltaStore

    @classmethod
    def from_config(cls, config: LakeportConfig, name: str) -> Stream:
        stream = config.stream(name)
        schema = load_schema(config.schema_path(stream))
        options = config.storage_options()
        return cls(
            name=name,
            config=stream,
            connection=config.connections[stream.connection],
            schema=schema,
            table=DeltaStore(config.table_uri(stream), schema.arrow, options),
            dead_letters=dead_letter_store(config.dead_letter_uri(stream), options),
        )

    @property
    def topic(self) -> str:
        return self.config.topic

    @property
    def group_id(self) -> str:
        return self.config.group_id or f"lakeport.{self.name}"

    def decoder(self) -> Decoder:
        if self.config.format == "json":
            return JsonDecoder(self.schema)
        from connectors.avro_decoder import AvroDecoder

        return AvroDecoder(self.schema, self.config)

    def limits(self) -> ReadLimits:
        return ReadLimits(
            batch_records=self.config.batch_records,
            batch_bytes=self.config.batch_bytes,
            idle_timeout=self.config.idle_timeout_seconds,
        )


@dataclass
class RunReport:
    """What a run did, for logs, the CLI and Dagster metadata."""

    stream: str
    mode: Mode
    ranges: list[OffsetRange] = field(default_factory=list)
    lost: list[OffsetRange] = field(default_factory=list)
    records: int = 0
    dead: int = 0
    bytes: int = 0
    commits: int = 0
    files_added: int = 0
    table_version: int | None = None
    lag: dict[int, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    replans: int = 0
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


PlanMaker = Callable[[Ledger, dict[int, PartitionMarks], Consumer], Plan]


def run_forward(stream: Stream, max_records: int | None = None) -> RunReport:
    """The scheduled path: land everything new, up to the high watermark seen at plan time."""
    budget = max_records or stream.config.max_records_per_run
    return _run(stream, "forward", lambda ledger, marks, _: plan_forward(ledger, marks, budget))


def run_window(stream: Stream, window: list[OffsetRange], mode: Mode) -> RunReport:
    """Backfill an offset window: `replace` swaps it in atomically, `fill` lands what is missing."""
    return _run(stream, mode, lambda ledger, marks, _: plan_window(ledger, marks, window, mode))


def run_time_window(stream: Stream, start: datetime, end: datetime, mode: Mode) -> RunReport:
    """Backfill the records whose Kafka timestamps fall in [start, end), per partition."""

    def make(ledger: Ledger, marks: dict[int, PartitionMarks], consumer: Consumer) -> Plan:
        return plan_window(
            ledger, marks, offset_window(consumer, stream.topic, marks, start, end), mode
        )

    return _run(stream, mode, make)


def offset_window(
    consumer: Consumer, topic: str, marks: dict[int, PartitionMarks], start: datetime, end: datetime
) -> list[OffsetRange]:
    """The offset window per partition that a time window maps to (`offsets_for_times`)."""
    parts = sorted(marks)
    return time_window(
        offsets_at(consumer, topic, parts, start), offsets_at(consumer, topic, parts, end), marks
    )


def _run(stream: Stream, mode: Mode, make_plan: PlanMaker) -> RunReport:
    report = RunReport(stream.name, mode)
    began = time.monotonic()
    decoder: Decoder | None = None
    for attempt in itertools.count():
        try:
            with open_consumer(stream.connection, stream.group_id) as consumer:
                marks = partition_marks(consumer, stream.topic)
                ledgers = LedgerView(stream.table.open(), stream.topic)
                plan = make_plan(ledgers.current(), marks, consumer)
                _record_unreadable(stream, ledgers, plan, report)
                if plan.ranges:
                    decoder = decoder or stream.decoder()
                    _land(stream, consumer, ledgers, plan, decoder, report, began)
                report.table_version = ledgers.table.version()
                ledger = ledgers.current()
                frontiers = {p: ledger.partition(p).frontier for p in ledger.partitions}
                warning = mirror_group_offsets(
                    consumer, stream.topic, frontiers, check_reachable=report.commits > 0
                )
                if warning:
                    report.warnings.append(warning)
                if report.commits:
                    marks = partition_marks(consumer, stream.topic)
                report.lag = {p: max(0, m.high - frontiers.get(p, 0)) for p, m in marks.items()}
            break
        except (ConcurrentChange, LedgerError) as exc:
            if time.monotonic() - began > stream.config.replan_timeout_seconds:
                raise
            report.replans += 1
            log.info(
                "stream %s: another writer got there first (%s); re-planning", stream.name, exc
            )
            # Back off with jitter so that two racing writers stop colliding.
            time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
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


def _land(
    stream: Stream,
    consumer: Consumer,
    ledgers: LedgerView,
    plan: Plan,
    decoder: Decoder,
    report: RunReport,
    began: float,
) -> None:
    """Read the plan's ranges and commit them micro-batch by micro-batch."""
    limit = stream.config.max_seconds_per_run
    batches = read_ranges(consumer, stream.topic, plan.ranges, stream.limits())
    with closing(ahead(batches)) as prefetched:  # the reader thread ends before reuse
        for raw in prefetched:
            _commit_batch(stream, ledgers, raw, decoder.decode(raw.records), plan.mode, report)
            if limit is not None and time.monotonic() - began > limit:
                report.warnings.append("stopped at max_seconds_per_run")
                break


def _record_unreadable(stream: Stream, ledgers: LedgerView, plan: Plan, report: RunReport) -> None:
    """Record offsets retention deleted before they were read, in one ledger-only commit."""
    unreadable = [*plan.never_read, *plan.retention_loss]
    if not unreadable:
        return
    update = LedgerUpdate(ledgers.current())
    for r in unreadable:
        update.mark_lost(r)
    version = stream.table.commit(
        ledgers.table, stream.table.schema.empty_table(), update, "retention"
    )
    ledgers.committed(update, version)
    report.lost += plan.retention_loss
    report.commits += 1
    if plan.retention_loss:
        report.warnings.append(
            "lost to retention: " + ", ".join(str(r) for r in plan.retention_loss)
        )


def _commit_batch(
    stream: Stream,
    ledgers: LedgerView,
    raw: RawBatch,
    decoded: Decoded,
    mode: Mode,
    report: RunReport,
) -> None:
    """Land one micro-batch: dead letters for its window first (idempotent), then rows + ledger."""
    spans = list(raw.spans)
    if decoded.dead.num_rows and stream.config.on_decode_error == "fail":
        first = decoded.dead.slice(0, 1).to_pylist()[0]
        raise DecodeError(
            f"stream {stream.name}: {decoded.dead.num_rows} records do not decode, first at"
            f" partition {first['kafka_partition']} offset {first['kafka_offset']}:"
            f" {first['error_class']}: {first['error_message']} (nothing of this batch was"
            " committed; set on_decode_error: dead-letter to keep going)"
        )
    rows, dead = per_partition(decoded.rows), per_partition(decoded.dead)
    table = ledgers.table
    update = LedgerUpdate(ledgers.current())
    if mode == "replace":
        old_dead = _existing_per_span(stream.dead_letters, spans)
        old_rows = _existing_per_span(stream.table, spans, table)
    stream.dead_letters.replace_window(spans, decoded.dead)
    for span in spans:
        n_rows, n_dead = rows.get(span.partition, 0), dead.get(span.partition, 0)
        if mode == "replace":
            was_dead = old_dead[span]
            update.replace(span, n_rows + n_dead, n_dead, old_rows[span] + was_dead, was_dead)
        else:
            update.add(span, n_rows + n_dead, n_dead)
    report.table_version = stream.table.commit(
        table,
        decoded.rows,
        update,
        mode,
        replace=spans if mode == "replace" else None,
        extra={
            "lakeport.stream": stream.name,
            "lakeport.records": str(decoded.rows.num_rows),
            "lakeport.dead_letters": str(decoded.dead.num_rows),
        },
    )
    ledgers.committed(update, report.table_version)
    report.commits += 1
    if report.commits % 100 == 0:
        ledgers.reload(stream.table.open())
    report.ranges += spans
    report.records += decoded.rows.num_rows
    report.dead += decoded.dead.num_rows
    report.bytes += raw.bytes


def _existing_per_span(
    store: DeltaStore, spans: list[OffsetRange], table: DeltaTable | None = None
) -> dict[OffsetRange, int]:
    snapshot = table or store.open_existing()
    if snapshot is None:
        return dict.fromkeys(spans, 0)
    return {span: store.count_in(snapshot, [span]) for span in spans}
