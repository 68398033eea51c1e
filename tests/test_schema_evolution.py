"""Schema changes: new columns merge in without failing; undecodable records follow the policy."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from deltalake import DeltaTable

from connectors import DecodeError, Stream, run_forward
from connectors.config import LakeportConfig
from connectors.kafka_client import client_settings
from connectors.ledger import read_ledger
from dev.sample_events import Awkward, notification_events, produce_sample

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "upvest_notification.avsc"


def produce(stream: Stream, count: int, seed: int, awkward: Awkward | None = None) -> None:
    produce_sample(
        client_settings(stream.connection),
        stream.topic,
        notification_events(count, seed=seed, awkward=awkward or Awkward()),
    )


def test_a_payload_field_added_to_the_schema_becomes_a_nullable_column_without_rewriting(
    make_config: Callable[..., LakeportConfig], tmp_path: Path
) -> None:
    schema = tmp_path / "evolving.avsc"
    schema.write_text(SCHEMA.read_text())
    config = make_config(schema_file=str(schema))
    stream = Stream.from_config(config, "events")
    produce(stream, 1000, seed=1)
    run_forward(stream)
    files_before = set(DeltaTable(stream.table.uri).file_uris())

    avsc = json.loads(schema.read_text())
    avsc["fields"].append(
        {
            "name": "object_side",
            "type": ["null", "string"],
            "default": None,
            "lakeport.path": "$.object.side",
        }
    )
    schema.write_text(json.dumps(avsc))
    evolved = Stream.from_config(config, "events")
    produce(evolved, 1000, seed=2)
    report = run_forward(evolved)

    table = DeltaTable(evolved.table.uri)
    assert report.records + report.dead == 1000 and report.commits == 1
    assert "object_side" in table.schema().to_arrow().names
    assert files_before <= set(table.file_uris())  # old files untouched: no rewrite
    rows = table.to_pyarrow_table(columns=["kafka_offset", "type", "object_side"]).to_pylist()
    new_orders = [r for r in rows if r["object_side"] is not None]
    assert new_orders and all(r["object_side"] in ("BUY", "SELL") for r in new_orders)
    assert sum(p.records for p in read_ledger(table, evolved.topic).partitions.values()) == 2000


def test_a_stream_that_fails_on_decode_errors_stops_before_committing_the_batch(
    make_config: Callable[..., LakeportConfig],
) -> None:
    stream = Stream.from_config(make_config(on_decode_error="fail"), "events")
    produce(stream, 500, seed=3, awkward=Awkward(not_json=0.02))
    with pytest.raises(
        DecodeError,
        match=r"do not decode, first at partition \d+ offset \d+: not_(json_object|utf8)",
    ):
        run_forward(stream)
    table = DeltaTable(stream.table.uri)
    assert table.count() == 0
    assert all(not p.covered for p in read_ledger(table, stream.topic).partitions.values())
