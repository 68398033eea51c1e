"""Read planned offset ranges from Kafka, exactly those, as Arrow micro-batches.

The consumer is `assign`ed to each range's start (no subscription, no group rebalances) and
drops anything at or past the range's end. A range is complete when the consumer's position
reaches its end, even if the last offsets hold no record (transaction markers, compaction):
the partition-EOF event carries the position, so such ranges neither hang nor leave a false
gap. Each micro-batch reports, per partition, the span it has fully read.
"""

from __future__ import annotations

import gc
import operator
import time
from collections import defaultdict
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from itertools import zip_longest
from typing import cast

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from connectors.errors import BrokerUnavailable
from connectors.ranges import OffsetRange
from connectors.table_schema import KAFKA_FIELDS, KAFKA_HEADER, UTC_MICROS

_SECOND = operator.itemgetter(1)  # (timestamp type, timestamp) -> timestamp
RAW_SCHEMA = pa.schema([*KAFKA_FIELDS, pa.field("value", pa.binary())])
HEADERS = pa.list_(KAFKA_HEADER)


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

    A partition with several ranges (holes left by backfills) is read in rounds: the first
    range of every partition, then the second, and so on. Stopping early is safe: each batch
    names exactly the spans it holds, so an unfinished range stays missing in the ledger and
    the next run continues it.
    """
    per_partition: dict[int, list[OffsetRange]] = defaultdict(list)
    for r in sorted(ranges):
        if r.end > r.start:
            per_partition[r.partition].append(r)
    for round_ in zip_longest(*per_partition.values()):
        current = [r for r in round_ if r is not None]
        finished = yield from _read_round(consumer, topic, current, limits)
        if not finished:
            return


def _read_round(
    consumer: Consumer, topic: str, ranges: list[OffsetRange], limits: ReadLimits
) -> Generator[RawBatch, None, bool]:
    """Read at most one range per partition; False if it stopped at the idle timeout."""
    ends = {r.partition: r.end for r in ranges}
    position = {r.partition: r.start for r in ranges}
    consumer.assign([TopicPartition(topic, p, o) for p, o in position.items()])
    open_parts = set(ends)
    try:
        while open_parts:
            batch = _read_batch(consumer, topic, ends, position, open_parts, limits)
            if batch is None:
                return False
            yield batch
    finally:
        consumer.unassign()
    return True


def _read_batch(
    consumer: Consumer,
    topic: str,
    ends: dict[int, int],
    position: dict[int, int],
    open_parts: set[int],
    limits: ReadLimits,
) -> RawBatch | None:
    """Consume one micro-batch; None when nothing arrived before the idle timeout."""
    chunks: list[pa.RecordBatch] = []
    records = size = 0
    began = {p: position[p] for p in open_parts}
    idle_since = time.monotonic()
    # Millions of short-lived message objects make the cyclic GC take about half the loop's
    # time; nothing here creates cycles, so pause it for the batch.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while open_parts and records < limits.batch_records and size < limits.batch_bytes:
            # consume() waits for all it asks for: never ask past the ranges' ends (those
            # offsets hold records, or partition-EOF events stand in for them)
            left = sum(ends[p] - position[p] for p in open_parts)
            want = min(limits.batch_records - records, 10_000, left)
            messages = consumer.consume(want, timeout=limits.poll_timeout)
            if not messages:
                if time.monotonic() - idle_since > limits.idle_timeout:
                    break
                continue
            idle_since = time.monotonic()
            messages = _without_events(topic, messages, ends, position)
            if messages:
                chunk = _chunk(topic, messages, ends, position)
                records += chunk.num_rows
                size += _value_bytes(chunk)
                chunks.append(chunk)
            for p in [p for p in open_parts if position[p] == ends[p]]:
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
    return RawBatch(pa.Table.from_batches(chunks, schema=RAW_SCHEMA), spans, size)


def _value_bytes(chunk: pa.RecordBatch) -> int:
    lengths = pc.binary_length(cast(pa.BinaryArray, chunk.column("value")))
    return int(pc.sum(lengths).as_py() or 0)


def _without_events(
    topic: str, messages: list[Message], ends: dict[int, int], position: dict[int, int]
) -> list[Message]:
    """Apply partition-EOF events to the positions, raise on real errors, keep the records."""
    events = [m for m in messages if m.error() is not None]
    if not events:
        return messages
    for m in events:
        err, p = cast(KafkaError, m.error()), cast(int, m.partition())
        if err.code() == KafkaError._PARTITION_EOF:
            if p in ends:
                position[p] = min(max(position[p], cast(int, m.offset())), ends[p])
        elif p in ends or err.fatal():
            raise BrokerUnavailable(f"reading {topic}[{p}] failed: {err.str()}")
        # Anything else (a broker connection dropping) librdkafka retries by itself; if it
        # never recovers, the idle timeout ends the batch and the run keeps what it has.
    return [m for m in messages if m.error() is None]


def _chunk(
    topic: str, messages: list[Message], ends: dict[int, int], position: dict[int, int]
) -> pa.RecordBatch:
    """Columns of the messages, one `map` over an unbound method each (the hot loop: ~10 %
    faster than comprehensions), cut at each range's end."""
    # records (not events) always carry a partition and an offset
    partitions = cast(list[int], list(map(Message.partition, messages)))
    offsets = cast(list[int], list(map(Message.offset, messages)))
    last = dict(zip(partitions, offsets, strict=True))  # offsets rise within a partition
    for p, o in last.items():
        position[p] = min(max(position[p], o + 1), ends[p])
    headers = list(map(Message.headers, messages))
    n = len(messages)
    chunk = pa.RecordBatch.from_arrays(
        [
            pa.array([topic] * n, pa.string()),
            pa.array(partitions, pa.int32()),
            pa.array(offsets, pa.int64()),
            pa.array(list(map(_SECOND, map(Message.timestamp, messages))), pa.int64())
            .cast(pa.timestamp("ms", tz="UTC"))
            .cast(UTC_MICROS),
            pa.array(list(map(Message.key, messages)), pa.binary()),
            pa.nulls(n, HEADERS) if headers.count(None) == n else pa.array(headers, HEADERS),
            pa.array(list(map(Message.value, messages)), pa.binary()),
        ],
        schema=RAW_SCHEMA,
    )
    if all(o < ends[p] for p, o in last.items()):
        return chunk
    limit = pa.array([ends[p] for p in partitions], pa.int64())
    return chunk.filter(pc.less(chunk.column("kafka_offset"), limit))
