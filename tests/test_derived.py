"""Derived tables on the real broker, against an independent recomputation (tests/derived_oracle).

The stream is Upvest-like order life cycles (NEW, PROCESSING, EXECUTION.FILLED, ORDER.FILLED,
POSITION.UPDATED, CASH_BALANCE.UPDATED, ...) keyed by event id, so one order's events are
shuffled over 6 partitions, with duplicated events (the same id at two offsets) and late
events (produced after newer events about the same order, position or balance).
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from deltalake import DeltaTable

from connectors import Stream, load_config, redrive, run_forward, run_window
from connectors.config import LakeportConfig
from connectors.derived import DerivedTable, audit_derived, derive, derived_tables
from connectors.kafka_client import client_settings
from connectors.ledger import read_ledger
from connectors.ranges import OffsetRange, Spans
from dev.sample_events import Awkward, notification_events, produce_sample
from tests.conftest import SCHEMAS
from tests.derived_oracle import assert_equal_to_recomputation, raw_rows
from tests.helpers import ensure_topic

DERIVED: dict[str, dict[str, Any]] = {
    "orders": {
        "kind": "latest-state",
        "where": "category = 'ORDER'",
        "schema_file": str(SCHEMAS / "upvest_order.avsc"),
        "key": ["id"],
        "order_by": ["updated_at", "event_created_at"],
        "cluster_by": "created_at",
        "batch_records": 900,
    },
    "order_events": {
        "kind": "events",
        "where": "category = 'ORDER'",
        "schema_file": str(SCHEMAS / "upvest_order.avsc"),
        "cluster_by": "event_created_at",
        "batch_records": 900,
    },
    "positions": {
        "kind": "latest-state",
        "where": "type = 'POSITION.UPDATED'",
        "schema_file": str(SCHEMAS / "upvest_position.avsc"),
        "key": ["account_id", "instrument_uuid"],
        "order_by": ["event_created_at"],
        "batch_records": 900,
    },
    "cash_balances": {
        "kind": "latest-state",
        "where": "type = 'CASH_BALANCE.UPDATED'",
        "schema_file": str(SCHEMAS / "upvest_cash_balance.avsc"),
        "key": ["account_group_id", "currency"],
        "order_by": ["event_created_at"],
        "batch_records": 900,
    },
}
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def life_cycles(stream: Stream, count: int, seed: int, start: datetime = T0) -> dict[int, int]:
    """Order life cycles keyed by event id, with 3 % duplicated and 5 % late events."""
    ensure_topic(stream)
    report = produce_sample(
        client_settings(stream.connection),
        stream.topic,
        notification_events(
            count,
            seed=seed,
            start=start,
            keys="event",
            awkward=Awkward(duplicates=0.03, late=0.05),
        ),
    )
    return report.per_partition


def produce_at(stream: Stream, events: list[tuple[int, bytes]]) -> None:
    """Produce each value to the given partition, in order."""
    ensure_topic(stream)
    producer = Producer(client_settings(stream.connection))
    for partition, value in events:
        producer.produce(stream.topic, value=value, partition=partition)
    assert producer.flush(30) == 0


def event(typ: str, obj: dict[str, Any], created: str, event_id: str) -> bytes:
    return json.dumps(
        {"id": event_id, "created_at": created, "type": typ, "object": obj}, separators=(",", ":")
    ).encode()


def order(oid: str, status: str, updated: str) -> dict[str, Any]:
    return {
        "id": oid,
        "created_at": "2026-03-02T09:00:00Z",
        "updated_at": updated,
        "status": status,
        "cash_amount": "100.00",
        "quantity": "0.5",
    }


@pytest.fixture
def config(make_config: Callable[..., LakeportConfig]) -> LakeportConfig:
    return make_config(derived=DERIVED)


def setup(config: LakeportConfig) -> tuple[Stream, list[DerivedTable]]:
    return Stream.from_config(config, "events"), derived_tables(config, "events")


def derive_all(tables: list[DerivedTable]) -> dict[str, Any]:
    return {t.name: derive(t) for t in tables}


def merged(ranges: list[OffsetRange]) -> dict[int, list[tuple[int, int]]]:
    """Ranges as normalised spans per partition (batches split ranges)."""
    parts = {r.partition for r in ranges}
    return {p: list(Spans.of((r.start, r.end) for r in ranges if r.partition == p)) for p in parts}


def row_of(derived: DerivedTable, column: str, value: Any) -> dict[str, Any]:
    rows = DeltaTable(derived.table.uri).to_pyarrow_table().to_pylist()
    (row,) = [r for r in rows if r[column] == value]
    return row


# --- incremental and exactly once ------------------------------------------------------------


def test_derived_tables_equal_an_independent_recomputation_after_every_run(
    config: LakeportConfig,
) -> None:
    stream, tables = setup(config)
    for seed in (1, 2, 3):
        life_cycles(stream, 1500, seed=seed, start=T0 + timedelta(hours=seed))
        landed = run_forward(stream)
        reports = derive_all(tables)
        for report in reports.values():
            assert merged(report.absorbed) == merged(landed.ranges), "exactly the new raw rows"
            assert report.rederived == []
        assert_equal_to_recomputation(stream, tables)

    again = derive_all(tables)
    assert all(r.commits == 0 and r.absorbed == [] for r in again.values()), "nothing new"

    rows = raw_rows(stream)
    orders = [r for r in rows if r["category"] == "ORDER"]
    ids = {r["id"] for r in orders}
    assert len(orders) > len(ids), "the stream holds duplicated ORDER events"
    assert DeltaTable(tables[1].table.uri).to_pyarrow_table().num_rows == len(ids)
    # late events exist whose order state did not follow them: the newest offset lost
    last_by_offset: dict[str, tuple[Any, ...]] = {}
    for r in sorted(orders, key=lambda r: (r["created_at"] is None, r["kafka_offset"])):
        last_by_offset[json.loads(r["object"])["id"]] = (r["kafka_partition"], r["kafka_offset"])
    held = {
        r["id"]: (r["kafka_partition"], r["kafka_offset"])
        for r in DeltaTable(tables[0].table.uri).to_pyarrow_table().to_pylist()
    }
    assert sum(held[k] != v for k, v in last_by_offset.items()) > 10


def test_an_older_event_arriving_late_never_overwrites_newer_state(config: LakeportConfig) -> None:
    stream, tables = setup(config)
    orders = tables[0]
    oid = "8b0b7f43-6f4b-4b4e-9a7c-1f0c8a0d4e01"
    produce_at(
        stream,
        [
            (
                0,
                event(
                    "ORDER.NEW",
                    order(oid, "NEW", "2026-03-02T09:00:00Z"),
                    "2026-03-02T09:00:00Z",
                    "e1",
                ),
            ),
            (
                2,
                event(
                    "ORDER.FILLED",
                    order(oid, "FILLED", "2026-03-02T09:00:05Z"),
                    "2026-03-02T09:00:05Z",
                    "e3",
                ),
            ),
        ],
    )
    run_forward(stream)
    derive(orders)
    assert row_of(orders, "id", oid)["status"] == "FILLED"

    # PROCESSING happened between NEW and FILLED but arrives last, on a higher partition
    produce_at(
        stream,
        [
            (
                5,
                event(
                    "ORDER.PROCESSING",
                    order(oid, "PROCESSING", "2026-03-02T09:00:02.5Z"),
                    "2026-03-02T09:00:02.5Z",
                    "e2",
                ),
            )
        ],
    )
    run_forward(stream)
    report = derive(orders)
    assert report.absorbed == [OffsetRange(5, 0, 1)]
    assert (report.inserted, report.updated) == (0, 0)
    row = row_of(orders, "id", oid)
    assert (row["status"], row["kafka_partition"], row["event_id"]) == ("FILLED", 2, "e3")
    assert_equal_to_recomputation(stream, [orders])


def test_the_same_event_at_two_offsets_counts_once(config: LakeportConfig) -> None:
    stream, tables = setup(config)
    order_events = tables[1]
    copy = event(
        "ORDER.NEW", order("o-1", "NEW", "2026-03-02T09:00:00Z"), "2026-03-02T09:00:00Z", "e1"
    )
    produce_at(stream, [(4, copy), (4, copy)])
    run_forward(stream)
    derive(order_events)
    row = row_of(order_events, "event_id", "e1")
    assert (row["kafka_partition"], row["kafka_offset"]) == (4, 0)

    produce_at(stream, [(1, copy)])  # redelivered on another partition, later
    run_forward(stream)
    report = derive(order_events)
    row = row_of(order_events, "event_id", "e1")  # still one row: the first copy by position
    assert (row["kafka_partition"], row["kafka_offset"]) == (1, 0)
    assert report.updated == 1
    assert read_ledger(DeltaTable(order_events.table.uri), stream.topic).partition(4).records == 2
    assert_equal_to_recomputation(stream, [order_events])


# --- derived again after backfills and re-drives ----------------------------------------------


def _strict(config: LakeportConfig, tmp_path: Path) -> LakeportConfig:
    """The same streams and tables, but the raw schema requires `object.status`: POSITION,
    CASH_BALANCE and CASH_TRANSACTION events (no status) become raw dead letters."""
    schema = json.loads((SCHEMAS / "upvest_notification.avsc").read_text())
    for field in schema["fields"]:
        if field["name"] == "object_status":
            field["type"] = "string"
            field.pop("default")
    strict = tmp_path / "strict.avsc"
    strict.write_text(json.dumps(schema))
    original = config.base_dir / "lakeport.yaml"
    path = config.base_dir / "strict.yaml"
    path.write_text(
        original.read_text().replace(str(SCHEMAS / "upvest_notification.avsc"), str(strict))
    )
    return load_config(path)


def test_a_replace_backfill_derives_exactly_the_rewritten_window_again(
    config: LakeportConfig,
) -> None:
    stream, tables = setup(config)
    counts = life_cycles(stream, 2400, seed=4)
    run_forward(stream)
    derive_all(tables)
    window = [OffsetRange(p, 100, 250) for p in (1, 4)]

    run_window(stream, window, "replace")
    reports = derive_all(tables)

    for report in reports.values():
        assert merged(report.rederived) == merged(window)
        assert report.absorbed == []
        assert report.deleted == 0
    assert reports["order_events"].inserted == 0
    assert_equal_to_recomputation(stream, tables)
    assert all(n > 250 for n in counts.values())
    assert all(r.commits == 0 for r in derive_all(tables).values()), "derived once, not again"


def test_a_replace_backfill_that_drops_rows_recomputes_exactly_the_keys_it_touched(
    config: LakeportConfig, tmp_path: Path
) -> None:
    stream, tables = setup(config)
    account, instrument = "a-1", "i-1"

    def position(quantity: str, created: str, event_id: str) -> tuple[int, bytes]:
        obj = {"account_id": account, "instrument": {"uuid": instrument}, "quantity": quantity}
        return 0, event("POSITION.UPDATED", obj, created, event_id)

    produce_at(stream, [position("1", "2026-03-02T08:00:00Z", "p-old")])  # offset 0 of p0
    counts = life_cycles(stream, 2400, seed=5)
    produce_at(stream, [position("2", "2026-03-02T12:00:00Z", "p-new")])  # the newest, last
    run_forward(stream)
    derive_all(tables)
    positions = tables[2]
    assert row_of(positions, "account_id", account)["quantity"] == 2
    before = {t.name: DeltaTable(t.table.uri).to_pyarrow_table().num_rows for t in tables}
    window = [OffsetRange(p, 150, n + 2) for p, n in sorted(counts.items())]  # the newest rows

    strict = Stream.from_config(_strict(config, tmp_path), "events")
    dropped = run_window(strict, window, "replace")  # positions and balances turn dead here
    assert dropped.dead > 100
    reports = derive_all(tables)
    assert_equal_to_recomputation(stream, tables)
    assert reports["positions"].deleted > 0, "positions only seen in the window are gone"
    assert row_of(positions, "account_id", account)["event_id"] == "p-old", "the older row is back"
    assert reports["orders"].deleted == 0

    run_window(stream, window, "replace")  # the original schema brings them back
    derive_all(tables)
    assert_equal_to_recomputation(stream, tables)
    assert {t.name: DeltaTable(t.table.uri).to_pyarrow_table().num_rows for t in tables} == before
    assert row_of(positions, "account_id", account)["event_id"] == "p-new"


def test_a_redrive_derives_the_moved_records_again(config: LakeportConfig, tmp_path: Path) -> None:
    stream, tables = setup(config)
    life_cycles(stream, 1800, seed=6)
    strict = Stream.from_config(_strict(config, tmp_path), "events")
    run_forward(strict)
    derive_all(tables)
    assert_equal_to_recomputation(stream, tables)
    assert DeltaTable(tables[2].table.uri).to_pyarrow_table().num_rows == 0

    moved = redrive(stream)  # today's (original) schema decodes them
    assert moved.moved > 100
    reports = derive_all(tables)
    assert reports["positions"].rederived and reports["positions"].inserted > 100
    assert reports["orders"].inserted == 0
    assert_equal_to_recomputation(stream, tables)


def test_rows_whose_json_does_not_fit_become_dead_letters_of_the_derived_table(
    config: LakeportConfig,
) -> None:
    stream, tables = setup(config)
    orders = tables[0]
    broken = {"status": "NEW", "created_at": "2026-03-02T09:00:00Z", "quantity": "1.5"}  # no id
    long = order("o-2", "NEW", "2026-03-02T09:00:01Z") | {"quantity": "0." + "1" * 28}
    produce_at(
        stream,
        [
            (3, event("ORDER.NEW", broken, "2026-03-02T09:00:00Z", "e1")),
            (3, event("ORDER.NEW", long, "2026-03-02T09:00:01Z", "e2")),
            (
                3,
                event(
                    "ORDER.NEW",
                    order("o-3", "NEW", "2026-03-02T09:00:02Z") | {"client_reference": "Müller €"},
                    "2026-03-02T09:00:02Z",
                    "e3",
                ),
            ),
        ],
    )
    run_forward(stream)
    report = derive(orders)

    assert (report.records, report.dead, report.inserted) == (3, 2, 1)
    assert row_of(orders, "id", "o-3")["client_reference"] == "Müller €"
    dead = (
        DeltaTable(orders.dead_letters.uri).to_pyarrow_table().sort_by("kafka_offset").to_pylist()
    )
    assert [(d["kafka_partition"], d["kafka_offset"], d["error_class"]) for d in dead] == [
        (3, 0, "missing_field"),
        (3, 1, "bad_value"),
    ]
    assert json.loads(dead[0]["value"]) == broken, "the raw JSON is kept"
    assert "field 'id' ($.id) is missing" in dead[0]["error_message"]
    assert "quantity" in dead[1]["error_message"]
    ledger = read_ledger(DeltaTable(orders.table.uri), stream.topic).partition(3)
    assert (ledger.records, ledger.dead) == (3, 2)
    assert audit_derived(orders).ok


# --- concurrent runs ------------------------------------------------------------------------


def test_concurrent_derive_runs_apply_every_raw_row_once(config: LakeportConfig) -> None:
    stream, tables = setup(config)
    life_cycles(stream, 2400, seed=8)
    run_forward(stream)
    orders = tables[0]
    with ThreadPoolExecutor(3) as pool:
        reports = list(pool.map(lambda _: derive(orders), range(3)))
    assert sum(len(r.absorbed) for r in reports) > 0
    absorbed = sorted(s for r in reports for s in r.absorbed)
    for a, b in itertools.pairwise(absorbed):
        assert a.partition != b.partition or a.end <= b.start, "no raw range absorbed twice"
    assert_equal_to_recomputation(stream, [orders])


def test_a_derived_table_is_rebuilt_from_scratch_after_it_is_deleted(
    config: LakeportConfig,
) -> None:
    stream, tables = setup(config)
    life_cycles(stream, 900, seed=9)
    run_forward(stream)
    derive_all(tables)
    shutil.rmtree(tables[0].table.uri)
    report = derive(tables[0])
    assert report.inserted > 0
    assert_equal_to_recomputation(stream, tables)
