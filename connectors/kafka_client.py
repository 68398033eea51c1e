"""Kafka clients built from a connection config, and the broker facts a plan needs.

The only place that turns a `ConnectionConfig` into librdkafka settings, so secret handling
(never logged, never in an error) and TLS defaults live in one spot.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from connectors.config import ConnectionConfig
from connectors.errors import LakeportError


class KafkaError(LakeportError):
    """The broker could not be reached or refused a request; the message is safe to show."""


def client_settings(conn: ConnectionConfig) -> dict[str, str]:
    """librdkafka settings for `conn`; contains the password, so never log the result."""
    settings: dict[str, str] = {
        "bootstrap.servers": conn.bootstrap_servers,
        "security.protocol": conn.security_protocol,
        "socket.connection.setup.timeout.ms": "10000",
    }
    if conn.sasl_mechanism:
        settings["sasl.mechanism"] = conn.sasl_mechanism
    if conn.sasl_username:
        settings["sasl.username"] = conn.sasl_username
    if conn.sasl_password:
        settings["sasl.password"] = conn.sasl_password.get_secret_value()
    if conn.ssl_ca_location:
        settings["ssl.ca.location"] = conn.ssl_ca_location
    if conn.security_protocol in ("SSL", "SASL_SSL"):
        verify = "false" if conn.insecure_skip_tls_verification else "true"
        settings["enable.ssl.certificate.verification"] = verify
        settings["ssl.endpoint.identification.algorithm"] = "none" if verify == "false" else "https"
    settings.update(conn.options)
    return settings


def range_consumer(conn: ConnectionConfig, group_id: str) -> Consumer:
    """A consumer for reading assigned offset ranges: no auto-commit, no silent reset.

    `auto.offset.reset=error` makes a start below the log start an error instead of a silent
    jump forward (that is how retention loss goes unnoticed); `read_committed` keeps aborted
    transactional records out; partition EOF events tell when a range ends at the high mark.
    """
    return Consumer(
        {
            **client_settings(conn),
            "group.id": group_id,
            "enable.auto.commit": "false",
            "enable.auto.offset.store": "false",
            "auto.offset.reset": "error",
            "isolation.level": "read_committed",
            "enable.partition.eof": "true",
            "fetch.max.bytes": str(64 * 1024 * 1024),
            "max.partition.fetch.bytes": str(16 * 1024 * 1024),
            "queued.max.messages.kbytes": str(256 * 1024),
        }
    )


@contextmanager
def open_consumer(conn: ConnectionConfig, group_id: str) -> Iterator[Consumer]:
    consumer = range_consumer(conn, group_id)
    try:
        yield consumer
    finally:
        consumer.close()


@dataclass(frozen=True)
class PartitionMarks:
    """Where a partition's log starts and ends right now."""

    partition: int
    low: int
    high: int


def partition_marks(
    consumer: Consumer, topic: str, timeout: float = 10.0
) -> dict[int, PartitionMarks]:
    """Log start and end offsets of every partition of `topic` (the end as read_committed sees it)."""
    try:
        meta = consumer.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise KafkaError(f"cannot read metadata of topic {topic!r}: {exc.args[0]}") from None
    info = meta.topics.get(topic)
    if info is None or info.error is not None:
        reason = info.error.str() if info is not None and info.error is not None else "not found"
        raise KafkaError(f"topic {topic!r} is not available: {reason}")
    marks: dict[int, PartitionMarks] = {}
    for p in sorted(info.partitions):
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
        except KafkaException as exc:
            raise KafkaError(f"cannot read offsets of {topic}[{p}]: {exc.args[0]}") from None
        marks[p] = PartitionMarks(p, low, high)
    return marks


def offsets_at(
    consumer: Consumer, topic: str, partitions: list[int], when: datetime, timeout: float = 10.0
) -> dict[int, int | None]:
    """The first offset of each partition whose timestamp is >= `when` (None: no such record)."""
    millis = int(when.timestamp() * 1000)
    query = [TopicPartition(topic, p, millis) for p in partitions]
    try:
        found = consumer.offsets_for_times(query, timeout=timeout)
    except KafkaException as exc:
        raise KafkaError(
            f"cannot map {when.isoformat()} to offsets of {topic}: {exc.args[0]}"
        ) from None
    return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in found}


def mirror_group_offsets(consumer: Consumer, topic: str, positions: dict[int, int]) -> str | None:
    """Commit positions to the consumer group so Kafka tools show lag; never read back.

    Returns a warning instead of failing: the table is the source of truth, the group a mirror.
    """
    if not positions:
        return None
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in sorted(positions.items())],
            asynchronous=False,
        )
    except KafkaException as exc:
        return f"could not mirror positions to the consumer group: {exc.args[0]}"
    return None


def admin(conn: ConnectionConfig) -> AdminClient:
    return AdminClient(client_settings(conn))
