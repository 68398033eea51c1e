"""Read planned offset ranges from Kafka, exactly those, as Arrow micro-batches.

The consumer is `assign`ed to each range's start (no subscription, no group rebalances) and
drops anything at or past the range's end. A range is complete when the consumer's position
reaches its end, even if the last offsets hold no record (transaction markers, compaction):
the partition-EOF event carries the position, so such ranges neither hang nor leave a false
gap. Each micro-batch reports, per partition, the span it has fully read.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, TopicPartition

from connectors.errors import LakeportError
from connectors.ranges import OffsetRange
from connectors.table_schema import KAFKA_FIELDS, KAFKA_HEADER, UTC_MICROS

RAW_SCHEMA = pa.schema([*KAFKA_FIELDS, pa.field("value", pa.binary())])


class ReadError(LakeportError):
    """Kafka reported an error for a partition being read (the message is safe to show)."""


@dataclass(frozen=True)
class RawBatch:
    """Records of a micro-batch and the spans they complete (records may be fewer than offsets)."""

    records: pa.Table
    spans: tuple[OffsetRange, ...]
    bytes: int


@dataclass(frozen=True)
class ReadLimits:
    batch_records: int
    batch_bytes: int
    idle_timeout: float
    poll_timeout: float = 1.0


def read_ranges(
    consumer: Consumer, topic: str, ranges: list[OffsetRange], limits: ReadLimits
) -> Iterator[RawBatch]:
    """Yield micro-batches until every range is read or nothing arrives for `idle_timeout`.

    Stopping early is safe: each batch names exactly the spans it holds, so an unfinished
    range stays missing in the ledger and the next run continues it.
    """
    ends = {r.partition: r.end for r in ranges if r.end > r.start}
    starts = {r.partition: r.start for r in ranges if r.end > r.start}
    if not ends:
        return
    consumer.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
    position = dict(starts)
    open_parts = set(ends)
    try:
        while open_parts:
            batch = _read_batch(consumer, topic, ends, position, open_parts, limits)
            if batch is None:
                return
            yield batch
    finally:
        consumer.unassign()


def _read_batch(
    consumer: Consumer,
    topic: str,
    ends: dict[int, int],
    position: dict[int, int],
    open_parts: set[int],
    limits: ReadLimits,
) -> RawBatch | None:
    """Consume one micro-batch; None when nothing arrived before the idle timeout."""
    partitions: list[int] = []
    offsets: list[int] = []
    timestamps: list[int] = []
    keys: list[bytes | None] = []
    headers: list[list[tuple[str, bytes]] | None] = []
    values: list[bytes | None] = []
    size = 0
    began = {p: position[p] for p in open_parts}
    idle_since = time.monotonic()
    # Millions of short-lived message objects make the cyclic GC take about half the loop's
    # time; nothing here creates cycles, so pause it for the batch.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while open_parts and len(values) < limits.batch_records and size < limits.batch_bytes:
            want = min(limits.batch_records - len(values), 10_000)
            messages = consumer.consume(want, timeout=limits.poll_timeout)
            if not messages:
                if time.monotonic() - idle_since > limits.idle_timeout:
                    break
                continue
            idle_since = time.monotonic()
            for m in messages:
                p = m.partition()
                if p not in open_parts:
                    continue
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        position[p] = max(position[p], m.offset())
                    else:
                        raise ReadError(f"reading {topic}[{p}] failed: {err.str()}")
                else:
                    o = m.offset()
                    if o < ends[p]:
                        v = m.value()
                        partitions.append(p)
                        offsets.append(o)
                        timestamps.append(m.timestamp()[1])
                        keys.append(m.key())
                        headers.append(m.headers())
                        values.append(v)
                        if v is not None:
                            size += len(v)
                    position[p] = o + 1
                if position[p] >= ends[p]:
                    position[p] = ends[p]
                    open_parts.discard(p)
                    consumer.incremental_unassign([TopicPartition(topic, p)])
    finally:
        if gc_was_enabled:
            gc.enable()
    spans = tuple(
        OffsetRange(p, s, position[p]) for p, s in sorted(began.items()) if position[p] > s
    )
    if not spans:
        return None
    records = pa.Table.from_arrays(
        [
            pa.array([topic] * len(values), pa.string()),
            pa.array(partitions, pa.int32()),
            pa.array(offsets, pa.int64()),
            pa.array(timestamps, pa.int64()).cast(pa.timestamp("ms", tz="UTC")).cast(UTC_MICROS),
            pa.array(keys, pa.binary()),
            pa.array(headers, pa.list_(KAFKA_HEADER)),
            pa.array(values, pa.binary()),
        ],
        schema=RAW_SCHEMA,
    )
    return RawBatch(records, spans, size)
