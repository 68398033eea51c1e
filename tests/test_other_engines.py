"""Tables that another engine touched stay readable: Spark's deletion vectors and deleted rows.

`tests/fixtures/deletion_vectors/events` is a lakeport table of the records `fixture_records()`
produces (300 sample notifications, record i in partition i % 3, topic `FIXTURE_TOPIC`), in
which Spark then enabled deletion vectors and deleted partition 0's offsets [10, 20) (see
tests/fixtures/deletion_vectors/README.md). pyarrow's dataset refuses such a table; lakeport
reads it through delta-rs' own scan. The live variant runs Spark itself when pyspark is there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Producer

from connectors import Stream, client_settings, load_config
from dev.local_broker import LocalBroker
from dev.sample_events import SampleRecord, notification_events
from tests.conftest import SCHEMAS
from tests.helpers import ROOT, broker_pairs, data_pairs, ensure_topic, lakeport_cli

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "deletion_vectors" / "events"
FIXTURE_TOPIC = "lakeport_dv_fixture"
DELETED = "kafka_partition = 0 AND kafka_offset >= 10 AND kafka_offset < 20"


def fixture_records() -> Iterator[tuple[int, SampleRecord]]:
    """(partition, record) of the fixture's topic: the same bytes on every run."""
    for i, record in enumerate(notification_events(300, seed=11)):
        yield i % 3, record


def produce_fixture_topic(stream: Stream) -> None:
    ensure_topic(stream, partitions=3)
    producer = Producer(client_settings(stream.connection))
    for partition, r in fixture_records():
        producer.produce(
            stream.topic, r.value, r.key, partition=partition, timestamp=r.timestamp_ms
        )
    assert producer.flush(30) == 0


def write_config(folder: Path, broker: LocalBroker, topic: str) -> Path:
    document = {
        "lakehouse": {"root": str(folder / "lakehouse")},
        "connections": {"local": {"bootstrap_servers": broker.bootstrap_servers}},
        "streams": {
            "events": {
                "connection": "local",
                "topic": topic,
                "table": "events",
                "schema_file": str(SCHEMAS / "upvest_notification.avsc"),
                "batch_records": 100,
                "idle_timeout_seconds": 5,
            }
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lakeport.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def assert_lakeport_reads_and_backfills_a_table_with_deletion_vectors(path: Path) -> None:
    """audit names the deleted rows, query sees the table as Spark left it, a replace backfill
    brings the rows back once, and status goes on."""
    stream = Stream.from_config(load_config(path), "events")
    audited = lakeport_cli(path, "audit")
    assert audited.returncode == 1, audited.stdout + audited.stderr  # a finding, not a crash
    assert "Traceback" not in audited.stderr
    assert "partition 0: ledger records 100 (0 dead letters) but the data holds 90" in (
        audited.stdout
    )
    counted = lakeport_cli(
        path, "query", "SELECT count(*) AS n FROM events WHERE kafka_partition = 0"
    )
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.split()[1] == "90"

    replaced = lakeport_cli(path, "backfill", "--stream", "events", "--mode", "replace",
                            "--partition", "0", "--from-offset", "0", "--to-offset", "100")  # fmt: skip
    assert replaced.returncode == 0, replaced.stderr
    assert "events [replace]: 100 rows" in replaced.stdout
    assert sorted(data_pairs(stream)) == sorted(broker_pairs(stream))  # back, each once
    # The ledger's count keeps the 10 records Spark deleted behind its back (it counts per
    # partition, not per window), so audit still names the difference rather than hide it.
    again = lakeport_cli(path, "audit")
    assert "partition 0: ledger records 110 (0 dead letters) but the data holds 100" in (
        again.stdout
    )
    status = lakeport_cli(path, "status")
    assert status.returncode == 0 and "partition 1: landed 100 rows" in status.stdout


def test_a_table_with_spark_deletion_vectors_is_audited_queried_and_backfilled(
    kafka: LocalBroker, tmp_path: Path
) -> None:
    path = write_config(tmp_path, kafka, FIXTURE_TOPIC)
    shutil.copytree(FIXTURE, tmp_path / "lakehouse" / "events")
    produce_fixture_topic(Stream.from_config(load_config(path), "events"))
    assert_lakeport_reads_and_backfills_a_table_with_deletion_vectors(path)


# A Python with the `spark` extra: this one by default, or another venv's.
SPARK_PYTHON = os.environ.get("LAKEPORT_SPARK_PYTHON", sys.executable)


def _spark_missing() -> bool:
    found = subprocess.run([SPARK_PYTHON, "-c", "import pyspark, delta"], capture_output=True)
    return found.returncode != 0


@pytest.mark.spark
@pytest.mark.skipif(_spark_missing(), reason="needs pyspark + delta-spark (the `spark` extra)")
def test_live_spark_deletes_with_deletion_vectors_and_sees_lakeport_summaries(
    kafka: LocalBroker, tmp_path: Path
) -> None:
    path = write_config(tmp_path, kafka, "lakeport_dv_live")
    produce_fixture_topic(Stream.from_config(load_config(path), "events"))
    assert lakeport_cli(path, "ingest").returncode == 0
    spark = subprocess.run(
        [
            SPARK_PYTHON,
            str(ROOT / "dev" / "spark_deletion_vectors.py"),
            str(tmp_path / "lakehouse" / "events"),
            "--delete",
            DELETED,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert spark.returncode == 0, spark.stderr[-3000:]
    history = [line.split("\t") for line in spark.stdout.splitlines()]
    assert history[-1][1] == "DELETE"
    assert history[1][2] == "lakeport forward of topic 'lakeport_dv_live': p0[0,100)"
    assert_lakeport_reads_and_backfills_a_table_with_deletion_vectors(path)
