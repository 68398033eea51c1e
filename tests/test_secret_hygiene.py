"""The SASL password and storage keys never leave the process: not in logs (ours or
librdkafka's, even at debug level), errors, Delta commits, table files, CLI output, Dagster's
event log or the config's repr. One run over SASL_SSL with recognisable secrets, then grep."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from deltalake import DeltaTable

from connectors import Stream, run_forward
from connectors.config import LakeportConfig
from connectors.errors import LakeportError
from dev.local_broker import LocalBroker
from pipelines.definitions import build_definitions
from tests.secure import PASSWORD, fresh_topic, load, produce, secure_broker, write_config

ROOT = Path(__file__).resolve().parent.parent
FAKE_KEY = "FAKE-aws-SECRET-key-DO-NOT-LEAK"
SECRETS = (PASSWORD, FAKE_KEY)
RECORDS = 600


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@dataclass
class Landed:
    """Everything a run left behind, to be searched for secrets."""

    config_path: Path
    config: LakeportConfig
    stream: Stream
    cli: dict[str, str]
    logs: str
    dagster_events: str


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Landed]:
    broker = secure_broker(tmp_path_factory.mktemp("secure_broker"))
    topic = fresh_topic("hygiene")
    produce(broker, topic, RECORDS)
    folder = tmp_path_factory.mktemp("hygiene")
    os.environ["FAKE_KEY"] = FAKE_KEY
    path = write_config(
        folder,
        broker,
        topic,
        connection={"options": {"broker.address.family": "v4", "debug": "security,broker,conf"}},
        lakehouse={"storage_options": {"aws_secret_access_key": "${FAKE_KEY}"}},
        time_partitions="hourly",
        time_partitions_start="2026-01-05",
    )
    config = load(path)
    stream = Stream.from_config(config, "events")

    cli = {
        "ingest": _lakeport(path, "-v", "ingest"),
        "status": _lakeport(path, "status"),
        "check-connection": _lakeport(path, "check-connection"),
    }
    logs = _debug_logs_of_a_second_run(stream, broker)

    # The forward ingestion job: its run, windows, observation and check events.
    result = build_definitions(path).resolve_job_def("events_ingest").execute_in_process()
    assert result.success
    events = "\n".join(f"{e!s}\n{e!r}" for e in result.all_events)
    events += f"\n{result.dagster_run.run_config!r}\n{result.dagster_run!r}"
    yield Landed(path, config, stream, cli, logs, events)
    os.environ.pop("FAKE_KEY", None)


def _lakeport(config: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "connectors.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout + proc.stderr


def _debug_logs_of_a_second_run(stream: Stream, broker: LocalBroker) -> str:
    """Every log record (ours and librdkafka's debug output) of a run with new records."""
    produce(broker, stream.topic + "_unused", 1)  # a second topic: exercises admin paths too
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        run_forward(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert any("rdkafka" in r.getMessage() for r in records)  # librdkafka debug lines seen
    return "\n".join(f"{r.name} {r.levelname} {r.getMessage()}" for r in records)


def test_cli_ingest_status_and_check_connection_output_hold_no_secret(landed: Landed) -> None:
    assert f"{RECORDS} rows" in landed.cli["ingest"]
    assert "events: ok" in landed.cli["check-connection"]
    for name, output in landed.cli.items():
        assert leaks(output) == [], name


def test_debug_logs_of_lakeport_and_librdkafka_hold_no_secret(landed: Landed) -> None:
    assert "sasl" in landed.logs.lower()  # the security debug context really was logged
    assert leaks(landed.logs) == []


def test_delta_commit_metadata_and_every_table_file_hold_no_secret(landed: Landed) -> None:
    table = DeltaTable(landed.stream.table.uri)
    assert table.to_pyarrow_table().num_rows == RECORDS
    assert leaks(repr(table.history())) == []
    files = [p for p in Path(landed.stream.table.uri).rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" for p in files) and any(p.suffix == ".parquet" for p in files)
    for path in files:
        data = path.read_bytes()
        assert not any(s.encode() in data for s in SECRETS), path


def test_dagster_event_log_and_run_config_hold_no_secret(landed: Landed) -> None:
    assert "ASSET_MATERIALIZATION" in landed.dagster_events
    assert leaks(landed.dagster_events) == []


def test_config_repr_and_dump_mask_the_password_and_storage_keys(landed: Landed) -> None:
    config = landed.config
    conn = config.connections["upvest"]
    assert conn.sasl_password is not None and conn.sasl_password.get_secret_value() == PASSWORD
    assert config.storage_options()["aws_secret_access_key"] == FAKE_KEY
    for text in (
        repr(config),
        str(config),
        repr(config.model_dump()),
        config.model_dump_json(),
    ):
        assert leaks(text) == []
        assert "**********" in text


def test_stream_repr_hides_storage_keys(landed: Landed) -> None:
    assert leaks(repr(landed.stream)) == []


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"bootstrap_servers": "127.0.0.1:1"}, "connection refused"),
        ({"ssl_ca_location": None}, "could not be verified with the system CA bundle"),
    ],
    ids=["closed-port", "untrusted-ca"],
)
def test_errors_of_failing_connections_hold_no_secret(
    landed: Landed, tmp_path: Path, override: dict[str, object], expected: str
) -> None:
    broker = secure_broker(tmp_path)
    path = write_config(
        tmp_path,
        broker,
        landed.stream.topic,
        connection=override,
        lakehouse={"storage_options": {"aws_secret_access_key": "${FAKE_KEY}"}},
    )
    stream = Stream.from_config(load(path), "events")
    with pytest.raises(LakeportError) as failed:
        run_forward(stream)
    assert expected in str(failed.value)
    for text in (str(failed.value), repr(failed.value), repr(failed.value.__context__)):
        assert leaks(text) == []
