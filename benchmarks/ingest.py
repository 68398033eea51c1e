"""Ingest throughput, memory and fixed overhead of lakeport on a real local Kafka broker.

    python -m benchmarks.ingest --events 1000000 [--runs 3] [--json out.json]

The parent process starts a broker (unless `--bootstrap` is given), produces the sample once
(fixed seed, 6 partitions) and then runs every measured variant in its own subprocess, one
subprocess per run, so that each run starts cold (new process, new Consumer, new group id,
fresh table) and its peak RSS (`ru_maxrss`) and GC state are its own. All variants read the
same topic, so they see the same bytes. Figures are medians over `--runs`.

Variants: `ceiling` (consume-only loop), `naive` (json.loads + from_pylist + write_deltalake
per 10k), `lakeport-json`, `lakeport-avro` and
`overhead` (a forward run with nothing new on a table with many commits).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
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
MEASURED = ("ceiling", "naive", "lakeport-json", "lakeport-avro")

# Targets: (key, description, threshold)
TARGET_JSON_EPS = 150_000.0
TARGET_JSON_VS_CEILING = 0.60
TARGET_JSON_VS_NAIVE = 5.0
TARGET_AVRO_EPS = 120_000.0
TARGET_RSS_MIB = 1024.0
TARGET_RSS_BACKLOG = 5_000_000
TARGET_OVERHEAD_S = 0.100
TARGET_OVERHEAD_COMMITS = 10_000


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class RunResult:
    """One measured run of one variant (written by the child process as JSON)."""

    variant: str
    seconds: float
    records: int
    value_bytes: int
    peak_rss_mib: float
    rss_before_mib: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class VariantSummary:
    """Medians over the runs of one variant."""

    variant: str
    runs: list[RunResult]
    skipped: str | None = None

    @property
    def seconds(self) -> float:
        return statistics.median(r.seconds for r in self.runs) if self.runs else float("nan")

    @property
    def events_per_second(self) -> float:
        return self.runs[0].records / self.seconds if self.runs else float("nan")

    @property
    def mb_per_second(self) -> float:
        return self.runs[0].value_bytes / 1e6 / self.seconds if self.runs else float("nan")

    @property
    def peak_rss_mib(self) -> float:
        return max(r.peak_rss_mib for r in self.runs) if self.runs else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "skipped": self.skipped,
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
# Producing the sample


@dataclass(frozen=True)
class Produced:
    """A topic holding the sample, and what producing it cost."""

    topic: str
    records: int
    value_bytes: int
    seconds: float
    per_partition: dict[int, int]


def _counted(records: Iterable[Any], totals: list[int]) -> Iterator[Any]:
    """Pass records through, adding their value bytes to `totals[0]`."""
    for rec in records:
        totals[0] += len(rec.value)
        yield rec


def create_topic(bootstrap: str, topic: str) -> None:
    """A 6-partition topic that retention never empties.

    The sample's timestamps start on 2026-01-05 (fixed, for reproducibility), so with the
    default `retention.ms` (7 days) the broker's retention check (every 30 s on LocalBroker)
    deletes the whole backlog moments after it is produced.
    """
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=PARTITIONS, config={"retention.ms": "-1"})
    admin.create_topics([new], request_timeout=30)[topic].result(timeout=60)


def produce_json(bootstrap: str, topic: str, events: int, seed: int) -> Produced:
    """Produce `events` Upvest notifications (JSON values) to a new 6-partition topic."""
    from dev.sample_events import notification_events, produce_sample

    create_topic(bootstrap, topic)
    totals = [0]
    began = time.perf_counter()
    report = produce_sample(
        {"bootstrap.servers": bootstrap},
        topic,
        _counted(notification_events(events, seed=seed), totals),
        partitions=PARTITIONS,
    )
    seconds = time.perf_counter() - began
    if report.records != events:
        raise RuntimeError(f"produced {report.records} records, expected {events}")
    return Produced(topic, report.records, totals[0], seconds, report.per_partition)


# ---- Avro ----------------------------------------------------------------------------------


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

    from dev.sample_events import SampleRecord, notification_events, produce_sample

    create_topic(bootstrap, topic)
    schema_id = register_writer_schema(registry_url)
    parsed = fastavro.parse_schema(_writer_schema())
    header = b"\x00" + struct.pack(">I", schema_id)

    def encoded() -> Iterator[SampleRecord]:
        buf = BytesIO()
        for rec in notification_events(events, seed=seed):
            buf.seek(0)
            buf.truncate()
            fastavro.schemaless_writer(buf, parsed, avro_record(rec.value))
            yield SampleRecord(rec.key, header + buf.getvalue(), rec.timestamp_ms, rec.kind)

    totals = [0]
    began = time.perf_counter()
    report = produce_sample(
        {"bootstrap.servers": bootstrap},
        topic,
        _counted(encoded(), totals),
        partitions=PARTITIONS,
    )
    seconds = time.perf_counter() - began
    return Produced(topic, report.records, totals[0], seconds, report.per_partition)


# --------------------------------------------------------------------------------------------
# Lakeport configuration


def write_config(
    directory: Path,
    bootstrap: str,
    topic: str,
    *,
    fmt: str = "json",
    registry_url: str | None = None,
    group_id: str | None = None,
) -> Path:
    """A lakeport.yaml with one stream `events` and a lakehouse under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    keys: dict[str, object] = {
        "schema_file": str(SCHEMA_FILE),
        "format": fmt,
        "group_id": group_id or f"bench.{uuid.uuid4().hex}",
        "idle_timeout_seconds": 30,
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
        return DeltaTable(uri).to_pyarrow_dataset().count_rows()
    except TableNotFoundError:
        return 0


# --------------------------------------------------------------------------------------------
# Variants (each runs inside its own child process)


def _consumer_settings(bootstrap: str) -> dict[str, str]:
    """A cold consumer (new group id) with lakeport's fetch sizes, reading from offset 0."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": f"bench.{uuid.uuid4().hex}",
        "enable.auto.commit": "false",
        "enable.auto.offset.store": "false",
        "auto.offset.reset": "earliest",
        "fetch.max.bytes": str(64 * 1024 * 1024),
        "max.partition.fetch.bytes": str(16 * 1024 * 1024),
        "queued.max.messages.kbytes": str(256 * 1024),
    }


STALL_SECONDS = 30.0


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


def run_ceiling(args: argparse.Namespace, workdir: Path) -> RunResult:
    """Consume-only: all partitions from 0, touch value and offset, GC paused around the loop."""
    from confluent_kafka import Consumer

    rss_before = _rss_mib()
    began = time.perf_counter()
    consumer = Consumer(_consumer_settings(args.bootstrap))
    _assign_all(consumer, args.topic)
    records, size, checksum = 0, 0, 0
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for batch in _batches(consumer, args.events):
            for m in batch:
                v = m.value()
                checksum += m.offset()
                size += len(v) if v is not None else 0
            records += len(batch)
    finally:
        if gc_was_enabled:
            gc.enable()
    consumer.close()
    seconds = time.perf_counter() - began
    return RunResult("ceiling", seconds, records, size, _rss_mib(), rss_before, {"sum": checksum})


def _naive_schema() -> Any:
    import pyarrow as pa

    text = pa.string()
    fields: list[tuple[str, Any]] = [
        ("kafka_partition", pa.int32()),
        ("kafka_offset", pa.int64()),
        ("kafka_timestamp_ms", pa.int64()),
        ("kafka_key", pa.binary()),
        ("id", text),
        ("created_at", text),
        ("type", text),
        ("webhook_id", text),
        ("object", text),
        ("object_id", text),
        ("object_user_id", text),
        ("object_account_id", text),
        ("object_account_group_id", text),
        ("object_status", text),
        ("object_currency", text),
    ]
    return pa.schema(fields)


def run_naive(args: argparse.Namespace, workdir: Path) -> RunResult:
    """What one writes first: json.loads per record, from_pylist, write_deltalake per 10k."""
    import pyarrow as pa
    from confluent_kafka import Consumer
    from deltalake import write_deltalake

    schema = _naive_schema()
    uri = str(workdir / "naive_table")
    rss_before = _rss_mib()
    began = time.perf_counter()
    consumer = Consumer(_consumer_settings(args.bootstrap))
    _assign_all(consumer, args.topic)
    size, commits = 0, 0
    rows: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal commits
        if rows:
            write_deltalake(uri, pa.Table.from_pylist(rows, schema=schema), mode="append")
            rows.clear()
            commits += 1

    for batch in _batches(consumer, args.events):
        for m in batch:
            v = m.value()
            size += len(v)
            doc = json.loads(v)
            obj = doc.get("object")
            o = obj if isinstance(obj, dict) else {}
            rows.append(
                {
                    "kafka_partition": m.partition(),
                    "kafka_offset": m.offset(),
                    "kafka_timestamp_ms": m.timestamp()[1],
                    "kafka_key": m.key(),
                    "id": doc.get("id"),
                    "created_at": doc.get("created_at"),
                    "type": doc.get("type"),
                    "webhook_id": doc.get("webhook_id"),
                    "object": json.dumps(obj, ensure_ascii=False, separators=(",", ":")),
                    "object_id": o.get("id"),
                    "object_user_id": o.get("user_id"),
                    "object_account_id": o.get("account_id"),
                    "object_account_group_id": o.get("account_group_id"),
                    "object_status": o.get("status"),
                    "object_currency": o.get("currency"),
                }
            )
            if len(rows) >= NAIVE_BATCH:
                flush()
    flush()
    consumer.close()
    seconds = time.perf_counter() - began
    landed = _count_rows(uri)
    if landed != args.events:
        raise RuntimeError(f"naive: table holds {landed} rows, expected {args.events}")
    return RunResult("naive", seconds, landed, size, _rss_mib(), rss_before, {"commits": commits})


def _run_lakeport(args: argparse.Namespace, workdir: Path, fmt: str) -> RunResult:
    """lakeport end to end: a fresh config, table and group; `run_forward` over the backlog."""
    from connectors import Stream, load_config, run_forward

    registry = None
    if fmt == "avro":
        registry = args.registry_url
        schema_id = register_writer_schema(registry)
        if schema_id != args.schema_id:
            raise RuntimeError(f"registry gave schema id {schema_id}, topic uses {args.schema_id}")
    config = load_config(
        write_config(
            workdir / "lakeport", args.bootstrap, args.topic, fmt=fmt, registry_url=registry
        )
    )
    stream = Stream.from_config(config, STREAM)
    rss_before = _rss_mib()
    began = time.perf_counter()
    report = run_forward(stream)
    seconds = time.perf_counter() - began
    rows, dead = _count_rows(stream.table.uri), _count_rows(stream.dead_letters.uri)
    if rows + dead != args.events or report.records + report.dead != args.events:
        raise RuntimeError(
            f"lakeport-{fmt}: table {rows} + dead letters {dead} (report {report.records} +"
            f" {report.dead}) != {args.events} events"
        )
    return RunResult(
        f"lakeport-{fmt}",
        seconds,
        rows + dead,
        report.bytes,
        _rss_mib(),
        rss_before,
        {"rows": rows, "dead": dead, "commits": report.commits, "run_seconds": report.seconds},
    )


def run_lakeport_json(args: argparse.Namespace, workdir: Path) -> RunResult:
    return _run_lakeport(args, workdir, "json")


def run_lakeport_avro(args: argparse.Namespace, workdir: Path) -> RunResult:
    return _run_lakeport(args, workdir, "avro")


def run_overhead(args: argparse.Namespace, workdir: Path) -> RunResult:
    """Forward runs with nothing new on the prepared many-commit table (median of 5)."""
    from connectors import Stream, load_config, run_forward

    stream = Stream.from_config(load_config(Path(args.config)), STREAM)
    rss_before = _rss_mib()
    times: list[float] = []
    for _ in range(OVERHEAD_REPEATS):
        began = time.perf_counter()
        report = run_forward(stream)
        times.append(time.perf_counter() - began)
        if report.records or report.commits:
            raise RuntimeError(f"overhead: expected an empty run, got {report}")
    return RunResult(
        "overhead",
        statistics.median(times),
        0,
        0,
        _rss_mib(),
        rss_before,
        {"times": times, "table_version": report.table_version},
    )


VARIANTS: dict[str, Callable[[argparse.Namespace, Path], RunResult]] = {
    "ceiling": run_ceiling,
    "naive": run_naive,
    "lakeport-json": run_lakeport_json,
    "lakeport-avro": run_lakeport_avro,
    "overhead": run_overhead,
}


# --------------------------------------------------------------------------------------------
# The many-commit table for the fixed-overhead measurement (built in the parent)


def build_overhead_table(
    directory: Path, bootstrap: str, commits: int, seed: int
) -> dict[str, Any]:
    """A topic of `commits` records and a table landing them one record per lakeport commit.

    Each commit goes through lakeport's own path (`TableWriter.commit`, delta-rs default
    checkpoints), so the table's log and ledger look like `commits` micro-batches.
    """
    from connectors import OffsetRange, Stream, load_config
    from connectors.kafka_client import open_consumer, partition_marks
    from connectors.planner import plan_forward
    from connectors.reader import ReadLimits, read_ranges
    from connectors.writer import append

    topic = f"bench-overhead-{uuid.uuid4().hex[:8]}"
    produce_json(bootstrap, topic, commits, seed)
    path = write_config(directory, bootstrap, topic)
    stream = Stream.from_config(load_config(path), STREAM)
    writer = stream.writer()
    with open_consumer(stream.connection, stream.group_id) as consumer:
        plan = plan_forward(writer.ledger, partition_marks(consumer, topic))
        limits = ReadLimits(batch_records=commits, batch_bytes=1 << 40, idle_timeout=30)
        batches = list(read_ranges(consumer, topic, plan.ranges, limits))
    decoder = stream.decoder()
    rows = [decoder.decode(b.records).rows for b in batches]
    began = time.perf_counter()
    made = 0
    for batch in rows:
        for i in range(batch.num_rows):
            row = batch.slice(i, 1)
            p = row.column("kafka_partition")[0].as_py()
            o = row.column("kafka_offset")[0].as_py()
            update = writer.update()
            update.add(OffsetRange(p, o, o + 1), 1)
            writer.commit(update, append(row), "forward", extra={"lakeport.stream": STREAM})
            made += 1
            if made % 500 == 0:
                rate = (time.perf_counter() - began) / made
                print(f"  overhead table: {made}/{commits} commits ({rate * 1000:.0f} ms each)",
                      flush=True)  # fmt: skip
    seconds = time.perf_counter() - began
    return {
        "config": str(path),
        "topic": topic,
        "commits": made,
        "build_seconds": seconds,
        "ms_per_commit": seconds / made * 1000 if made else float("nan"),
        "table_version": writer.version,
    }


# --------------------------------------------------------------------------------------------
# Orchestration


def _child(variant: str, args: argparse.Namespace, workdir: Path, extra: list[str]) -> RunResult:
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
        "--events",
        str(args.events),
        "--result",
        str(result),
        "--workdir",
        str(workdir / f"{variant}-{uuid.uuid4().hex[:8]}"),
        *extra,
    ]
    subprocess.run(cmd, cwd=ROOT, check=True)
    return RunResult(**json.loads(result.read_text()))


def _versions() -> dict[str, str]:
    import confluent_kafka

    facts = {
        "cpu_count": str(os.cpu_count()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "confluent-kafka": importlib.metadata.version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
    }
    for name in ("pyarrow", "deltalake", "duckdb", "fastavro"):
        try:
            facts[name] = importlib.import_module(name).__version__
        except ImportError:
            facts[name] = "not installed"
    return facts


def _fmt(value: float, spec: str) -> str:
    return "-" if value != value else format(value, spec)  # NaN -> "-"


def _targets(
    summaries: dict[str, VariantSummary], overhead: dict[str, Any] | None, events: int
) -> list[dict[str, Any]]:
    """Each target with its measured value and PASS / MISS (or why it was not measured)."""
    js, ce, nv = (summaries.get(k) for k in ("lakeport-json", "ceiling", "naive"))
    av = summaries.get("lakeport-avro")
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, ok: bool | None, note: str = "") -> None:
        status = "n/a" if ok is None else ("PASS" if ok else "MISS")
        out.append({"target": name, "value": value, "status": status, "note": note})

    def ok_runs(s: VariantSummary | None) -> bool:
        return s is not None and bool(s.runs)

    if ok_runs(js):
        assert js is not None
        eps = js.events_per_second
        add("JSON >= 150k events/s", eps, eps >= TARGET_JSON_EPS)
        if ok_runs(ce):
            assert ce is not None
            r = eps / ce.events_per_second
            add("JSON >= 60% of ceiling", r, r >= TARGET_JSON_VS_CEILING)
        if ok_runs(nv):
            assert nv is not None
            r = eps / nv.events_per_second
            add("JSON >= 5x naive", r, r >= TARGET_JSON_VS_NAIVE)
        rss = js.peak_rss_mib
        if events >= TARGET_RSS_BACKLOG:
            add("peak RSS < 1 GiB (5M backlog)", rss, rss < TARGET_RSS_MIB)
        else:
            add(
                "peak RSS < 1 GiB (5M backlog)",
                rss,
                rss < TARGET_RSS_MIB,
                f"measured on a {events:,} backlog, not 5M",
            )
    if ok_runs(av):
        assert av is not None
        add("Avro >= 120k events/s", av.events_per_second, av.events_per_second >= TARGET_AVRO_EPS)
    else:
        add("Avro >= 120k events/s", None, None, (av.skipped if av else None) or "not run")
    if overhead and "median_seconds" in overhead:
        s, n = overhead["median_seconds"], overhead["commits"]
        note = "" if n >= TARGET_OVERHEAD_COMMITS else f"measured at {n:,} commits, not 10k"
        add("fixed overhead <= 100 ms (10k commits)", s, s <= TARGET_OVERHEAD_S, note)
    return out


def report(
    facts: dict[str, Any],
    produced: dict[str, Any],
    summaries: dict[str, VariantSummary],
    overhead: dict[str, Any] | None,
    targets: list[dict[str, Any]],
) -> str:
    """The human-readable result table."""
    lines = ["machine: " + ", ".join(f"{k}={v}" for k, v in facts.items())]
    for name, p in produced.items():
        lines.append(
            f"produce {name}: {p['records']:,} events, {p['value_bytes'] / 1e6:.1f} MB values"
            f" ({p['value_bytes'] / max(p['records'], 1):.0f} B avg) in {p['seconds']:.1f} s"
            f" = {p['records'] / p['seconds']:,.0f} events/s"
        )
    lines.append("")
    head = f"{'variant':<15} {'events/s':>10} {'MB/s':>7} {'seconds':>8} {'peak RSS MiB':>13}  runs (s)"
    lines += [head, "-" * len(head)]
    for s in summaries.values():
        if s.skipped:
            lines.append(f"{s.variant:<15} skipped ({s.skipped})")
            continue
        runs = ", ".join(f"{r.seconds:.2f}" for r in s.runs)
        lines.append(
            f"{s.variant:<15} {_fmt(s.events_per_second, ',.0f'):>10}"
            f" {_fmt(s.mb_per_second, '.1f'):>7} {_fmt(s.seconds, '.2f'):>8}"
            f" {_fmt(s.peak_rss_mib, '.0f'):>13}  {runs}"
        )
    js = summaries.get("lakeport-json")
    for base in ("ceiling", "naive"):
        b = summaries.get(base)
        if js and js.runs and b and b.runs:
            lines.append(
                f"lakeport-json / {base}: {js.events_per_second / b.events_per_second:.2f}"
            )
    av = summaries.get("lakeport-avro")
    if av and av.skipped:
        lines.append(f"avro: skipped ({av.skipped})")
    if overhead:
        lines.append(
            f"fixed overhead: table of {overhead['commits']:,} lakeport commits (built in"
            f" {overhead['build_seconds']:.0f} s, {overhead['ms_per_commit']:.0f} ms/commit);"
            f" empty run_forward median {overhead.get('median_seconds', float('nan')) * 1000:.0f}"
            f" ms over {OVERHEAD_REPEATS}: "
            + ", ".join(f"{t * 1000:.0f}" for t in overhead.get("times", []))
            + f" ms; peak RSS {overhead.get('peak_rss_mib', float('nan')):.0f} MiB"
        )
    lines += ["", "targets:"]
    for t in targets:
        v = t["value"]
        shown = "-" if v is None else (f"{v:,.3f}" if v < 100 else f"{v:,.0f}")
        note = f"  ({t['note']})" if t["note"] else ""
        lines.append(f"  {t['status']:<5} {t['target']:<42} measured {shown}{note}")
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
                began = time.perf_counter()
                broker.start()
                args.bootstrap = broker.bootstrap_servers
                print(f"broker up at {args.bootstrap} in {time.perf_counter() - began:.1f} s")
            return _measure_all(args, workdir)
        finally:
            if broker is not None:
                broker.stop()


def _measure_all(args: argparse.Namespace, workdir: Path) -> int:
    wanted = [v for v in args.variants.split(",") if v]
    tag = uuid.uuid4().hex[:8]
    produced: dict[str, Any] = {}
    summaries: dict[str, VariantSummary] = {}
    overhead: dict[str, Any] | None = None

    if any(v in wanted for v in ("ceiling", "naive", "lakeport-json")):
        print(f"producing {args.events:,} JSON events ...", flush=True)
        pj = produce_json(args.bootstrap, f"bench-json-{tag}", args.events, args.seed)
        produced["json"] = asdict(pj)
        for variant in ("ceiling", "naive", "lakeport-json"):
            if variant not in wanted:
                continue
            runs = []
            for i in range(args.runs):
                print(f"{variant}: run {i + 1}/{args.runs} ...", flush=True)
                runs.append(_child(variant, args, workdir, ["--topic", pj.topic]))
                print(f"  {runs[-1].seconds:.2f} s, peak RSS {runs[-1].peak_rss_mib:.0f} MiB")
            summaries[variant] = VariantSummary(variant, runs)

    if "lakeport-avro" in wanted:
        url = f"mock://bench-{tag}"
        print(f"producing {args.events:,} Avro events ...", flush=True)
        pa_ = produce_avro(args.bootstrap, f"bench-avro-{tag}", args.events, args.seed, url)
        produced["avro"] = asdict(pa_)
        schema_id = register_writer_schema(url)
        runs = []
        for i in range(args.runs):
            print(f"lakeport-avro: run {i + 1}/{args.runs} ...", flush=True)
            extra = ["--topic", pa_.topic, "--registry-url", url, "--schema-id", str(schema_id)]
            runs.append(_child("lakeport-avro", args, workdir, extra))
        summaries["lakeport-avro"] = VariantSummary("lakeport-avro", runs)

    if "overhead" in wanted and args.overhead_commits > 0:
        print(f"building a table of {args.overhead_commits:,} lakeport commits ...", flush=True)
        overhead = build_overhead_table(
            workdir / "overhead", args.bootstrap, args.overhead_commits, args.seed
        )
        res = _child("overhead", args, workdir, ["--config", overhead["config"]])
        overhead.update(
            median_seconds=res.seconds, times=res.extra["times"], peak_rss_mib=res.peak_rss_mib
        )

    facts = _versions()
    targets = _targets(summaries, overhead, args.events)
    print()
    print(report(facts, produced, summaries, overhead, targets))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "events": args.events,
                    "runs": args.runs,
                    "seed": args.seed,
                    "machine": facts,
                    "produced": produced,
                    "variants": {k: s.as_dict() for k, s in summaries.items()},
                    "overhead": overhead,
                    "targets": targets,
                },
                indent=2,
                default=str,
            )
        )
        print(f"\nwrote {args.json}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="events to produce")
    parser.add_argument("--runs", type=int, default=3, help="runs per variant (median)")
    parser.add_argument("--overhead-commits", type=int, default=10_000)
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--variants",
        default="ceiling,naive,lakeport-json,lakeport-avro,overhead",
        help="comma-separated subset to run",
    )
    parser.add_argument("--workdir", help="keep tables/broker here instead of a temp dir")
    # Child-process mode (one measured run of one variant):
    parser.add_argument("--only", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--registry-url", help=argparse.SUPPRESS)
    parser.add_argument("--schema-id", type=int, help=argparse.SUPPRESS)
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
