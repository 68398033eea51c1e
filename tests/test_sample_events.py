"""Behaviour of the sample Upvest event generator; no broker needed (mock cluster at most)."""

from __future__ import annotations

import json
import re
import uuid
import zlib
from collections import Counter, defaultdict
from concurrent.futures import Future
from datetime import UTC, datetime
from decimal import Decimal
from itertools import islice
from random import Random
from types import SimpleNamespace
from typing import Any

import pytest

from dev.sample_events import (
    KINDS,
    Awkward,
    SampleProduceError,
    SampleRecord,
    _record,
    _uuid4,
    notification_events,
    price_events,
    produce_sample,
)

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.(\d{2}|\d{3}|\d{6}|\d{9}))?Z$")
EVENT_TYPE = re.compile(r"^[A-Z][A-Z_]*\.[A-Z][A-Z_]*$")
DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")
ORDER_LIFE_CYCLE = [
    "ORDER.NEW",
    "ORDER.PROCESSING",
    "EXECUTION.FILLED",
    "ORDER.FILLED",
    "CASH_TRANSACTION.EXECUTED",
    "EXECUTION.SETTLED",
]  # the events that name the order (POSITION/CASH_BALANCE have no order reference)
KNOWN_CATEGORIES = {
    "ORDER",
    "EXECUTION",
    "POSITION",
    "CASH_BALANCE",
    "CASH_TRANSACTION",
    "ACCOUNT",
    "USER",
}
DECIMAL_FIELDS = {
    "cash_amount",
    "quantity",
    "price",
    "share_quantity",
    "amount",
    "balance",
    "locked_for_trading",
    "pending_settlement",
    "available_for_trading",
    "available_for_withdrawal",
    "limit_price",
    "stop_price",
    "fee",
}
INJECTED = {"duplicate", "unknown_type", "not_json", "not_utf8"}


@pytest.fixture(scope="module")
def clean() -> list[SampleRecord]:
    return list(notification_events(20_000))


@pytest.fixture(scope="module")
def hostile() -> list[SampleRecord]:
    return list(notification_events(5_000, awkward=Awkward.all(0.05)))


def _decimal_values(node: Any) -> list[Any]:
    found: list[Any] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in DECIMAL_FIELDS and not isinstance(v, dict | list):
                found.append(v)
            else:
                found.extend(_decimal_values(v))
    elif isinstance(node, list):
        for v in node:
            found.extend(_decimal_values(v))
    return found


def _isin_is_valid(isin: str) -> bool:
    digits = "".join(str(int(c, 36)) for c in isin[:-1])
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n // 10 + n % 10
    return (10 - total % 10) % 10 == int(isin[-1])


# ---- determinism --------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes() -> None:
    for make in (
        lambda: notification_events(3_000, seed=11, awkward=Awkward.all(0.02)),
        lambda: price_events(3_000, seed=11),
    ):
        first, second = list(make()), list(make())
        assert first == second
        assert [r.value for r in first] == [r.value for r in second]


def test_different_seed_gives_different_bytes() -> None:
    a = [r.value for r in notification_events(500, seed=1)]
    b = [r.value for r in notification_events(500, seed=2)]
    assert not set(a) & set(b)
    assert [r.value for r in price_events(100, seed=1)] != [
        r.value for r in price_events(100, seed=2)
    ]


def test_start_moves_the_stream_but_not_its_content_shape() -> None:
    start = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    rec = next(notification_events(1, start=start))
    assert rec.timestamp_ms >= int(start.timestamp() * 1000)
    assert json.loads(rec.value)["created_at"].startswith("2027-03-01T12:00:")


def test_uuid_helper_matches_uuid_module() -> None:
    a, b = Random(5), Random(5)
    for _ in range(1_000):
        assert _uuid4(a) == str(uuid.UUID(int=b.getrandbits(128), version=4))


def test_fast_record_constructor_equals_dataclass_constructor() -> None:
    fast = _record(b"k", b"v", 1, "ok")
    assert fast == SampleRecord(b"k", b"v", 1, "ok")
    assert hash(fast) == hash(SampleRecord(b"k", b"v", 1, "ok"))
    with pytest.raises(AttributeError):
        fast.kind = "x"  # type: ignore[misc]


# ---- clean notifications ------------------------------------------------------------------


def test_every_clean_event_is_utf8_json_with_the_envelope(clean: list[SampleRecord]) -> None:
    ids = set()
    for rec in clean:
        assert rec.kind == "ok"
        doc = json.loads(rec.value.decode("utf-8"))
        assert set(doc) == {"id", "created_at", "type", "object", "webhook_id"}
        assert uuid.UUID(doc["id"]).version == 4
        assert uuid.UUID(doc["webhook_id"])
        assert RFC3339.match(doc["created_at"]), doc["created_at"]
        assert EVENT_TYPE.match(doc["type"]), doc["type"]
        assert isinstance(doc["object"], dict) and doc["object"]
        assert rec.key is not None
        ids.add(doc["id"])
    assert len(ids) == len(clean), "clean event ids are unique"


def test_created_at_mixes_all_documented_precisions(clean: list[SampleRecord]) -> None:
    lengths = Counter()
    for rec in islice(clean, 2_000):
        m = RFC3339.match(json.loads(rec.value)["created_at"])
        assert m
        lengths[len(m.group(2) or "")] += 1
    assert set(lengths) == {0, 2, 3, 6, 9}


def test_timestamps_increase_and_follow_created_at(clean: list[SampleRecord]) -> None:
    previous = 0
    for rec in clean:
        gap = rec.timestamp_ms - previous
        assert previous == 0 or 1 <= gap <= 3_600, gap
        previous = rec.timestamp_ms
        created = json.loads(rec.value)["created_at"]
        created_ms = int(datetime.fromisoformat(created[:23].rstrip("Z")).replace(
            tzinfo=UTC).timestamp() * 1000)  # fmt: skip
        assert created_ms // 1000 == rec.timestamp_ms // 1000


def test_all_seven_categories_appear(clean: list[SampleRecord]) -> None:
    types = Counter(json.loads(r.value)["type"] for r in clean)
    assert {t.split(".")[0] for t in types} == KNOWN_CATEGORIES
    for t in ("ORDER.CANCELLED", "USER.CREATED", "ACCOUNT.ACTIVATED", "EXECUTION.SETTLED"):
        assert types[t] > 0
    assert types["ORDER.NEW"] / len(clean) > 0.1, "order life cycles dominate"


def test_order_life_cycles_appear_in_order_on_one_key(clean: list[SampleRecord]) -> None:
    per_order: dict[str, list[tuple[bytes | None, str]]] = defaultdict(list)
    for rec in clean:
        doc = json.loads(rec.value)
        obj, typ = doc["object"], doc["type"]
        if typ.startswith("ORDER."):
            per_order[obj["id"]].append((rec.key, typ))
        elif typ.startswith("EXECUTION."):
            per_order[obj["order_id"]].append((rec.key, typ))
        elif typ == "CASH_TRANSACTION.EXECUTED":
            per_order[obj["references"][0]["id"]].append((rec.key, typ))
    complete = 0
    for events in per_order.values():
        assert len({k for k, _ in events}) == 1, "one order, one key"
        types = [t for _, t in events]
        if types[-1] == "ORDER.CANCELLED":
            assert types == ["ORDER.NEW", "ORDER.PROCESSING", "ORDER.CANCELLED"][-len(types) :]
            continue
        # the stream may start or end in the middle of a life cycle
        start = ORDER_LIFE_CYCLE.index(types[0])
        assert types == ORDER_LIFE_CYCLE[start : start + len(types)]
        complete += types == ORDER_LIFE_CYCLE
    assert complete > 1_000


def test_position_and_cash_balance_follow_each_fill_on_the_same_key(
    clean: list[SampleRecord],
) -> None:
    per_key: dict[bytes | None, list[str]] = defaultdict(list)
    for rec in clean:
        per_key[rec.key].append(json.loads(rec.value)["type"])
    fills = positions = 0
    for types in per_key.values():
        fills += types.count("ORDER.FILLED")
        positions += types.count("POSITION.UPDATED")
        for i, t in enumerate(types):
            if t == "POSITION.UPDATED":
                assert "ORDER.FILLED" in types[:i]
    assert abs(fills - positions) <= 64  # flows cut by the end of the stream


def test_money_and_quantities_are_decimal_strings(clean: list[SampleRecord]) -> None:
    seen = 0
    for rec in clean:
        for v in _decimal_values(json.loads(rec.value)["object"]):
            if v is None:  # unset limit/stop prices on market orders
                continue
            assert isinstance(v, str) and DECIMAL.match(v), v
            seen += 1
    assert seen > 50_000


def test_instruments_are_valid_isins(clean: list[SampleRecord]) -> None:
    isins = set()
    for rec in clean:
        obj = json.loads(rec.value)["object"]
        if "instrument_id" in obj:
            assert obj["instrument_id_type"] == "ISIN"
            isins.add(obj["instrument_id"])
        if isinstance(obj.get("instrument"), dict):
            isins.add(obj["instrument"]["isin"])
    assert len(isins) >= 20
    assert all(re.fullmatch(r"[A-Z]{2}[A-Z0-9]{9}\d", i) and _isin_is_valid(i) for i in isins)


def test_user_events_carry_raw_utf8_pii(clean: list[SampleRecord]) -> None:
    users = [json.loads(r.value) for r in clean if b'"USER.' in r.value]
    assert users
    assert {"first_name", "last_name", "birth_date", "address", "email"} <= set(users[0]["object"])
    assert any(not r.value.isascii() for r in clean if b'"USER.' in r.value)


def test_keys_spread_evenly_over_six_partitions(clean: list[SampleRecord]) -> None:
    # librdkafka's default partitioner (consistent_random) is CRC32 of the key
    counts = Counter(zlib.crc32(r.key or b"") % 6 for r in clean)
    mean = len(clean) / 6
    assert set(counts) == set(range(6))
    assert all(abs(c - mean) / mean < 0.1 for c in counts.values()), counts
    assert len({r.key for r in clean}) > 1_000


def test_average_value_size_is_upvest_like(clean: list[SampleRecord]) -> None:
    average = sum(len(r.value) for r in clean) / len(clean)
    assert 500 <= average <= 650, average


# ---- awkward cases ------------------------------------------------------------------------


def test_awkward_all_produces_every_kind(hostile: list[SampleRecord]) -> None:
    kinds = Counter(r.kind for r in hostile)
    assert set(kinds) == set(KINDS)
    for kind in KINDS[1:]:
        assert 0.02 < kinds[kind] / len(hostile) < 0.09, (kind, kinds[kind])


def test_not_json_values_fail_to_parse(hostile: list[SampleRecord]) -> None:
    bad = [r for r in hostile if r.kind == "not_json"]
    assert bad
    for rec in bad:
        with pytest.raises(ValueError):
            json.loads(rec.value)


def test_not_utf8_values_fail_to_decode(hostile: list[SampleRecord]) -> None:
    bad = [r for r in hostile if r.kind == "not_utf8"]
    assert bad
    for rec in bad:
        with pytest.raises(UnicodeDecodeError):
            rec.value.decode("utf-8")


def test_duplicates_repeat_an_earlier_record_byte_for_byte(hostile: list[SampleRecord]) -> None:
    earlier: dict[bytes, tuple[bytes | None, int]] = {}
    dups = 0
    for rec in hostile:
        if rec.kind == "duplicate":
            assert rec.value in earlier, "a duplicate repeats an earlier value"
            key, ts = earlier[rec.value]
            assert rec.key == key
            assert rec.timestamp_ms >= ts
            dups += 1
        else:
            earlier.setdefault(rec.value, (rec.key, rec.timestamp_ms))
    assert dups > 100


def test_unknown_types_are_well_formed_but_unknown(
    hostile: list[SampleRecord], clean: list[SampleRecord]
) -> None:
    known = {json.loads(r.value)["type"] for r in clean}
    unknown = [json.loads(r.value) for r in hostile if r.kind == "unknown_type"]
    assert unknown
    for doc in unknown:
        assert EVENT_TYPE.match(doc["type"])
        assert doc["type"] not in known
        assert isinstance(doc["object"], dict)
    assert any(d["type"].split(".")[0] not in KNOWN_CATEGORIES for d in unknown)
    assert any(d["type"].split(".")[0] in KNOWN_CATEGORIES for d in unknown), "new action"


def test_mutated_kinds_show_their_defect(hostile: list[SampleRecord]) -> None:
    for rec in hostile:
        if rec.kind in INJECTED or rec.kind == "ok":
            continue
        doc = json.loads(rec.value)
        obj = doc["object"]
        if rec.kind == "unknown_fields":
            assert set(doc) - {"id", "created_at", "type", "object", "webhook_id"}
            assert "metadata" in obj
        elif rec.kind == "missing_optional":
            assert "webhook_id" not in doc
        elif rec.kind == "empty_decimals":
            assert "" in _decimal_values(obj)
        elif rec.kind == "long_decimals":
            fractions = [v.partition(".")[2] for v in _decimal_values(obj) if v]
            assert any(20 <= len(f) <= 27 for f in fractions)
            assert all(len(f) <= 27 for f in fractions)
            assert all(Decimal(v) is not None for v in _decimal_values(obj) if v)


def test_awkward_cases_leave_the_clean_events_untouched(clean: list[SampleRecord]) -> None:
    # every record that is neither inserted nor held back stands for the next clean event
    # (late ones aside), byte-for-byte if ok
    records = list(notification_events(5_000, awkward=Awkward.all(0.05)))
    late = {json.loads(r.value)["id"] for r in records if r.kind == "late"}
    aligned = [r for r in records if r.kind not in INJECTED | {"late"}]
    originals = [r for r in clean if json.loads(r.value)["id"] not in late]
    assert len(aligned) > 3_500
    for rec, original in zip(aligned, originals, strict=False):
        assert rec.key == original.key
        assert rec.timestamp_ms == original.timestamp_ms
        if rec.kind == "ok":
            assert rec.value == original.value
        else:
            assert json.loads(rec.value)["id"] == json.loads(original.value)["id"]


def test_late_events_come_after_newer_events_about_the_same_order_byte_for_byte(
    clean: list[SampleRecord],
) -> None:
    records = list(notification_events(5_000, awkward=Awkward(late=0.05)))
    assert len(records) == 5_000
    by_id = {json.loads(r.value)["id"]: r for r in clean}
    late = [r for r in records if r.kind == "late"]
    assert 0.03 < len(late) / len(records) < 0.07
    overtaken = 0
    for i, rec in enumerate(records):
        if rec.kind != "late":
            continue
        doc = json.loads(rec.value)
        original = by_id[doc["id"]]
        assert (rec.key, rec.value) == (original.key, original.value)  # the same event, later
        assert rec.timestamp_ms >= original.timestamp_ms  # produced late: Kafka time moves on
        newer = [json.loads(r.value) for r in records[max(0, i - 400) : i]]
        overtaken += any(
            n["object"].get("id") == doc["object"].get("id") and n["created_at"] > doc["created_at"]
            for n in newer
            if doc["type"].startswith("ORDER.") and n["type"].startswith("ORDER.")
        )
    assert overtaken > 10, "some ORDER events arrive after a newer event about the same order"


def test_keying_by_event_spreads_one_order_life_cycle_over_partitions() -> None:
    records = list(notification_events(5_000, keys="event"))
    assert all(r.key == json.loads(r.value)["id"].encode() for r in records)
    partitions: dict[str, set[int]] = defaultdict(set)
    for r in records:
        doc = json.loads(r.value)
        if doc["type"].startswith("ORDER."):
            partitions[doc["object"]["id"]].add(zlib.crc32(r.key) % 6)
    assert sum(len(p) > 1 for p in partitions.values()) > len(partitions) / 2


def test_clean_default_has_no_awkward_records(clean: list[SampleRecord]) -> None:
    assert Awkward() == Awkward.NONE  # type: ignore[attr-defined]
    assert Awkward().total == 0
    assert {r.kind for r in clean} == {"ok"}


def test_awkward_rejects_impossible_rates() -> None:
    with pytest.raises(ValueError):
        Awkward(duplicates=-0.1)
    with pytest.raises(ValueError):
        Awkward.all(0.2)  # 8 cases x 0.2 > 1
    assert Awkward.all(0.1).total == pytest.approx(0.9)


# ---- prices -------------------------------------------------------------------------------


def test_price_updates_are_keyed_by_isin_with_consistent_quotes() -> None:
    records = list(price_events(5_000))
    previous = 0
    for rec in records:
        doc = json.loads(rec.value)
        assert set(doc) == {"instrument_id", "instrument_uuid", "bid", "ask", "last_trade",
                            "currency", "time"}  # fmt: skip
        assert rec.key == doc["instrument_id"].encode() and _isin_is_valid(doc["instrument_id"])
        assert uuid.UUID(doc["instrument_uuid"])
        bid, ask = Decimal(doc["bid"]), Decimal(doc["ask"])
        last = Decimal(doc["last_trade"]["price"])
        assert isinstance(doc["bid"], str) and bid < last < ask
        assert int(doc["last_trade"]["quantity"]) > 0
        assert RFC3339.match(doc["time"]) and RFC3339.match(doc["last_trade"]["time"])
        assert doc["last_trade"]["time"] <= doc["time"]
        assert rec.timestamp_ms >= previous
        previous = rec.timestamp_ms
    assert len({r.key for r in records}) >= 20


# ---- producer (librdkafka mock cluster, no broker) ----------------------------------------


def test_produce_sample_counts_every_delivered_record_and_hides_the_config(
    capfd: pytest.CaptureFixture[str],
) -> None:
    records = list(notification_events(3_000, awkward=Awkward.all(0.01)))
    config = {
        "bootstrap.servers": "unused:9092",
        "test.mock.num.brokers": "1",
        "sasl.username": "tenant",
        "sasl.password": "s3cret-should-never-show",
    }
    # the mock cluster cannot create topics through the admin API: it auto-creates them
    report = produce_sample(config, "notifications", records, create_topic=False)
    assert report.topic == "notifications"
    assert report.records == len(records) == sum(report.per_partition.values())
    assert report.bytes == sum(len(r.value) for r in records)
    assert len(report.per_partition) > 1
    assert report.seconds > 0
    out, err = capfd.readouterr()
    assert "s3cret" not in out + err + repr(report)


def test_produce_sample_raises_when_deliveries_fail() -> None:
    config = {
        "bootstrap.servers": "127.0.0.1:1",  # nothing listens there
        "message.timeout.ms": "200",
        "enable.idempotence": "false",
    }
    with pytest.raises(SampleProduceError, match="failed delivery"):
        produce_sample(config, "nowhere", notification_events(10), create_topic=False)


class _FakeAdmin:
    """Stands in for AdminClient: the topic already exists with 4 partitions."""

    def __init__(self, config: dict[str, str]) -> None:
        self.config = config

    def create_topics(self, topics: list[Any], **_: Any) -> dict[str, Future[None]]:
        from confluent_kafka import KafkaError, KafkaException

        future: Future[None] = Future()
        future.set_exception(KafkaException(KafkaError(KafkaError.TOPIC_ALREADY_EXISTS)))
        return {t.topic: future for t in topics}

    def list_topics(self, topic: str, **_: Any) -> SimpleNamespace:
        meta = SimpleNamespace(partitions={p: None for p in range(4)}, error=None)
        return SimpleNamespace(topics={topic: meta})


def test_produce_sample_refuses_an_existing_topic_with_other_partition_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import confluent_kafka.admin

    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", _FakeAdmin)
    with pytest.raises(SampleProduceError, match="exists with 4 partitions, expected 6"):
        produce_sample({"bootstrap.servers": "x:1"}, "t", [], partitions=6)
