"""lakeport's ingest performance beside its baselines and a peer, on one broker and the same data.

    python -m benchmarks.ingest [--events 1000000] [--runs 3] [--json out.json]
    make bench      # the same, after installing the optional Spark peer (pyspark, delta-spark)

The parent process starts a broker (unless `--bootstrap` is given) and produces every topic
once: the same Upvest-like notifications (585 B JSON values, 6 partitions, fixed seed) as an
uncompressed, an lz4 and a zstd topic (Upvest does not document its compression), the same
events Avro-encoded with Confluent framing, a 5M-event backlog and a table of 10,000 commits.
Every measured run is its own subprocess (new interpreter, consumer, group id and table), so
its time, peak RSS (`ru_maxrss`) and GC state are its own; figures are medians over `--runs`.

Variants, on each JSON topic:
- `ceiling-default`: consume-only (touch value and offset, GC paused) with librdkafka's
  default fetch settings; `ceiling-lakeport`: the same loop on lakeport's own consumer;
- `naive`: `json.loads` per record, `from_pylist`, `write_deltalake` per 10k (what one
  writes first);
- `lakeport`: `run_forward` at default settings, into a fresh table;
- `spark`: Spark Structured Streaming 4.2 → Delta (`from_json` into the same columns,
  `trigger(availableNow=True)`, local[2]), timed once the session is up; only where pyspark
  and delta-spark are installed (`make bench`).
And once each: `lakeport` on the Avro topic; `replace`: forward ingestion of the uncompressed
topic, then a `replace` backfill of the same 1M-offset window; `backlog`: `run_forward` over
the 5M backlog (peak RSS); `overhead`: runs with nothing new on the 10,000-commit table.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "schemas" / "upvest_notification.avsc"
STREAM = "events"
PARTITIONS = 6
SEED = 7
NAIVE_BATCH = 10_000
CONSUME_BATCH = 10_000
OVERHEAD_REPEATS = 5
AVRO_SUBJECT = "lakeport-bench-value"
COMPRESSIONS = ("none", "lz4", "zstd")
STALL_SECONDS = 30.0

# The targets of the performance issue (2 cores, every figure from this one run).
TARGET_JSON_EPS = 150_000.0  # P1, uncompressed and lz4, default settings
TARGET_JSON_VS_NAIVE = 3.5  # P1
TARGET_AVRO_EPS = 150_000.0  # P2
TARGET_BACKLOG_RSS_MIB = 600.0  # P3, on a 5M-event backlog
TARGET_REPLACE_VS_FORWARD = 0.5  # P4, a 1M-offset window
TARGET_OVERHEAD_S = 0.100  # P5, on a table of 10,000 commits


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class RunResult:
    """One measured run (written by the child process as JSON)."""

    variant: str
    topic: str
    seconds: float
    records: int
    value_bytes: int
    peak_rss_mib: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Summary:
    """Medians over the runs of one variant on one topic."""

    variant: str
    topic: str
    runs: list[RunResult]

    @property
    def seconds(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def events_per_second(self) -> float:
        return self.runs[0].records / self.seconds if self.seconds else float("nan")

    @property
    def mb_per_second(self) -> float:
        if not (self.seconds and self.runs[0].value_bytes):
            return float("nan")  # a peer that does not report the bytes it read
        return self.runs[0].value_bytes / 1e6 / self.seconds

    @property
    def peak_rss_mib(self) -> float:
        return max(r.peak_rss_mib for r in self.runs)

    def extra(self, key: str) -> float:
        """The median of a figure the runs reported beside their time."""
        return statistics.median(float(r.extra[key]) for r in self.runs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "topic": self.topic,
            "median_seconds": self.seconds,
            "events_per_second": self.events_per_second,
            "mb_per_second": self.mb_per_second,
            "peak_rss_mib": self.peak_rss_mib,
            "runs": [asdict(r) for r in self.runs],
        }


def _rss_mib() -> float:
    """Peak RSS of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------------------------
# Producing the topics


@dataclass(frozen=True)
class Produced:
    """A topic holding the sample, and what producing it cost."""

    topic: str
    records: int
    value_bytes: int
    seconds: float


def _counted(records: Iterable[Any], totals: list[int]) -> Iterator[Any]:
    """Pass records through, adding their value bytes to `totals[0]`."""
    for rec in records:
        totals[0] += len(rec.value)
        yield rec


def create_topic(bootstrap: str, topic: str) -> None:
    """A 6-partition topic that retention never empties (the sample is dated January 2026)."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=PARTITIONS, config={"retention.ms": "-1"})
    admin.create_topics([new], request_timeout=30)[topic].result(timeout=60)


def _produce(
    bootstrap: str, topic: str, records: Iterable[Any], compression: str = "none"
) -> Produced:
    from dev.sample_events import produce_sample

    create_topic(bootstrap, topic)
    totals = [0]
    began = time.perf_counter()
    report = produce_sample(
        {"bootstrap.servers": bootstrap, "compression.type": compression},
        topic,
        _counted(records, totals),
        partitions=PARTITIONS,
    )
    return Produced(topic, report.records, totals[0], time.perf_counter() - began)


def produce_json(
    bootstrap: str, topic: str, events: int, seed: int, compression: str = "none"
) -> Produced:
    """`events` Upvest notifications (JSON values) in a new topic, batches compressed so."""
    from dev.sample_events import notification_events

    return _produce(bootstrap, topic, notification_events(events, seed=seed), compression)


def _writer_schema() -> dict[str, Any]:
    """The Avro writer schema of the Avro topic: the stream's `.avsc` itself."""
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    return schema


def _micros(stamp: str) -> int:
    """RFC 3339 with 0-9 fractional digits -> UTC microseconds since the epoch."""
    text = stamp.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        tz_at = next((i for i, c in enumerate(rest) if not c.isdigit()), len(rest))
        digits, tz = rest[:tz_at], rest[tz_at:]
        text = f"{head}.{(digits + '000000')[:6]}{tz}"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def avro_record(value: bytes) -> dict[str, Any]:
    """One JSON notification as a record of the writer schema (same fields lakeport extracts)."""
    doc = json.loads(value)
    obj = doc.get("object") if isinstance(doc.get("object"), dict) else {}
    kind = str(doc["type"])
    category, _, action = kind.partition(".")
    return {
        "id": doc["id"],
        "created_at": _micros(doc["created_at"]),
        "created_at_raw": doc["created_at"],
        "type": kind,
        "category": category,
        "action": action or None,
        "webhook_id": doc.get("webhook_id"),
        "object": json.dumps(doc.get("object"), ensure_ascii=False, separators=(",", ":")),
        "object_id": obj.get("id"),
        "object_user_id": obj.get("user_id"),
        "object_account_id": obj.get("account_id"),
        "object_account_group_id": obj.get("account_group_id"),
        "object_status": obj.get("status"),
        "object_currency": obj.get("currency"),
    }


def register_writer_schema(url: str) -> int:
    """Register the writer schema in the registry at `url` (the process's client for that URL,
    shared with lakeport's decoder, so a `mock://` registry works); returns its id."""
    from confluent_kafka.schema_registry import Schema

    from connectors.decoders.avro import registry_client

    client = registry_client(url)
    return client.register_schema(AVRO_SUBJECT, Schema(json.dumps(_writer_schema()), "AVRO"))


def produce_avro(bootstrap: str, topic: str, events: int, seed: int, registry_url: str) -> Produced:
    """The same events, Avro-encoded with Confluent framing (magic 0, schema id, body)."""
    import fastavro

    from dev.sample_events import SampleRecord, notification_events

    header = b"\x00" + struct.pack(">I", register_writer_schema(registry_url))
    parsed = fastavro.parse_schema(_writer_schema())

    def encoded() -> Iterator[SampleRecord]:
        buf = BytesIO()
        for rec in notification_events(events, seed=seed):
            buf.seek(0)
            buf.truncate()
            fastavro.schemaless_writer(buf, parsed, avro_record(rec.value))
            yield SampleRecord(rec.key, header + buf.getvalue(), rec.timestamp_ms, rec.kind)

    return _produce(bootstrap, topic, encoded())


# --------------------------------------------------------------------------------------------
# Lakeport configuration


def write_config(
    directory: Path,
    bootstrap: str,
    topic: str,
    *,
    fmt: str = "json",
    registry_url: str | None = None,
    extra: dict[str, object] | None = None,
) -> Path:
    """A lakeport.yaml with one stream `events` (defaults otherwise) and a lakehouse under
    `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    keys: dict[str, object] = {
        "schema_file": str(SCHEMA_FILE),
        "format": fmt,
        "group_id": f"bench.{uuid.uuid4().hex}",
        "idle_timeout_seconds": 30,
        **(extra or {}),
    }
    if registry_url:
        keys["schema_registry_url"] = registry_url
        keys["avro_framing"] = "confluent"
    body = "\n".join(f"    {k}: {json.dumps(v)}" for k, v in keys.items())
    path = directory / "lakeport.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            lakehouse:
              root: {json.dumps(str(directory / "lakehouse"))}
            connections:
              local:
                bootstrap_servers: {json.dumps(bootstrap)}
            streams:
              {STREAM}:
                connection: local
                topic: {json.dumps(topic)}
                table: {STREAM}
            """
        )
        + body
        + "\n"
    )
    return path


def _count_rows(uri: str) -> int:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(uri).count()
    except TableNotFoundError:
        return 0


# --------------------------------------------------------------------------------------------
# Variants (each runs inside its own child process)


class Stalled(RuntimeError):
    """Nothing arrived for STALL_SECONDS although records were still expected."""


def _batches(consumer: Any, events: int) -> Iterator[list[Any]]:
    """`consume(min(10000, remaining))` batches of record messages until `events` are read."""
    remaining, idle_since = events, time.monotonic()
    while remaining > 0:
        messages = consumer.consume(num_messages=min(CONSUME_BATCH, remaining), timeout=1.0)
        records = [m for m in messages if m.error() is None]
        if not records:
            if time.monotonic() - idle_since > STALL_SECONDS:
                raise Stalled(f"{remaining} of {events} records never arrived")
            continue
        idle_since = time.monotonic()
        remaining -= len(records)
        yield records


def _assign_all(consumer: Any, topic: str) -> None:
    from confluent_kafka import TopicPartition

    meta = consumer.list_topics(topic, timeout=10)
    parts = sorted(meta.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])


def _plain_consumer(bootstrap: str) -> Any:
    """librdkafka's defaults, a cold group, reading from offset 0."""
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench.{uuid.uuid4().hex}",
            "enable.auto.commit": "false",
            "auto.offset.reset": "earliest",
        }
    )


def _consume_only(args: argparse.Namespace, consumer: Any, variant: str) -> RunResult:
    """Touch value and offset of every record, GC paused around the loop (as lakeport does)."""
    began = time.perf_counter()
    _assign_all(consumer, args.topic)
    records, size, checksum = 0, 0, 0
    gc.disable()
    try:
        for batch in _batches(consumer, args.events):
            for m in batch:
                checksum += m.offset()
                size += len(m.value())
            records += len(batch)
    finally:
        gc.enable()
    consumer.close()
    seconds = time.perf_counter() - began
    return RunResult(variant, args.topic, seconds, records, size, _rss_mib(), {"sum": checksum})


def run_ceiling_default(args: argparse.Namespace, workdir: Path) -> RunResult:
    return _consume_only(args, _plain_consumer(args.bootstrap), "ceiling-default")


def run_ceiling_lakeport(args: argparse.Namespace, workdir: Path) -> RunResult:
    """The same loop on the consumer lakeport reads with (its fetch and queue settings)."""
    from connectors import ConnectionConfig, range_consumer

    connection = ConnectionConfig(bootstrap_servers=args.bootstrap)
    return _consume_only(
        args, range_consumer(connection, f"bench.{uuid.uuid4().hex}"), "ceiling-lakeport"
    )


_NAIVE_COLUMNS = (
    "id",
    "created_at",
    "type",
    "webhook_id",
    "object_id",
    "object_user_id",
    "object_account_id",
    "object_account_group_id",
    "object_status",
    "object_currency",
)


def run_naive(args: argparse.Namespace, workdir: Path) -> RunResult:
    """What one writes first: json.loads per record, from_pylist, write_deltalake per 10k."""
    import pyarrow as pa
    from deltalake import write_deltalake

    uri = str(workdir / "naive_table")
    began = time.perf_counter()
    consumer = _plain_consumer(args.bootstrap)
    _assign_all(consumer, args.topic)
    size, commits = 0, 0
    rows: list[dict[str, Any]] = []
    for batch in _batches(consumer, args.events):
        for m in batch:
            v = m.value()
            size += len(v)
            doc = json.loads(v)
            obj = doc.get("object")
            flat = {f"object_{k}": v for k, v in obj.items()} if isinstance(obj, dict) else {}
            rows.append(
                {
                    "kafka_partition": m.partition(),
                    "kafka_offset": m.offset(),
                    "kafka_timestamp_ms": m.timestamp()[1],
                    "kafka_key": m.key(),
                    "object": json.dumps(obj, ensure_ascii=False, separators=(",", ":")),
                    **{c: doc.get(c, flat.get(c)) for c in _NAIVE_COLUMNS},
                }
            )
            if len(rows) >= NAIVE_BATCH:
                write_deltalake(uri, pa.Table.from_pylist(rows), mode="append")
                rows.clear()
                commits += 1
    if rows:
        write_deltalake(uri, pa.Table.from_pylist(rows), mode="append")
        commits += 1
    consumer.close()
    seconds = time.perf_counter() - began
    landed = _count_rows(uri)
    if landed != args.events:
        raise RuntimeError(f"naive: table holds {landed} rows, expected {args.events}")
    return RunResult("naive", args.topic, seconds, landed, size, _rss_mib(), {"commits": commits})


def _stream(args: argparse.Namespace, workdir: Path, **keys: Any) -> Any:
    from connectors import Stream, load_config

    return Stream.from_config(
        load_config(write_config(workdir / "lakeport", args.bootstrap, args.topic, **keys)), STREAM
    )


def _forward(variant: str, args: argparse.Namespace, stream: Any) -> RunResult:
    """One timed `run_forward` over the whole topic, row counts checked."""
    from connectors import run_forward

    began = time.perf_counter()
    report = run_forward(stream)
    seconds = time.perf_counter() - began
    rows, dead = _count_rows(stream.table.uri), _count_rows(stream.dead_letters.uri)
    if rows + dead != args.events or report.records + report.dead != args.events:
        raise RuntimeError(f"{variant}: table {rows} + dead letters {dead} != {args.events}")
    return RunResult(
        variant,
        args.topic,
        seconds,
        rows + dead,
        report.bytes,
        _rss_mib(),
        {"commits": report.commits, **{k: round(v, 3) for k, v in report.timings.items()}},
    )


def run_lakeport(args: argparse.Namespace, workdir: Path) -> RunResult:
    if args.registry_url:
        register_writer_schema(args.registry_url)  # the same id, in this process's mock
        return _forward(
            "lakeport", args, _stream(args, workdir, fmt="avro", registry_url=args.registry_url)
        )
    return _forward("lakeport", args, _stream(args, workdir))


def run_replace(args: argparse.Namespace, workdir: Path) -> RunResult:
    """Forward ingestion of the topic, then a `replace` backfill of that same window."""
    from connectors import OffsetRange, run_window

    stream = _stream(args, workdir)
    forward = _forward("replace", args, stream)
    ends: dict[int, int] = {}
    for span in stream.writer().ledger.partitions.values():
        ends[span.partition] = span.frontier
    window = [OffsetRange(p, 0, end) for p, end in sorted(ends.items())]
    began = time.perf_counter()
    report = run_window(stream, window, "replace")
    seconds = time.perf_counter() - began
    if report.records + report.dead != args.events or _count_rows(stream.table.uri) != args.events:
        raise RuntimeError("replace: the window does not hold exactly the topic's records")
    return RunResult(
        "replace",
        args.topic,
        seconds,
        report.records + report.dead,
        report.bytes,
        _rss_mib(),
        {"forward_seconds": forward.seconds, "commits": report.commits},
    )


def run_overhead(args: argparse.Namespace, workdir: Path) -> RunResult:
    """Forward runs with nothing new on the prepared many-commit table (median of 5)."""
    from connectors import Stream, load_config, run_forward

    stream = Stream.from_config(load_config(Path(args.config)), STREAM)
    times: list[float] = []
    for _ in range(OVERHEAD_REPEATS):
        began = time.perf_counter()
        report = run_forward(stream)
        times.append(time.perf_counter() - began)
        if report.records or report.commits:
            raise RuntimeError(f"overhead: expected an empty run, got {report}")
    return RunResult(
        "overhead",
        args.topic,
        statistics.median(times),
        0,
        0,
        _rss_mib(),
        {"times_ms": [round(t * 1000, 1) for t in times], "version": report.table_version},
    )


def run_spark(args: argparse.Namespace, workdir: Path) -> RunResult:
    """Spark Structured Streaming → Delta on the same topic, timed once the session is up."""
    from benchmarks.spark_peer import ingest_with_spark

    seconds, rows, jvm = ingest_with_spark(args.bootstrap, args.topic, str(workdir / "spark"))
    if rows != args.events:
        raise RuntimeError(f"spark: table holds {rows} rows, expected {args.events}")
    # Python's own peak plus the JVM's: the two processes run side by side
    return RunResult("spark", args.topic, seconds, rows, 0, _rss_mib() + jvm, {"jvm_mib": jvm})


VARIANTS: dict[str, Callable[[argparse.Namespace, Path], RunResult]] = {
    "ceiling-default": run_ceiling_default,
    "ceiling-lakeport": run_ceiling_lakeport,
    "naive": run_naive,
    "lakeport": run_lakeport,
    "spark": run_spark,
    "replace": run_replace,
    "overhead": run_overhead,
}
PER_TOPIC = ("ceiling-default", "ceiling-lakeport", "naive", "lakeport", "spark")


def spark_available() -> bool:
    """Whether the optional Spark peer is installed (`make bench` installs it)."""
    return all(importlib.util.find_spec(m) is not None for m in ("pyspark", "delta"))


# --------------------------------------------------------------------------------------------
# Orchestration


def _child(variant: str, args: argparse.Namespace, workdir: Path, *extra: str) -> RunResult:
    """Run one measured run of `variant` in a fresh interpreter and read back its result."""
    result = workdir / f"{variant}-{uuid.uuid4().hex[:8]}.json"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.ingest",
        "--only",
        variant,
        "--bootstrap",
        args.bootstrap,
        "--result",
        str(result),
        "--workdir",
        str(workdir / result.stem),
        *extra,
    ]
    log = workdir / f"{result.stem}.log"  # Spark's Ivy report and progress bars stay out of it
    with log.open("w") as out:
        done = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        print("".join(log.read_text().splitlines(keepends=True)[-30:]), file=sys.stderr)
        raise RuntimeError(f"{variant} failed (exit {done.returncode}); its output: {log}")
    return RunResult(**json.loads(result.read_text()))


def _measure(
    variant: str, args: argparse.Namespace, workdir: Path, runs: int, *extra: str
) -> Summary:
    measured = []
    for i in range(runs):
        print(
            f"{variant} on {extra[extra.index('--topic') + 1]}: run {i + 1}/{runs} ...", flush=True
        )
        measured.append(_child(variant, args, workdir, *extra))
        print(f"  {measured[-1].seconds:.2f} s, peak RSS {measured[-1].peak_rss_mib:.0f} MiB")
    return Summary(variant, measured[0].topic, measured)


def _overhead_table(directory: Path, bootstrap: str, commits: int, seed: int) -> Path:
    """A table of `commits` one-record commits (written as commit files by `dev.history`)."""
    from deltalake import DeltaTable

    from connectors import Stream, load_config, run_forward
    from dev.history import synthesize_commits

    topic = f"bench-overhead-{uuid.uuid4().hex[:8]}"
    produce_json(bootstrap, topic, commits, seed)
    scratch = Stream.from_config(
        load_config(write_config(directory / "scratch", bootstrap, topic)), STREAM
    )
    run_forward(scratch)  # real decoded rows for the synthesized commits
    rows = (
        DeltaTable(scratch.table.uri)
        .to_pyarrow_table()
        .sort_by([("kafka_partition", "ascending"), ("kafka_offset", "ascending")])
    )
    path = write_config(directory / "table", bootstrap, topic)
    stream = Stream.from_config(load_config(path), STREAM)
    stream.table.open()
    synthesize_commits(stream.table.uri, topic, rows)
    return path


def _measure_all(args: argparse.Namespace, workdir: Path) -> int:
    wanted = set(args.variants.split(","))
    if "spark" in wanted and not spark_available():
        print("spark: skipped (not installed; `make bench` installs pyspark and delta-spark)")
        wanted.discard("spark")
    tag = uuid.uuid4().hex[:8]
    produced: dict[str, Produced] = {}
    summaries: list[Summary] = []

    for compression in args.compressions.split(","):
        print(f"producing {args.events:,} JSON events, {compression} ...", flush=True)
        topic = produce_json(
            args.bootstrap, f"bench-{compression}-{tag}", args.events, args.seed, compression
        )
        produced[f"json {compression}"] = topic
        for variant in PER_TOPIC:
            if variant in wanted:
                runs = 1 if variant == "spark" else args.runs
                summaries.append(
                    _measure(
                        variant,
                        args,
                        workdir,
                        runs,
                        "--topic",
                        topic.topic,
                        "--events",
                        str(args.events),
                    )
                )
        if compression == "none" and "replace" in wanted:
            summaries.append(
                _measure(
                    "replace",
                    args,
                    workdir,
                    1,
                    "--topic",
                    topic.topic,
                    "--events",
                    str(args.events),
                )
            )

    if "avro" in wanted:
        url = f"mock://bench-{tag}"
        print(f"producing {args.events:,} Avro events ...", flush=True)
        avro = produce_avro(args.bootstrap, f"bench-avro-{tag}", args.events, args.seed, url)
        produced["avro none"] = avro
        summaries.append(
            _measure(
                "lakeport",
                args,
                workdir,
                args.runs,
                "--topic",
                avro.topic,
                "--events",
                str(args.events),
                "--registry-url",
                url,
            )
        )

    if "backlog" in wanted and args.backlog_events:
        print(f"producing a backlog of {args.backlog_events:,} JSON events ...", flush=True)
        backlog = produce_json(
            args.bootstrap, f"bench-backlog-{tag}", args.backlog_events, args.seed
        )
        produced["backlog"] = backlog
        summary = _measure(
            "lakeport",
            args,
            workdir,
            1,
            "--topic",
            backlog.topic,
            "--events",
            str(args.backlog_events),
        )
        summaries.append(Summary("backlog", summary.topic, summary.runs))

    if "overhead" in wanted and args.overhead_commits:
        print(f"building a table of {args.overhead_commits:,} commits ...", flush=True)
        config = _overhead_table(
            workdir / "overhead", args.bootstrap, args.overhead_commits, args.seed
        )
        summaries.append(
            _measure("overhead", args, workdir, 1, "--topic", "overhead", "--config", str(config))
        )

    facts = _versions()
    targets = _targets(summaries, produced, args)
    print()
    print(report(facts, produced, summaries, targets, args))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "events": args.events,
                    "runs": args.runs,
                    "machine": facts,
                    "produced": {k: asdict(p) for k, p in produced.items()},
                    "variants": [s.as_dict() for s in summaries],
                    "targets": targets,
                },
                indent=2,
                default=str,
            )
        )
        print(f"\nwrote {args.json}")
    return 0


def _versions() -> dict[str, str]:
    import confluent_kafka

    facts = {
        "cpu_count": str(os.cpu_count()),
        "python": platform.python_version(),
        "librdkafka": confluent_kafka.libversion()[0],
    }
    for name in ("confluent-kafka", "pyarrow", "deltalake", "duckdb", "polars", "pyspark"):
        try:
            facts[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            facts[name] = "not installed"
    return facts


def _label(summary: Summary, produced: dict[str, Produced]) -> str:
    return next((name for name, p in produced.items() if p.topic == summary.topic), summary.topic)


def _find(summaries: list[Summary], variant: str, topic: Produced | None) -> Summary | None:
    if topic is None:
        return None
    return next((s for s in summaries if s.variant == variant and s.topic == topic.topic), None)


def _targets(
    summaries: list[Summary], produced: dict[str, Produced], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Each target with its measured value and PASS / MISS (n/a: not measured in this run)."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, ok: bool | None) -> None:
        status = "n/a" if ok is None else ("PASS" if ok else "MISS")
        out.append({"target": name, "value": value, "status": status})

    for compression in ("none", "lz4"):
        topic = produced.get(f"json {compression}")
        ours, naive = _find(summaries, "lakeport", topic), _find(summaries, "naive", topic)
        eps = ours.events_per_second if ours else None
        add(
            f"P1 JSON {compression} >= 150k events/s",
            eps,
            None if eps is None else eps >= TARGET_JSON_EPS,
        )
        ratio = ours.events_per_second / naive.events_per_second if ours and naive else None
        add(
            f"P1 JSON {compression} >= 3.5x naive",
            ratio,
            None if ratio is None else ratio >= TARGET_JSON_VS_NAIVE,
        )
    avro = _find(summaries, "lakeport", produced.get("avro none"))
    eps = avro.events_per_second if avro else None
    add("P2 Avro >= 150k events/s", eps, None if eps is None else eps >= TARGET_AVRO_EPS)
    backlog = next((s for s in summaries if s.variant == "backlog"), None)
    rss = backlog.peak_rss_mib if backlog else None
    add(
        f"P3 peak RSS <= 600 MiB ({args.backlog_events:,} backlog)",
        rss,
        None if rss is None else rss <= TARGET_BACKLOG_RSS_MIB,
    )
    replace = next((s for s in summaries if s.variant == "replace"), None)
    ratio = replace.extra("forward_seconds") / replace.seconds if replace else None
    add(
        "P4 replace >= 50 % of forward (same window)",
        ratio,
        None if ratio is None else ratio >= TARGET_REPLACE_VS_FORWARD,
    )
    overhead = next((s for s in summaries if s.variant == "overhead"), None)
    seconds = overhead.seconds if overhead else None
    add(
        f"P5 empty run <= 100 ms ({args.overhead_commits:,} commits)",
        seconds,
        None if seconds is None else seconds <= TARGET_OVERHEAD_S,
    )
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or value != value else format(value, spec)  # NaN -> "-"


def report(
    facts: dict[str, Any],
    produced: dict[str, Produced],
    summaries: list[Summary],
    targets: list[dict[str, Any]],
    args: argparse.Namespace,
) -> str:
    """The human-readable result: a table per topic with ratios, then the targets."""
    lines = ["machine: " + ", ".join(f"{k}={v}" for k, v in facts.items())]
    for name, p in produced.items():
        lines.append(
            f"topic {name}: {p.records:,} events, {p.value_bytes / 1e6:.1f} MB of values"
            f" ({p.value_bytes / max(p.records, 1):.0f} B each), produced in {p.seconds:.1f} s"
        )
    head = (
        f"\n{'topic':<11} {'variant':<17} {'events/s':>10} {'MB/s':>7} {'s':>7}"
        f" {'peak RSS':>9}  {'/ceiling':>8} {'/naive':>7} {'/spark':>7}"
    )
    lines += [head, "-" * len(head)]
    for s in summaries:
        topic = next((p for p in produced.values() if p.topic == s.topic), None)
        base = {v: _find(summaries, v, topic) for v in ("ceiling-default", "naive", "spark")}
        ratios = [
            _fmt(s.events_per_second / b.events_per_second, ".2f") if b and b is not s else "-"
            for b in base.values()
        ]
        lines.append(
            f"{_label(s, produced):<11} {s.variant:<17} {_fmt(s.events_per_second, ',.0f'):>10}"
            f" {_fmt(s.mb_per_second, '.1f'):>7} {s.seconds:>7.2f} {s.peak_rss_mib:>8.0f}M"
            f"  {ratios[0]:>8} {ratios[1]:>7} {ratios[2]:>7}"
        )
        if s.variant == "replace":
            lines.append(
                f"{'':<11} {'  (its forward)':<17} {s.runs[0].records / s.extra('forward_seconds'):>10,.0f}"
            )
        if s.variant == "overhead":
            lines.append(f"{'':<11} {'  (runs, ms)':<17} {s.runs[0].extra['times_ms']}")
    lines += ["", "targets:"]
    for t in targets:
        v = t["value"]
        shown = "-" if v is None else (f"{v:,.3f}" if v < 100 else f"{v:,.0f}")
        lines.append(f"  {t['status']:<5} {t['target']:<48} measured {shown}")
    return "\n".join(lines)


def orchestrate(args: argparse.Namespace) -> int:
    """Start a broker if needed, produce once, run every variant in child processes, report."""
    broker = None
    with tempfile.TemporaryDirectory(prefix="lakeport-bench-") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            if not args.bootstrap:
                from dev.local_broker import LocalBroker

                broker = LocalBroker(home=workdir / "broker")
                broker.start()
                args.bootstrap = broker.bootstrap_servers
                print(f"broker up at {args.bootstrap}")
            return _measure_all(args, workdir)
        finally:
            if broker is not None:
                broker.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ingest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events per topic")
    parser.add_argument("--runs", type=int, default=3, help="runs per variant (median)")
    parser.add_argument("--compressions", default=",".join(COMPRESSIONS), help="JSON topics")
    parser.add_argument("--backlog-events", type=int, default=5_000_000, help="P3's backlog")
    parser.add_argument("--overhead-commits", type=int, default=10_000, help="P5's table")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--variants",
        default=",".join([*PER_TOPIC, "replace", "avro", "backlog", "overhead"]),
        help="comma-separated subset to run",
    )
    parser.add_argument("--workdir", help="keep tables/broker here instead of a temp dir")
    # Child-process mode (one measured run of one variant):
    parser.add_argument("--only", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--registry-url", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.only:
        workdir = Path(args.workdir or tempfile.mkdtemp(prefix="lakeport-bench-run-"))
        workdir.mkdir(parents=True, exist_ok=True)
        result = VARIANTS[args.only](args, workdir)
        if args.result:
            Path(args.result).write_text(json.dumps(asdict(result)))
        else:
            print(json.dumps(asdict(result), indent=2))
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
