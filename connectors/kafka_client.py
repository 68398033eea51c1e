"""Kafka clients built from a connection config, and the broker facts a plan needs.

The only place that turns a `ConnectionConfig` into librdkafka settings, so secret handling
(never logged, never in an error) and TLS defaults live in one spot. librdkafka reports most
connection problems (bad password, untrusted certificate, refused connection) only to its
`error_cb` while the request itself just times out, so every client built here records those
reports and the metadata calls turn them into one plain sentence for the user.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka import KafkaError as RdKafkaError

from connectors.config import ConnectionConfig
from connectors.errors import (
    AccessDenied,
    BrokerUnavailable,
    ConfigError,
    LakeportError,
    NotFound,
)
from connectors.ranges import PartitionMarks
from connectors.retry import Backoff, retrying

log = logging.getLogger("lakeport")
# librdkafka's own log lines (they never contain sasl.password: checked by the hygiene tests).
rdkafka_log = logging.getLogger("lakeport.librdkafka")


class LibraryLog:
    """Where librdkafka's own log lines go: the logger `lakeport.librdkafka`, at INFO at most.

    librdkafka logs every failed connection attempt (about 190 lines in 10 s for a closed port)
    at ERROR, and prints them itself to stderr when a client has no `logger`. lakeport turns
    what they mean into one sentence (through `error_cb`), so by default they are noise; they
    are diagnostics for `-v` (INFO), and debug lines stay at DEBUG.
    """

    def log(self, level: int, msg: str, *args: object) -> None:
        rdkafka_log.log(min(level, logging.INFO), msg, *args)


rdkafka_logger = LibraryLog()
"""Pass as `logger=` to every librdkafka client (producers and admin clients of tools too)."""

METADATA_TIMEOUT_S = 10.0
_WATERMARK_TRIES = Backoff(attempts=3, deadline_s=35.0)
_TLS_PROBE_TIMEOUT_S = 3.0
# Errors that retrying will not fix: report them at once instead of waiting for a timeout.
_BLOCKING_CODES = frozenset({RdKafkaError._AUTHENTICATION, RdKafkaError._SSL})


class ClientHealth:
    """What librdkafka told a client's `error_cb`: the newest and the most telling error."""

    def __init__(self, conn: ConnectionConfig) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        self.last: tuple[int, str] | None = None
        self.blocking: tuple[int, str] | None = None
        self.commit_result: tuple[RdKafkaError | None, list[TopicPartition]] | None = None

    def committed(self, error: RdKafkaError | None, partitions: list[TopicPartition]) -> None:
        """`on_commit`: the outcome of an asynchronous offset commit."""
        self.commit_result = (error, partitions)

    def record(self, error: RdKafkaError) -> None:
        """`error_cb`: remember the error; authentication and TLS failures win over others."""
        code, text = error.code(), error.str()
        if code == RdKafkaError._ALL_BROKERS_DOWN and self.last is not None:
            return  # "1/1 brokers are down" says less than the error that took them down
        with self._lock:
            self.last = (code, text)
            if code in _BLOCKING_CODES or (
                code == RdKafkaError._TRANSPORT and "certificate verify failed" in text
            ):
                self.blocking = (code, text)

    def reset(self) -> None:
        with self._lock:
            self.last = self.blocking = None

    def blocking_error(self) -> LakeportError | None:
        """The authentication/TLS failure seen so far, if any, as a catalogued error."""
        return error_for(self.conn, *self.blocking) if self.blocking else None

    def explain_last(self) -> str | None:
        return explain(self.conn, *self.last) if self.last else None


class LakeportConsumer(Consumer):
    """A consumer that knows its connection and what librdkafka reported about it."""

    health: ClientHealth
    group_id: str

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        """As Consumer.consume, but denied permissions are errors in plain words, not record
        errors.

        librdkafka looks up the group coordinator even for assigned partitions and reports a
        denied group as an error event tagged with some partition, which would read as a
        failure of that partition; a user who may DESCRIBE a topic but not READ it learns so
        only from the fetch, as an error event per partition.
        """
        messages = super().consume(num_messages, timeout)
        for m in messages:
            err = m.error()
            if err is None:
                continue
            if err.code() == RdKafkaError.GROUP_AUTHORIZATION_FAILED:
                raise AccessDenied(group_problem(self.health.conn, self.group_id))
            if err.code() == RdKafkaError.TOPIC_AUTHORIZATION_FAILED:
                raise topic_problem(self.health.conn, str(m.topic()), err)
        return messages


def group_problem(conn: ConnectionConfig, group_id: str) -> str:
    """Plain words for a consumer group the user may not use."""
    who = f"user {conn.sasl_username!r}" if conn.sasl_username else "this client"
    return (
        f"{who} is not authorized to use consumer group {group_id!r} on"
        f" {conn.bootstrap_servers}: set group_id in the stream's configuration to a group"
        " you may use (e.g. with the prefix your Kafka operator granted)"
    )


def _first_bootstrap(conn: ConnectionConfig) -> tuple[str, int] | None:
    first = conn.bootstrap_servers.split(",")[0].strip()
    first = first.split("://", 1)[-1]
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def diagnose_tls(conn: ConnectionConfig) -> str | None:
    """Why the broker's certificate does not verify, in OpenSSL's words (librdkafka hides it).

    librdkafka says only "certificate verify failed" for an unknown CA and a host name
    mismatch alike; one TLS handshake from Python with the same trust settings tells them apart.
    """
    target = _first_bootstrap(conn)
    if target is None:
        return None
    host, port = target
    try:
        context = ssl.create_default_context(cafile=conn.ssl_ca_location)
    except (OSError, ssl.SSLError) as exc:
        return f"cannot load ssl_ca_location {conn.ssl_ca_location}: {exc}"
    try:
        with (
            socket.create_connection((host, port), timeout=_TLS_PROBE_TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return None
    except ssl.SSLCertVerificationError as exc:
        return str(exc.verify_message)
    except (OSError, ssl.SSLError):
        return None


def explain(conn: ConnectionConfig, code: int, text: str) -> str:
    """One sentence for a librdkafka error: what went wrong and which setting to look at."""
    where = conn.bootstrap_servers
    who = f"user {conn.sasl_username!r}" if conn.sasl_username else "the client"
    if code == RdKafkaError._AUTHENTICATION:
        if "Unsupported SASL mechanism" in text or "mechanism handshake failed" in text:
            offered = text.split("supported mechanisms:", 1)[-1].split("(after", 1)[0].strip()
            return (
                f"the broker at {where} does not accept sasl_mechanism {conn.sasl_mechanism}"
                + (f" (it offers {offered})" if offered and offered != text else "")
                + ": check sasl_mechanism"
            )
        return (
            f"authentication failed: check sasl_username/sasl_password for {where}"
            f" ({who}, sasl_mechanism {conn.sasl_mechanism})"
        )
    if code == RdKafkaError._SSL or "certificate verify failed" in text:
        trust = conn.ssl_ca_location or "the system CA bundle"
        reason = diagnose_tls(conn)
        if reason and "Hostname mismatch" in reason:
            return (
                f"TLS: the certificate of {where} is not valid for the host name in"
                f" bootstrap_servers ({reason}): use a host name the certificate names"
            )
        detail = f" ({reason})" if reason else ""
        return (
            f"TLS: the certificate of {where} could not be verified with {trust}{detail}:"
            " check ssl_ca_location"
        )
    if "connecting to a PLAINTEXT broker listener" in text or "SSL connection closed" in text:
        return (
            f"TLS handshake with {where} failed: the port does not speak TLS; check"
            " bootstrap_servers and security_protocol"
        )
    if "Connection refused" in text:
        return f"cannot reach {where}: connection refused; check bootstrap_servers"
    if code == RdKafkaError._ALL_BROKERS_DOWN:
        return (
            f"no broker at {where} answered: check bootstrap_servers, security_protocol"
            " and that the network lets you through"
        )
    if "Failed to resolve" in text or code == RdKafkaError._RESOLVE:
        return f"cannot resolve the host in bootstrap_servers {where}"
    return f"{where}: {_strip_prefix(text)}"


def error_for(conn: ConnectionConfig, code: int, text: str) -> LakeportError:
    """`explain`'s sentence as the catalogued error: credentials and TLS settings are the
    user's to fix, anything else may pass."""
    message = explain(conn, code, text)
    if code == RdKafkaError._AUTHENTICATION:
        return AccessDenied(message)
    if message.startswith("TLS"):
        return ConfigError(message)
    return BrokerUnavailable(message)


def _strip_prefix(text: str) -> str:
    """`sasl_ssl://host:port/bootstrap: reason (after 3ms in state X)` -> `reason`."""
    _, sep, rest = text.partition("/bootstrap: ")
    reason = rest if sep else text
    return reason.split(" (after ", 1)[0]


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
        if conn.insecure_skip_tls_verification:
            log.warning(
                "insecure_skip_tls_verification is set for %s: the broker's TLS certificate is"
                " NOT verified, anyone on the network path can read and change the traffic and"
                " capture the password",
                conn.bootstrap_servers,
            )
    settings.update(conn.options)
    return settings


def _callbacks(health: ClientHealth) -> dict[str, Any]:
    return {"error_cb": health.record, "logger": rdkafka_logger}


def _consumer_callbacks(health: ClientHealth) -> dict[str, Any]:
    return {**_callbacks(health), "on_commit": health.committed}


def range_consumer(conn: ConnectionConfig, group_id: str) -> LakeportConsumer:
    """A consumer for reading assigned offset ranges: no auto-commit, no silent reset.

    `auto.offset.reset=error` makes a start below the log start an error instead of a silent
    jump forward (that is how retention loss goes unnoticed); `read_committed` keeps aborted
    transactional records out; partition EOF events tell when a range ends at the high mark.
    The connection's `options` may tune the fetch sizes but never these correctness settings.
    """
    health = ClientHealth(conn)
    tunable = {
        # The pre-fetch queue is one for all assigned partitions; once a fetch fills it,
        # librdkafka waits fetch.queue.backoff.ms (1 s by default) before fetching again.
        # Waiting 10 ms keeps the pipe full: a consume-only loop over 1M 585 B events went
        # from 74k (16 MiB queue and partition fetches, default back-off) to 460-620k events/s
        # uncompressed and from 190k to 550-650k on lz4 (2 cores). The queue bounds memory.
        "fetch.queue.backoff.ms": "10",
        "queued.max.messages.kbytes": str(32 * 1024),
        # Connect to the brokers when the client starts, not on first need: with sparse
        # connections the first metadata request of a new client waited ~50 ms.
        "enable.sparse.connections": "false",
    }
    settings = {
        **tunable,
        **client_settings(conn),
        **_consumer_callbacks(health),
        "group.id": group_id,
        "enable.auto.commit": "false",
        "enable.auto.offset.store": "false",
        "auto.offset.reset": "error",
        "isolation.level": "read_committed",
        "enable.partition.eof": "true",
    }
    try:
        consumer = LakeportConsumer(settings)
    except KafkaException as exc:
        raise ConfigError(
            f"cannot create a Kafka consumer for {conn.bootstrap_servers}: {exc.args[0].str()}"
            " (check the connection's options)"
        ) from None
    consumer.health = health
    consumer.group_id = group_id
    return consumer


@contextmanager
def open_consumer(conn: ConnectionConfig, group_id: str) -> Iterator[LakeportConsumer]:
    consumer = range_consumer(conn, group_id)
    try:
        yield consumer
    finally:
        consumer.close()


def serve_events(consumer: Consumer, timeout: float = 0.0) -> list[RdKafkaError]:
    """Run queued callbacks (error_cb, logs) and return error events, without reading records.

    Only when nothing is assigned: a poll on an assigned consumer would swallow a record.
    """
    errors: list[RdKafkaError] = []
    try:
        if consumer.assignment():
            return errors
        msg = consumer.poll(timeout)
    except (KafkaException, RuntimeError):
        return errors
    error = None if msg is None else msg.error()
    if error is not None:
        errors.append(error)
    return errors


def _health(consumer: Consumer) -> ClientHealth | None:
    return getattr(consumer, "health", None)


def _unreachable(
    consumer: Consumer, what: str, timeout: float, exc: KafkaException
) -> BrokerUnavailable:
    health = _health(consumer)
    reason = health.explain_last() if health else None
    return BrokerUnavailable(
        f"{what}: no answer within {timeout:.0f} s: {reason or exc.args[0].str()}"
    )


def _list_topic(consumer: Consumer, topic: str, timeout: float) -> Any:
    """Metadata of `topic`, in short attempts that surface authentication/TLS errors early."""
    health = _health(consumer)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            return consumer.list_topics(topic, timeout=max(0.1, min(1.0, remaining)))
        except KafkaException as exc:
            serve_events(consumer)
            blocking = health.blocking_error() if health else None
            if blocking:
                raise blocking from None
            if time.monotonic() >= deadline:
                where = health.conn.bootstrap_servers if health else "the broker"
                raise _unreachable(
                    consumer, f"cannot read metadata of topic {topic!r} from {where}", timeout, exc
                ) from None


def topic_problem(conn: ConnectionConfig, topic: str, error: RdKafkaError) -> LakeportError:
    """Plain words for a topic-level error, as the catalogued error."""
    who = f"user {conn.sasl_username!r}" if conn.sasl_username else "this client"
    code = error.code()
    if code == RdKafkaError.TOPIC_AUTHORIZATION_FAILED:
        return AccessDenied(
            f"{who} is not authorized to read topic {topic!r} on {conn.bootstrap_servers}:"
            " ask the cluster operator for READ and DESCRIBE on it, or check the stream's topic"
        )
    if code in (RdKafkaError.UNKNOWN_TOPIC_OR_PART, RdKafkaError._UNKNOWN_TOPIC):
        return NotFound(
            f"topic {topic!r} does not exist on {conn.bootstrap_servers}:"
            " check the stream's topic (names are case-sensitive)"
        )
    return BrokerUnavailable(
        f"topic {topic!r} is not available on {conn.bootstrap_servers}: {error.str()}"
    )


def partition_marks(
    consumer: Consumer, topic: str, timeout: float = METADATA_TIMEOUT_S
) -> dict[int, PartitionMarks]:
    """Log start and end offsets of every partition of `topic` (the end as read_committed sees it).

    Bounded by `timeout` however the broker fails; the error says why in plain words.
    """
    meta = _list_topic(consumer, topic, timeout)
    info = meta.topics.get(topic)
    health = _health(consumer)
    if info is None or info.error is not None:
        if info is not None and info.error is not None and health is not None:
            raise topic_problem(health.conn, topic, info.error)
        reason = info.error.str() if info is not None and info.error is not None else "not found"
        raise NotFound(f"topic {topic!r} is not available: {reason}")

    def watermarks(p: int) -> tuple[int, int]:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
        except KafkaException as exc:
            serve_events(consumer)
            raise _unreachable(
                consumer, f"cannot read offsets of {topic}[{p}]", timeout, exc
            ) from None
        return low, high

    # The broker answered the metadata request: a partition's leader that is slow to answer
    # (just elected, a busy broker) gets a few more tries.
    marks: dict[int, PartitionMarks] = {}
    for p in sorted(info.partitions):
        low, high = retrying(partial(watermarks, p), f"offsets of {topic}[{p}]", _WATERMARK_TRIES)
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
        serve_events(consumer)
        raise _unreachable(
            consumer, f"cannot map {when.isoformat()} to offsets of {topic}", timeout, exc
        ) from None
    return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in found}


def mirror_group_offsets(
    consumer: Consumer,
    topic: str,
    positions: dict[int, int],
    timeout: float = METADATA_TIMEOUT_S,
    check_reachable: bool = True,
) -> str | None:
    """Commit positions to the consumer group so Kafka tools show lag; never read back.

    Returns a warning instead of failing: the table is the source of truth, the group a mirror.
    Bounded by `timeout`: a synchronous commit waits for the group coordinator for as long as
    the broker stays away, which turned a broker outage into a minute-long hang.
    """
    if not positions:
        return None
    offsets = [TopicPartition(topic, p, o) for p, o in sorted(positions.items())]
    health = _health(consumer)
    try:
        # An unreachable broker would leave the commit in flight, and close() waits for it;
        # callers that just heard from the broker skip the check.
        if check_reachable:
            _list_topic(consumer, topic, min(timeout, 3.0))
    except LakeportError as exc:
        return f"could not mirror positions to the consumer group: {exc}"
    try:
        if health is None or consumer.assignment():
            consumer.commit(offsets=offsets, asynchronous=False)
            return None
        health.commit_result = None
        consumer.commit(offsets=offsets, asynchronous=True)
    except KafkaException as exc:
        return f"could not mirror positions to the consumer group: {exc.args[0].str()}"
    deadline = time.monotonic() + timeout
    while health.commit_result is None and time.monotonic() < deadline:
        serve_events(consumer, 0.001)  # poll waits its whole timeout even after the callback
    result = health.commit_result
    if result is None:
        return f"could not mirror positions to the consumer group: no answer within {timeout:.0f} s"
    error, committed = result
    if error is None:
        error = next((tp.error for tp in committed if tp.error is not None), None)
    if error is not None:
        return f"could not mirror positions to the consumer group: {error.str()}"
    return None
