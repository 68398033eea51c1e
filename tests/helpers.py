"""Shared helpers for the ledger, crash, concurrency and property tests.

The three views that must always agree on a stream:

- data:   every (partition, offset) row of the main table plus its dead-letter table;
- ledger: the covered / lost spans and record counts in the table's own Delta log;
- broker: every offset from log start to the high watermark that holds a *committed* record,
          found by consuming the topic with a read_committed consumer.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path
from unittest import mock

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from deltalake import DeltaTable

from connectors import Stream
from connectors.coverage import audit, status
from connectors.delta_store import DeltaStore, read_rows
from connectors.kafka_client import client_settings
from connectors.ledger import Ledger, read_ledger
from connectors.ranges import Spans
from dev.sample_events import Awkward, notification_events, produce_sample

ROOT = Path(__file__).resolve().parent.parent
Pair = tuple[int, int]


# --- producing -------------------------------------------------------------------------------


def produce(
    stream: Stream,
    count: int,
    seed: int = 7,
    partitions: int = 6,
    start: datetime | None = None,
) -> dict[int, int]:
    """Produce `count` clean sample notifications to the stream's topic; records per partition."""
    ensure_topic(stream, partitions)
    report = produce_sample(
        client_settings(stream.connection),
        stream.topic,
        notification_events(count, seed=seed, start=start),
        partitions=partitions,
    )
    return report.per_partition


_ready: set[str] = set()


def produce_awkward(
    stream: Stream, count: int, seed: int, rate: float = 0.04, partitions: int = 6
) -> dict[int, int]:
    """`count` sample notifications, `rate` of them undecodable (half not JSON, half not
    UTF-8): every micro-batch has dead letters. Records per partition."""
    ensure_topic(stream, partitions)
    report = produce_sample(
        client_settings(stream.connection),
        stream.topic,
        notification_events(
            count, seed=seed, awkward=Awkward(not_json=rate / 2, not_utf8=rate / 2)
        ),
        partitions=partitions,
    )
    return report.per_partition


def ensure_topic(stream: Stream, partitions: int = 6, timeout: float = 30.0) -> None:
    """Create the topic and wait until the broker's metadata shows every partition with a leader.

    `produce_sample` checks the topic with `list_topics` right after `create_topics`; on KRaft
    the broker's metadata cache can lag the controller, which fails that check now and then
    (UNKNOWN_TOPIC_OR_PART). Creating it here first, and waiting, avoids the race.
    """
    if stream.topic in _ready:
        return
    client = admin(stream)
    futures = client.create_topics([NewTopic(stream.topic, num_partitions=partitions)])
    try:
        futures[stream.topic].result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
    deadline = time.monotonic() + timeout
    while True:
        meta = client.list_topics(stream.topic, timeout=10).topics.get(stream.topic)
        if (
            meta is not None
            and meta.error is None
            and len(meta.partitions) >= partitions
            and all(pm.leader >= 0 for pm in meta.partitions.values())
        ):
            break
        assert time.monotonic() < deadline, f"topic {stream.topic} never became available"
        time.sleep(0.1)
    _ready.add(stream.topic)


def admin(stream: Stream) -> AdminClient:
    return AdminClient(client_settings(stream.connection))


def transactional_producer(stream: Stream, tid: str) -> Producer:
    producer = Producer(
        {**client_settings(stream.connection), "transactional.id": tid, "linger.ms": 5}
    )
    producer.init_transactions(30)
    return producer


def delete_records(stream: Stream, before: dict[int, int]) -> None:
    """Advance each partition's log start to `before[p]` (retention, simulated)."""
    from confluent_kafka import TopicPartition as TP

    client = admin(stream)  # keep the handle alive until the futures resolve
    futures = client.delete_records(
        [TP(stream.topic, p, o) for p, o in sorted(before.items())], request_timeout=30
    )
    for future in futures.values():
        future.result(timeout=60)


# --- the three views -------------------------------------------------------------------------


def watermarks(stream: Stream) -> dict[int, tuple[int, int]]:
    """(low, high) of every partition, as a read_committed consumer sees them."""
    consumer = _consumer(stream)
    try:
        meta = consumer.list_topics(stream.topic, timeout=10)
        parts = sorted(meta.topics[stream.topic].partitions)
        return {
            p: consumer.get_watermark_offsets(TopicPartition(stream.topic, p), timeout=10)
            for p in parts
        }
    finally:
        consumer.close()


def _consumer(stream: Stream) -> Consumer:
    return Consumer(
        {
            **client_settings(stream.connection),
            "group.id": "lakeport-tests-oracle",
            "enable.auto.commit": "false",
            "isolation.level": "read_committed",
            "enable.partition.eof": "true",
            "auto.offset.reset": "earliest",
        }
    )


def broker_pairs(stream: Stream, timeout: float = 30.0) -> set[Pair]:
    """Every (partition, offset) from log start to high watermark holding a committed record."""
    marks = watermarks(stream)
    consumer = _consumer(stream)
    pairs: set[Pair] = set()
    try:
        todo = {p for p, (low, high) in marks.items() if high > low}
        if not todo:
            return pairs
        consumer.assign([TopicPartition(stream.topic, p, marks[p][0]) for p in sorted(todo)])
        deadline = time.monotonic() + timeout
        while todo:
            assert time.monotonic() < deadline, f"oracle consumer stuck on {sorted(todo)}"
            for m in consumer.consume(10_000, timeout=0.5):
                p = m.partition()
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        if m.offset() >= marks[p][1]:
                            todo.discard(p)
                        continue
                    raise AssertionError(f"oracle consumer: {m.error()}")
                if m.offset() < marks[p][1]:
                    pairs.add((p, m.offset()))
                if m.offset() + 1 >= marks[p][1]:
                    todo.discard(p)
    finally:
        consumer.close()
    return pairs


def data_pairs(stream: Stream, dead_letters: bool = True) -> list[Pair]:
    """All (partition, offset) rows of the table (and its dead letters), sorted, duplicates kept."""
    stores = [stream.table, stream.dead_letters] if dead_letters else [stream.table]
    return sorted(pair for store in stores for pair in store_pairs(store))


def store_pairs(store: DeltaStore) -> list[Pair]:
    """The (partition, offset) of every row of one table (none if it does not exist yet)."""
    table = store.open_existing()
    if table is None:
        return []
    t = read_rows(table, columns=["kafka_partition", "kafka_offset"])
    return list(zip(t["kafka_partition"].to_pylist(), t["kafka_offset"].to_pylist(), strict=True))


def ledger(stream: Stream) -> Ledger:
    """The table's ledger read from every `txn` slot, checked against a read through the copy
    the newest commit stores (what lakeport does on object storage): they never disagree."""
    table = stream.table.open_existing()
    if table is None:
        return Ledger(stream.topic)
    found = read_ledger(table, stream.topic)
    with mock.patch("connectors.ledger._remote", return_value=True):
        assert read_ledger(table, stream.topic) == found
    return found


def covered(stream: Stream) -> dict[int, list[tuple[int, int]]]:
    return {p: list(part.covered) for p, part in ledger(stream).partitions.items()}


def lost(stream: Stream) -> dict[int, list[tuple[int, int]]]:
    return {p: list(part.lost) for p, part in ledger(stream).partitions.items() if part.lost}


def assert_consistent(stream: Stream, complete: bool = True) -> set[Pair]:
    """data == ledger == broker; returns the broker's pairs.

    With `complete=False` (a run stopped early on purpose) only data == ledger is checked.

    - no (partition, offset) twice in the data;
    - the data at or above each partition's log start is exactly the broker's committed records
      (below the log start the broker cannot say: there the ledger must call the rows covered);
    - per partition the ledger's `records` equals the rows landed, no row lies outside the
      covered spans or inside a lost span, and covered + lost is exactly [0, high watermark);
    - `audit` agrees and `status` reports nothing missing.
    """
    pairs = data_pairs(stream)
    dupes = [pair for pair, n in collections.Counter(pairs).items() if n > 1]
    assert not dupes, f"duplicated offsets in the data: {dupes[:10]} ({len(dupes)} in all)"
    expected = broker_pairs(stream) if complete else set()
    marks = watermarks(stream) if complete else {}
    led = ledger(stream)
    by_part: dict[int, list[int]] = collections.defaultdict(list)
    for p, o in pairs:
        by_part[p].append(o)
    if complete:
        above = {(p, o) for p, o in pairs if o >= marks[p][0]}
        missing = sorted(expected - above)
        extra = sorted(above - expected)
        assert not missing, f"{len(missing)} broker records missing from the table: {missing[:10]}"
        assert not extra, f"{len(extra)} table rows the broker does not hold: {extra[:10]}"
        for p, (_low, high) in marks.items():
            part = led.partition(p)
            if high == 0:
                continue
            assert list(part.handled) == [(0, high)], (
                f"p{p}: covered {part.covered} + lost {part.lost} should be [0,{high})"
            )
    for p in set(by_part) | set(led.partitions):
        part = led.partition(p)
        offsets = by_part.get(p, [])
        assert part.records == len(offsets), (
            f"p{p}: ledger says {part.records} records, data holds {len(offsets)}"
        )
        outside = Spans.of((o, o + 1) for o in offsets).minus(part.covered)
        assert not outside, f"p{p}: rows outside the covered spans: {outside}"
        assert not part.covered.overlaps(part.lost), f"p{p}: covered overlaps lost"
    result = audit(stream)
    assert result.ok, result.problems
    if complete:
        st = status(stream)
        assert st.missing_offsets == 0, [(s.partition, str(s.missing)) for s in st.partitions]
    return expected


# --- subprocess runs -------------------------------------------------------------------------

RUNNER_PRELUDE = textwrap.dedent(
    """\
    import logging, os, signal, sys
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sys.path.insert(0, {root!r})
    from connectors.config import load_config
    from connectors import Stream, run_forward, run_window
    from connectors.ranges import OffsetRange
    stream = Stream.from_config(load_config({config!r}), "events")

    def die(*_a, **_k):
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def on_call(module, name, k, before=None):
        '''Replace module.name so that its k-th call (1-based) dies (after `before` runs).'''
        real = getattr(module, name)
        calls = [0]
        def wrapper(*a, **kw):
            calls[0] += 1
            if calls[0] == k:
                if before is not None:
                    before(*a, **kw)
                die()
            return real(*a, **kw)
        setattr(module, name, wrapper)
    """
)


def runner_script(config_path: Path | str, body: str) -> str:
    return RUNNER_PRELUDE.format(root=str(ROOT), config=str(config_path)) + textwrap.dedent(body)


def start_runner(config_path: Path | str, body: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", runner_script(config_path, body)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(ROOT),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def run_runner(
    config_path: Path | str, body: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    proc = start_runner(config_path, body)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def lakeport_cli(
    config_path: Path | str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The `lakeport` CLI in a subprocess (module form, so no console script is needed)."""
    return subprocess.run(
        [sys.executable, "-m", "connectors.cli", "--config", str(config_path), *args],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=timeout,
    )


def config_file(stream: Stream) -> Path:
    """The lakeport.yaml that `make_config` wrote for this stream (the lakehouse's sibling)."""
    return Path(stream.table.uri).parent.parent / "lakeport.yaml"


def table_version(stream: Stream) -> int:
    table = DeltaTable(stream.table.uri)
    return table.version()


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """How a user meets a failure: exit 2, no traceback, at most a few lines on stderr, and
    one `lakeport: error:` line holding every one of `words`. Returns that line."""
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) <= 3, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("lakeport: error: ")]
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    return lines[0]


def closed_port() -> int:
    """A port of 127.0.0.1 nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
