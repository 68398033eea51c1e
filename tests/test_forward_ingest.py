"""Forward ingestion against a real broker: every record exactly once, progress in the table."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
from confluent_kafka import Producer
from datafusion import SessionContext
from deltalake import DeltaTable, QueryBuilder

from connectors import Stream, run_forward
from connectors.coverage import audit, status
from connectors.delta_store import read_rows
from connectors.kafka_client import client_settings
from connectors.ledger import parse_ranges, read_ledger
from connectors.query import connect
from dev.sample_events import Awkward, notification_events, produce_sample
from tests.helpers import ensure_topic


def produce(
    stream: Stream, count: int, seed: int = 7, awkward: Awkward | None = None
) -> dict[int, int]:
    report = produce_sample(
        client_settings(stream.connection),
        stream.topic,
        notification_events(count, seed=seed, awkward=awkward or Awkward()),
    )
    return report.per_partition


def positions(stream: Stream) -> list[tuple[int, int]]:
    table = DeltaTable(stream.table.uri).to_pyarrow_table(
        columns=["kafka_partition", "kafka_offset"]
    )
    return sorted(
        zip(table["kafka_partition"].to_pylist(), table["kafka_offset"].to_pylist(), strict=True)
    )


def test_two_runs_land_every_record_exactly_once_and_ledger_names_the_ranges(
    stream: Stream,
) -> None:
    first = produce(stream, 3000, seed=1)
    report1 = run_forward(stream)
    second = produce(stream, 2000, seed=2)
    report2 = run_forward(stream)

    expected = sorted(
        (p, o) for p in set(first) | set(second) for o in range(first.get(p, 0) + second.get(p, 0))
    )
    assert positions(stream) == expected
    assert report1.records == 3000 and report2.records == 2000

    table = DeltaTable(stream.table.uri)
    ledger = read_ledger(table, stream.topic)
    for p, part in ledger.partitions.items():
        total = first.get(p, 0) + second.get(p, 0)
        assert list(part.covered) == [(0, total)]
        assert part.records == total and part.dead == 0
    written = [
        r
        for entry in table.history()
        if entry.get("lakeport.operation") == "forward"
        for r in parse_ranges(entry["lakeport.ranges"])
    ]
    assert sorted((r.partition, r.start, r.end) for r in written) == sorted(
        [(p, 0, n) for p, n in first.items()]
        + [(p, first.get(p, 0), first.get(p, 0) + n) for p, n in second.items()]
    )
    assert audit(stream).ok


def test_run_with_nothing_new_makes_no_commit(stream: Stream) -> None:
    produce(stream, 500)
    run_forward(stream)
    version = DeltaTable(stream.table.uri).version()
    report = run_forward(stream)
    assert report.records == 0 and report.commits == 0
    assert DeltaTable(stream.table.uri).version() == version


def test_sql_engines_read_the_same_rows(stream: Stream, make_config) -> None:
    produce(stream, 1200)
    run_forward(stream)
    uri = stream.table.uri
    config = make_config()
    query = (
        "SELECT kafka_partition, kafka_offset, id, created_at, category"
        " FROM events ORDER BY kafka_partition, kafka_offset"
    )
    duck = connect(config).sql(query).to_arrow_table()
    from_polars = pl.scan_delta(uri).sql(query.replace("events", "self")).collect().to_arrow()
    from_delta_rs = pa.table(QueryBuilder().register("events", DeltaTable(uri)).execute(query))
    ctx = SessionContext()
    ctx.register_dataset("events", DeltaTable(uri).to_pyarrow_dataset())
    from_datafusion = ctx.sql(query).to_arrow_table()
    expected = duck.to_pylist()
    assert (
        len(expected) == 1200
        and len({(r["kafka_partition"], r["kafka_offset"]) for r in expected}) == 1200
    )
    for other in (from_polars, from_delta_rs, from_datafusion):
        assert other.cast(duck.schema).to_pylist() == expected


def test_awkward_records_land_exactly_or_as_dead_letters_with_raw_bytes(stream: Stream) -> None:
    produce(stream, 4000, awkward=Awkward.all(0.02))
    report = run_forward(stream)
    expected = list(notification_events(4000, awkward=Awkward.all(0.02)))
    assert report.records + report.dead == 4000
    dead = DeltaTable(stream.dead_letters.uri).to_pyarrow_table().to_pylist()
    kinds = {r.kind for r in expected}
    assert {"not_json", "not_utf8"} <= kinds
    bad_values = {r.value for r in expected if r.kind in ("not_json", "not_utf8")}
    assert {d["value"] for d in dead} == bad_values
    assert {d["error_class"] for d in dead} <= {"not_json_object", "not_utf8", "missing_field"}
    rows = DeltaTable(stream.table.uri).to_pyarrow_table(
        columns=["type", "created_at_raw", "object"]
    )
    assert any(
        t.count(".") >= 1 and t.split(".")[0] not in {"ORDER", "EXECUTION"}
        for t in rows["type"].to_pylist()
    )
    assert all(json.loads(o) is not None for o in rows["object"].to_pylist())
    st = status(stream)
    assert st.missing_offsets == 0 and sum(p.dead for p in st.partitions) == len(dead)
    assert audit(stream).ok


def test_progress_is_mirrored_to_the_consumer_group_but_never_read_back(stream: Stream) -> None:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    per_partition = produce(stream, 900)
    run_forward(stream)
    admin = AdminClient(client_settings(stream.connection))

    def group_offsets() -> dict[int, int]:
        request = [
            ConsumerGroupTopicPartitions(
                stream.group_id, [TopicPartition(stream.topic, p) for p in per_partition]
            )
        ]
        (future,) = admin.list_consumer_group_offsets(request).values()
        return {tp.partition: tp.offset for tp in future.result().topic_partitions}

    assert group_offsets() == per_partition

    # Rewinding the group does not make lakeport re-read: the table is the source of truth.
    from confluent_kafka import Consumer

    rewind = Consumer({**client_settings(stream.connection), "group.id": stream.group_id})
    rewind.commit(
        offsets=[TopicPartition(stream.topic, p, 0) for p in per_partition], asynchronous=False
    )
    rewind.close()
    more = produce(stream, 300, seed=2)
    report = run_forward(stream)
    assert report.records == 300
    total = {p: per_partition.get(p, 0) + more.get(p, 0) for p in per_partition | more}
    assert positions(stream) == sorted((p, o) for p, n in total.items() for o in range(n))
    assert group_offsets() == total


def test_each_commit_carries_a_human_summary_in_user_metadata(stream: Stream) -> None:
    """Spark's DESCRIBE HISTORY shows commitInfo.userMetadata: what the commit landed."""
    per = produce(stream, 200)
    run_forward(stream)
    table = DeltaTable(stream.table.uri)
    log = json.loads(
        (Path(stream.table.uri) / "_delta_log" / f"{table.version():020d}.json")
        .read_text()
        .splitlines()[0]
    )
    info = log.get("commitInfo") or {}
    assert info["userMetadata"] == (
        f"lakeport forward of topic {stream.topic!r}: "
        + " ".join(f"p{p}[0,{n})" for p, n in sorted(per.items()))
    )
    assert table.history(1)[0]["userMetadata"] == info["userMetadata"]


RAW_OBJECTS = [
    '{"price":0.12345678901234567890123,"qty":100000000000000000000000000000.5}',
    '{ "id" : "x",\n  "note": "caf\\u00e9 \\"quoted\\" }, {",  "n": 1E+2, "t": true }',
    '{"id":"y","object":{"object":1}}',
    '{"id":"z","amount":"12.50","at":"2026-11-01T00:00:00.123456789Z"}',
    '[1, 2.50, {"a": []}]',
    '"just text, \\/ escaped"',
    "-0.000000000000000000000000001",
]


def test_raw_columns_hold_the_json_text_of_the_member_byte_for_byte(stream: Stream) -> None:
    """`object` is `"lakeport.raw": true`: what arrived, not DuckDB's re-serialisation."""
    ensure_topic(stream, partitions=1)
    producer = Producer(client_settings(stream.connection))
    for i, text in enumerate(RAW_OBJECTS):
        spaced = " " if i % 2 else ""  # compact and spaced envelopes
        value = (
            f'{{"id":"00000000-0000-4000-8000-00000000000{i}",{spaced}"created_at":'
            f'"2026-11-01T00:00:00Z","type":"ORDER.FILLED",{spaced}"object"{spaced}:{spaced}'
            f'{text}{spaced},"webhook_id":null}}'
        )
        producer.produce(stream.topic, value.encode(), partition=0)
    assert producer.flush(10) == 0
    report = run_forward(stream)
    assert report.records == len(RAW_OBJECTS) and report.dead == 0
    table = read_rows(DeltaTable(stream.table.uri), columns=["kafka_offset", "object"])
    landed = dict(zip(table["kafka_offset"].to_pylist(), table["object"].to_pylist(), strict=True))
    assert [landed[i] for i in range(len(RAW_OBJECTS))] == RAW_OBJECTS
