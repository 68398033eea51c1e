"""An Avro topic (Confluent wire format, schema registry) end to end against the real broker."""

import json
from collections.abc import Callable
from pathlib import Path

import fastavro
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema
from deltalake import DeltaTable

from connectors import Stream, run_forward
from connectors.config import LakeportConfig
from connectors.coverage import audit
from connectors.decoders.avro import registry_client
from connectors.kafka_client import client_settings

V1 = {
    "type": "record",
    "name": "Trade",
    "namespace": "test",
    "fields": [
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {
            "name": "price",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 4},
        },
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    ],
}
V2 = {
    **V1,
    "fields": [*V1["fields"], {"name": "venue", "type": ["null", "string"], "default": None}],
}


def framed(schema_id: int, schema: dict, record: dict) -> bytes:
    import io

    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), record)
    return b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()


def test_two_schema_versions_interleaved_land_in_one_table_with_few_files_and_bad_frames_dead_lettered(
    make_config: Callable[..., LakeportConfig], tmp_path: Path
) -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    reader = tmp_path / "trade.avsc"
    reader.write_text(json.dumps(V2))
    url = f"mock://{tmp_path.name}"
    config = make_config(format="avro", schema_file=str(reader), schema_registry_url=url)
    stream = Stream.from_config(config, "events")
    registry = registry_client(url)
    id1 = registry.register_schema("trades-value", Schema(json.dumps(V1), "AVRO"))
    id2 = registry.register_schema("trades-value", Schema(json.dumps(V2), "AVRO"))

    settings = client_settings(stream.connection)
    admin = AdminClient(settings)
    admin.create_topics([NewTopic(stream.topic, 3, 1)])[stream.topic].result()
    producer = Producer(settings)
    at = datetime(2026, 11, 1, 12, tzinfo=UTC)
    for i in range(3000):
        record = {
            "id": f"00000000-0000-4000-8000-{i:012d}",
            "price": Decimal(f"{i}.1234"),
            "at": at,
        }
        value = framed(id2, V2, {**record, "venue": "XETRA"}) if i % 2 else framed(id1, V1, record)
        producer.produce(stream.topic, value=value, key=str(i % 7).encode())
    producer.produce(stream.topic, value=b"\x00" + (999).to_bytes(4, "big") + b"\x02", key=b"x")
    producer.produce(
        stream.topic,
        value=framed(id1, V1, {"id": "x", "price": Decimal(1), "at": at})[:-3],
        key=b"y",
    )
    producer.flush()

    report = run_forward(stream)

    table = DeltaTable(stream.table.uri)
    assert report.records == 3000 and report.dead == 2
    assert table.schema().to_arrow().names[-4:] == ["id", "price", "at", "venue"]
    assert len(table.file_uris()) <= 3
    rows = {r["id"]: r for r in table.to_pyarrow_table().to_pylist()}
    assert rows["00000000-0000-4000-8000-000000000001"]["venue"] == "XETRA"
    assert rows["00000000-0000-4000-8000-000000000002"]["venue"] is None
    assert rows["00000000-0000-4000-8000-000000000002"]["price"] == Decimal("2.1234")
    dead = {
        d["error_class"] for d in DeltaTable(stream.dead_letters.uri).to_pyarrow_table().to_pylist()
    }
    assert dead == {"unknown_schema_id", "avro_decode_error"}
    assert audit(stream).ok
