"""`lakeport check-connection`: prove a stream's connection works before the first ingest.

Walks the steps an ingest needs, in order (reach and authenticate, see the topic and its
partitions, read their offsets, use the consumer group), and stops at the first failure with
one sentence that names the setting to fix. Secrets never appear in the report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, TopicPartition

from connectors.errors import AccessDenied, BrokerUnavailable, LakeportError
from connectors.kafka_client import (
    LakeportConsumer,
    group_problem,
    open_consumer,
    partition_marks,
    serve_events,
)
from connectors.ranges import PartitionMarks
from connectors.stream import Stream

GROUP_TIMEOUT_S = 10.0


@dataclass
class ConnectionReport:
    """What worked, and the first thing that did not (None: the stream can be ingested)."""

    stream: str
    bootstrap_servers: str
    topic: str
    group_id: str
    steps: list[str] = field(default_factory=list)
    partitions: dict[int, PartitionMarks] = field(default_factory=dict)
    error: LakeportError | None = None
    seconds: float = 0.0

    @property
    def problem(self) -> str | None:
        return None if self.error is None else str(self.error)

    @property
    def ok(self) -> bool:
        return self.error is None


def check_connection(
    stream: Stream, metadata_timeout: float = 10.0, group_timeout: float = GROUP_TIMEOUT_S
) -> ConnectionReport:
    """Connect as the stream would, and explain the first failure in plain words."""
    conn = stream.connection
    report = ConnectionReport(stream.name, conn.bootstrap_servers, stream.topic, stream.group_id)
    began = time.monotonic()
    try:
        with open_consumer(conn, stream.group_id) as consumer:
            report.partitions = partition_marks(consumer, stream.topic, metadata_timeout)
            mechanism = f" with SASL {conn.sasl_mechanism}" if conn.sasl_mechanism else ""
            report.steps.append(
                f"connected to {conn.bootstrap_servers} over {conn.security_protocol}{mechanism}"
            )
            report.steps.append(
                f"topic {stream.topic!r}: {len(report.partitions)} partitions, offsets "
                + ", ".join(f"{p}:[{m.low},{m.high})" for p, m in report.partitions.items())
            )
            report.steps.append(_check_read(consumer, stream, report.partitions, group_timeout))
            _check_group(consumer, stream, sorted(report.partitions), group_timeout)
            report.steps.append(f"consumer group {stream.group_id!r}: may be used")
    except LakeportError as exc:
        report.error = exc
    report.seconds = time.monotonic() - began
    return report


def _check_read(
    consumer: LakeportConsumer,
    stream: Stream,
    marks: dict[int, PartitionMarks],
    timeout: float,
) -> str:
    """Fetch one record (or the end of an empty partition): proves READ on the topic.

    Metadata and offsets need DESCRIBE only, so a user who may not READ the topic would pass
    every other step and fail only at the first ingest.
    """
    p, mark = max(marks.items(), key=lambda item: item[1].high - item[1].low)
    consumer.assign([TopicPartition(stream.topic, p, mark.low)])
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in consumer.consume(1, timeout=0.5):  # a denied READ raises AccessDenied
                error = m.error()
                if error is None:
                    return f"read offset {m.offset()} of partition {p}: READ permitted"
                if error.code() == RdKafkaError._PARTITION_EOF:
                    return f"read partition {p} (empty) to its end: READ permitted"
                raise BrokerUnavailable(
                    f"reading {stream.topic}[{p}] from {stream.connection.bootstrap_servers}"
                    f" failed: {error.str()}"
                )
        raise BrokerUnavailable(
            f"no record of {stream.topic}[{p}] arrived from"
            f" {stream.connection.bootstrap_servers} within {timeout:.0f} s"
        )
    finally:
        consumer.unassign()


def _check_group(
    consumer: LakeportConsumer, stream: Stream, partitions: list[int], timeout: float
) -> None:
    """Fetch the group's committed offsets: needs Group READ/DESCRIBE, like the offset mirror.

    An unauthorized group makes `committed()` time out while the reason arrives as an error
    event, so ask in short attempts and look at the events in between.
    """
    query = [TopicPartition(stream.topic, p) for p in partitions]
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        try:
            result = consumer.committed(query, timeout=max(0.2, min(1.0, remaining)))
        except KafkaException as exc:
            last = exc.args[0].str()
            result = None
        if result is not None:
            errors = [tp.error for tp in result if tp.error is not None]
            if not errors:
                return
            _raise_group_problem(stream, errors[0])
        for event in serve_events(consumer, 0.1):
            _raise_group_problem(stream, event)
        if time.monotonic() >= deadline:
            raise BrokerUnavailable(
                f"consumer group {stream.group_id!r} on {stream.connection.bootstrap_servers}"
                f" did not answer within {timeout:.0f} s ({last})"
            )


def _raise_group_problem(stream: Stream, error: RdKafkaError) -> None:
    conn = stream.connection
    who = f"user {conn.sasl_username!r}" if conn.sasl_username else "this client"
    if error.code() == RdKafkaError.GROUP_AUTHORIZATION_FAILED:
        raise AccessDenied(group_problem(conn, stream.group_id))
    if error.code() == RdKafkaError.TOPIC_AUTHORIZATION_FAILED:
        raise AccessDenied(
            f"{who} is not authorized to read topic {stream.topic!r} on {conn.bootstrap_servers}"
        )
    if error.code() in (RdKafkaError._PARTITION_EOF, RdKafkaError._NO_OFFSET):
        return
    raise BrokerUnavailable(
        f"consumer group {stream.group_id!r} on {conn.bootstrap_servers}: {error.str()}"
    )
