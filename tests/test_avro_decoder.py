"""AvroDecoder: Confluent-framed and schemaless Avro into one table schema, bad records dead-lettered.

No broker needed: raw micro-batches are built in the reader's RAW_SCHEMA shape, the Schema
Registry is confluent-kafka's in-memory mock.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import fastavro
import pyarrow as pa
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from deltalake import DeltaTable, write_deltalake

from connectors.config import StreamConfig
from connectors.decoders.avro import AvroDecoder
from connectors.reader import RAW_SCHEMA
from connectors.table_schema import StreamSchema, load_schema

UTC = dt.UTC

ALL_TYPES: dict[str, Any] = {
    "type": "record",
    "name": "AllTypes",
    "namespace": "lakeport.test",
    "fields": [
        {"name": "f_boolean", "type": "boolean"},
        {"name": "f_int", "type": "int"},
        {"name": "f_long", "type": "long"},
        {"name": "f_float", "type": "float"},
        {"name": "f_double", "type": "double"},
        {"name": "f_bytes", "type": "bytes"},
        {"name": "f_string", "type": "string"},
        {"name": "f_fixed", "type": {"type": "fixed", "name": "Four", "size": 4}},
        {"name": "f_enum", "type": {"type": "enum", "name": "Side", "symbols": ["BUY", "SELL"]}},
        {
            "name": "f_record",
            "type": {
                "type": "record",
                "name": "Inner",
                "fields": [
                    {"name": "a", "type": "int"},
                    {"name": "b", "type": ["null", "string"], "default": None},
                    {
                        "name": "at",
                        "type": {"type": "long", "logicalType": "timestamp-micros"},
                    },
                ],
            },
        },
        {"name": "f_array", "type": {"type": "array", "items": "long"}},
        {"name": "f_map", "type": {"type": "map", "values": "double"}},
        {"name": "f_nullable", "type": ["null", "string"], "default": None},
        {
            "name": "f_decimal",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 9},
        },
        {"name": "f_date", "type": {"type": "int", "logicalType": "date"}},
        {"name": "f_ts_millis", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "f_ts_micros", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "f_uuid", "type": {"type": "string", "logicalType": "uuid"}},
    ],
}


def _value(i: int) -> dict[str, Any]:
    return {
        "f_boolean": i % 2 == 0,
        "f_int": -(2**31) + i,
        "f_long": 2**62 + i,
        "f_float": 1.5 + i,
        "f_double": 1 / 3 + i,
        "f_bytes": bytes([0, 255, i % 256]),
        "f_string": f"grüße {i}",
        "f_fixed": b"\x00\x01\x02" + bytes([i % 256]),
        "f_enum": "SELL" if i % 2 else "BUY",
        "f_record": {
            "a": i,
            "b": None if i % 2 else "x",
            "at": dt.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        },
        "f_array": [i, -i, 2**40],
        "f_map": {"k": 0.25, f"k{i}": float(i)},
        "f_nullable": None if i % 2 else "present",
        "f_decimal": Decimal(f"-12345678901234567890123456789.12345678{i % 10}"),
        "f_date": dt.date(1969, 12, 31) + dt.timedelta(days=i),
        "f_ts_millis": dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        "f_ts_micros": dt.datetime(1960, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        "f_uuid": str(uuid.UUID(int=i + 1)),
    }


def _schema_file(tmp_path: Path, avro: dict[str, Any]) -> StreamSchema:
    path = tmp_path / f"{avro['name']}.avsc"
    path.write_text(json.dumps(avro))
    return load_schema(path)


def _config(framing: str = "confluent") -> StreamConfig:
    return StreamConfig(
        connection="local",
        topic="events",
        table="events",
        format="avro",
        schema_file="events.avsc",
        avro_framing=framing,  # type: ignore[arg-type]
    )


@pytest.fixture
def registry() -> SchemaRegistryClient:
    return SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4().hex}"})


def _register(registry: SchemaRegistryClient, subject: str, avro: dict[str, Any]) -> int:
    return registry.register_schema(subject, Schema(json.dumps(avro), "AVRO"))


def _body(avro: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(avro), record)
    return out.getvalue()


def _framed(schema_id: int, body: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + body


def _raw(values: list[bytes | None]) -> pa.Table:
    at = dt.datetime(2026, 1, 1, tzinfo=UTC)
    return pa.Table.from_pylist(
        [
            {
                "kafka_topic": "events",
                "kafka_partition": 0,
                "kafka_offset": i,
                "kafka_timestamp": at,
                "kafka_key": None,
                "kafka_headers": [],
                "value": v,
            }
            for i, v in enumerate(values)
        ],
        schema=RAW_SCHEMA,
    )


def test_every_avro_type_round_trips_through_delta_and_duckdb(
    tmp_path: Path, registry: SchemaRegistryClient
) -> None:
    schema = _schema_file(tmp_path, ALL_TYPES)
    schema_id = _register(registry, "events-value", ALL_TYPES)
    sent = [_value(i) for i in range(4)]
    raw = _raw([_framed(schema_id, _body(ALL_TYPES, v)) for v in sent])

    decoded = AvroDecoder(schema, _config(), registry).decode(raw)

    assert decoded.dead.num_rows == 0
    assert decoded.rows.schema == schema.arrow
    path = str(tmp_path / "table")
    write_deltalake(path, decoded.rows)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("t", DeltaTable(path).to_pyarrow_dataset())
    cursor = con.execute("SELECT * FROM t ORDER BY kafka_offset")
    names = [d[0] for d in cursor.description]
    got = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for want, row in zip(sent, got, strict=True):
        for name, value in want.items():
            out = row[name]
            if isinstance(out, dt.datetime) or name == "f_record":
                out = _utc(out)
            if name == "f_map":
                out = dict(out)
            assert out == (value if name != "f_record" else _utc(value)), name


def _utc(value: Any) -> Any:
    """DuckDB returns TIMESTAMPTZ in the session zone (UTC here): compare as UTC instants."""
    if isinstance(value, dict):
        return {k: _utc(v) for k, v in value.items()}
    if isinstance(value, dt.datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value


V1 = {
    "type": "record",
    "name": "Order",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "qty", "type": "int"},
        {"name": "legacy", "type": "string"},
    ],
}
V2 = {
    "type": "record",
    "name": "Order",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "qty", "type": "long"},
        {"name": "note", "type": "string", "default": "n/a"},
        {"name": "venue", "type": ["null", "string"], "default": None},
    ],
}


def test_two_writer_versions_interleaved_land_in_one_table_with_defaults(
    tmp_path: Path, registry: SchemaRegistryClient
) -> None:
    schema = _schema_file(tmp_path, V2)
    v1 = _register(registry, "orders-value", V1)
    v2 = _register(registry, "orders-other-value", V2)
    values = [
        _framed(v1, _body(V1, {"id": "a", "qty": 1, "legacy": "dropped"})),
        _framed(v2, _body(V2, {"id": "b", "qty": 2**40, "note": "hi", "venue": "XETRA"})),
        _framed(v1, _body(V1, {"id": "c", "qty": 3, "legacy": "dropped"})),
    ]

    decoded = AvroDecoder(schema, _config(), registry).decode(_raw(values))

    assert decoded.dead.num_rows == 0
    assert decoded.rows.schema == schema.arrow
    assert decoded.rows.select(["kafka_offset", "id", "qty", "note", "venue"]).to_pylist() == [
        {"kafka_offset": 0, "id": "a", "qty": 1, "note": "n/a", "venue": None},
        {"kafka_offset": 1, "id": "b", "qty": 2**40, "note": "hi", "venue": "XETRA"},
        {"kafka_offset": 2, "id": "c", "qty": 3, "note": "n/a", "venue": None},
    ]


def _dead(decoded_dead: pa.Table) -> list[tuple[int, str, bytes]]:
    return [
        (r["kafka_offset"], r["error_class"], r["value"])
        for r in decoded_dead.select(["kafka_offset", "error_class", "value"]).to_pylist()
    ]


def test_bad_records_become_dead_letters_with_their_raw_bytes_and_the_rest_decode(
    tmp_path: Path, registry: SchemaRegistryClient
) -> None:
    schema = _schema_file(tmp_path, V2)
    good_id = _register(registry, "orders-value", V2)
    incompatible = {
        "type": "record",
        "name": "Order",
        "fields": [{"name": "id", "type": "string"}, {"name": "qty", "type": "string"}],
    }
    bad_id = _register(registry, "elsewhere-value", incompatible)
    good = _framed(good_id, _body(V2, {"id": "ok", "qty": 7, "note": "x", "venue": None}))
    values = [
        good,
        good[:-3],  # truncated body
        _framed(good_id + 1000, good[5:]),  # schema id nobody registered
        b"\x01" + good[1:],  # wrong magic byte
        b"\x00\x00",  # too short for a schema id
        _framed(bad_id, _body(incompatible, {"id": "s", "qty": "seven"})),
        None,  # tombstone
        good,
    ]

    decoded = AvroDecoder(schema, _config(), registry).decode(_raw(values))

    assert decoded.rows.column("kafka_offset").to_pylist() == [0, 7]
    assert decoded.rows.column("qty").to_pylist() == [7, 7]
    assert _dead(decoded.dead) == [
        (1, "avro_decode_error", values[1]),
        (2, "unknown_schema_id", values[2]),
        (3, "not_confluent_framed", values[3]),
        (4, "not_confluent_framed", values[4]),
        (5, "incompatible_schema", values[5]),
        (6, "null_value", None),
    ]
    messages = decoded.dead.column("error_message").to_pylist()
    assert str(good_id + 1000) in messages[1]
    assert f"schema id {bad_id}" in messages[4]


def test_a_corrupt_body_in_a_large_group_only_dead_letters_that_record(
    tmp_path: Path, registry: SchemaRegistryClient
) -> None:
    schema = _schema_file(tmp_path, V2)
    schema_id = _register(registry, "orders-value", V2)
    values: list[bytes | None] = [
        _framed(schema_id, _body(V2, {"id": f"r{i}", "qty": i, "note": "n", "venue": None}))
        for i in range(1000)
    ]
    values[500] = _framed(schema_id, b"\x00\xff\xff\xff\xff\xff\xff")  # garbage body

    decoded = AvroDecoder(schema, _config(), registry).decode(_raw(values))

    assert decoded.rows.num_rows == 999
    assert 500 not in decoded.rows.column("qty").to_pylist()
    assert _dead(decoded.dead) == [(500, "avro_decode_error", values[500])]


def test_schemaless_framing_decodes_bodies_written_with_the_reader_schema(
    tmp_path: Path,
) -> None:
    schema = _schema_file(tmp_path, ALL_TYPES)
    sent = [_value(i) for i in range(3)]
    values: list[bytes | None] = [_body(ALL_TYPES, v) for v in sent]

    decoded = AvroDecoder(schema, _config("schemaless")).decode(_raw([*values, b"\x02"]))

    assert decoded.rows.column("f_uuid").to_pylist() == [v["f_uuid"] for v in sent]
    assert decoded.rows.column("f_decimal").to_pylist() == [v["f_decimal"] for v in sent]
    assert decoded.rows.column("f_ts_millis").to_pylist() == [v["f_ts_millis"] for v in sent]
    assert decoded.rows.column("f_record").to_pylist() == [v["f_record"] for v in sent]
    assert decoded.dead.column("error_class").to_pylist() == ["avro_decode_error"]


def test_confluent_framing_without_a_registry_is_a_config_error(tmp_path: Path) -> None:
    schema = _schema_file(tmp_path, V2)
    with pytest.raises(ValueError, match="schema_registry_url"):
        AvroDecoder(schema, _config())


def test_a_decimal_beyond_the_reader_precision_is_a_bad_value_not_a_failed_batch(
    tmp_path: Path, registry: SchemaRegistryClient
) -> None:
    def price(precision: int) -> dict[str, Any]:
        logical = {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": 2}
        return {"type": "record", "name": "P", "fields": [{"name": "price", "type": logical}]}

    schema = _schema_file(tmp_path, price(4))
    schema_id = _register(registry, "prices-value", price(38))
    values: list[bytes | None] = [
        _framed(schema_id, _body(price(38), {"price": Decimal(p)})) for p in ("12.34", "123456.78")
    ]

    decoded = AvroDecoder(schema, _config(), registry).decode(_raw(values))

    assert decoded.rows.column("price").to_pylist() == [Decimal("12.34")]
    assert _dead(decoded.dead) == [(1, "bad_value", values[1])]


COLUMNAR = {**ALL_TYPES, "fields": [f for f in ALL_TYPES["fields"] if f["name"] != "f_map"]}


def _without_map(i: int) -> dict[str, Any]:
    return {k: v for k, v in _value(i).items() if k != "f_map"}


def test_bulk_reader_and_fastavro_decode_every_map_free_type_to_the_same_rows(
    tmp_path: Path, registry: SchemaRegistryClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = _schema_file(tmp_path, COLUMNAR)
    schema_id = _register(registry, "events-value", COLUMNAR)
    raw = _raw([_framed(schema_id, _body(COLUMNAR, _without_map(i))) for i in range(300)])

    def no_fastavro(*args: object) -> None:
        raise AssertionError("a clean batch of a map-free schema must not need fastavro")

    with monkeypatch.context() as patched:
        patched.setattr(AvroDecoder, "_decode_group", no_fastavro)
        bulk = AvroDecoder(schema, _config(), registry).decode(raw)
    with monkeypatch.context() as patched:
        patched.setattr("connectors.decoders.avro.ColumnarReader.for_schemas", lambda *a: None)
        by_record = AvroDecoder(schema, _config(), registry).decode(raw)

    assert bulk.dead.num_rows == by_record.dead.num_rows == 0
    assert bulk.rows.equals(by_record.rows)
    assert bulk.rows.column("f_decimal").to_pylist() == [
        _value(i)["f_decimal"] for i in range(300)
    ]  # 38 digits, exact (Polars' own decimal reading would round through a float)


@pytest.mark.parametrize(
    "damage",
    ["truncated last body", "extra byte after the last body", "truncated middle body"],
)
def test_bulk_reader_leaves_a_damaged_block_to_fastavro_which_names_the_bad_record(
    tmp_path: Path, registry: SchemaRegistryClient, damage: str
) -> None:
    schema = _schema_file(tmp_path, V2)
    schema_id = _register(registry, "orders-value", V2)
    bodies = [_body(V2, {"id": f"r{i}", "qty": i, "note": "n", "venue": None}) for i in range(500)]
    bad = 499 if "last" in damage else 250
    bodies[bad] = bodies[bad] + b"\x00" if "extra" in damage else bodies[bad][:-3]
    values: list[bytes | None] = [_framed(schema_id, b) for b in bodies]

    decoded = AvroDecoder(schema, _config(), registry).decode(_raw(values))

    assert decoded.rows.column("qty").to_pylist() == [i for i in range(500) if i != bad]
    assert _dead(decoded.dead) == [(bad, "avro_decode_error", values[bad])]
