"""Outages during a run: the broker dies, the table folder turns read-only, the bootstrap is
unreachable. Each ends in a clear error or a resumed run, never in a partial commit, and the
next run lands every record exactly once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from deltalake import DeltaTable

from connectors import AccessDenied, Stream, run_forward
from connectors.config import load_config
from connectors.coverage import audit
from connectors.errors import LakeportError
from connectors.ledger import read_ledger
from dev.local_broker import LocalBroker
from dev.sample_events import notification_events, produce_sample
from tests.secure import SCHEMAS, create_topic, fresh_topic

ROOT = Path(__file__).resolve().parent.parent
RECORDS = 12_000


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker of its own: these tests kill it."""
    own = LocalBroker(home=tmp_path_factory.mktemp("outage_broker"))
    own.start()
    yield own
    own.stop()


def write_stream(folder: Path, bootstrap: str, topic: str, **keys: object) -> Path:
    stream = {
        "connection": "local",
        "topic": topic,
        "table": "events",
        "schema_file": str(SCHEMAS / "upvest_notification.avsc"),
        "batch_records": 500,
        **keys,
    }
    document = {
        "lakehouse": {"root": str(folder / "lakehouse")},
        "connections": {
            "local": {
                "bootstrap_servers": bootstrap,
                # A small prefetch, as against a real topic far larger than the consumer's
                # buffer: otherwise the whole test topic is fetched before the outage starts.
                "options": {
                    "queued.min.messages": "200",
                    "max.partition.fetch.bytes": "65536",
                    "fetch.max.bytes": "1048576",
                },
            }
        },
        "streams": {"events": stream},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lakeport.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def loaded_stream(broker: LocalBroker, tmp_path: Path) -> Callable[..., tuple[Stream, int]]:
    """A stream over a topic with RECORDS sample events (enough for a run of a few seconds)."""

    def make(**keys: object) -> tuple[Stream, int]:
        topic = fresh_topic("outage")
        create_topic(broker, topic, partitions=3)
        produce_sample(broker.client_config(), topic, notification_events(RECORDS), partitions=3)
        path = write_stream(tmp_path, broker.bootstrap_servers, topic, **keys)
        return Stream.from_config(load_config(path), "events"), RECORDS

    return make


def commits(stream: Stream) -> int:
    log = Path(stream.table.uri) / "_delta_log"
    return len(list(log.glob("*.json"))) if log.is_dir() else 0


def when_commits(stream: Stream, at_least: int, action: Callable[[], None]) -> threading.Thread:
    """Run `action` in a thread once the table has `at_least` commits (mid-run)."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while commits(stream) < at_least and time.monotonic() < deadline:
            time.sleep(0.01)
        action()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def positions(stream: Stream) -> list[tuple[int, int]]:
    table = DeltaTable(stream.table.uri).to_pyarrow_table(
        columns=["kafka_partition", "kafka_offset"]
    )
    return sorted(
        zip(table["kafka_partition"].to_pylist(), table["kafka_offset"].to_pylist(), strict=True)
    )


def assert_ledger_matches_rows(stream: Stream) -> None:
    """The ledger covers exactly the offsets in the table, each once (no partial commit)."""
    result = audit(stream)
    assert result.ok, result.problems
    ledger = read_ledger(DeltaTable(stream.table.uri), stream.topic)
    covered = sorted(
        (p, o)
        for p, part in ledger.partitions.items()
        for s, e in part.covered
        for o in range(s, e)
    )
    assert positions(stream) == covered


def test_broker_killed_and_restarted_mid_run_resumes_and_lands_each_record_once(
    loaded_stream: Callable[..., tuple[Stream, int]], broker: LocalBroker
) -> None:
    stream, total = loaded_stream(idle_timeout_seconds=40)

    def bounce() -> None:
        broker.kill()
        time.sleep(1)
        broker.start()

    thread = when_commits(stream, 4, bounce)
    report = run_forward(stream)
    thread.join(60)

    assert broker.is_running()
    assert report.records == total
    assert len(positions(stream)) == total and len(set(positions(stream))) == total
    assert_ledger_matches_rows(stream)


def test_broker_gone_for_good_fails_with_a_clear_error_and_keeps_committed_batches(
    loaded_stream: Callable[..., tuple[Stream, int]], broker: LocalBroker
) -> None:
    stream, total = loaded_stream(idle_timeout_seconds=3)
    thread = when_commits(stream, 4, broker.kill)
    began = time.monotonic()
    try:
        with pytest.raises(LakeportError) as failed:
            run_forward(stream)
        elapsed = time.monotonic() - began
        thread.join(30)
        message = str(failed.value)
        assert f"cannot reach {broker.bootstrap_servers}: connection refused" in message
        assert elapsed < 30  # idle timeout 3 s + mirror check 5 s + metadata 10 s
        landed = positions(stream)
        assert 0 < len(landed) < total
        assert_ledger_matches_rows(stream)
    finally:
        broker.start()

    report = run_forward(stream)
    assert report.records == total - len(landed)
    assert len(positions(stream)) == total and len(set(positions(stream))) == total
    assert_ledger_matches_rows(stream)


@contextmanager
def read_only(folder: Path) -> Iterator[Callable[[], None]]:
    """Yield a function that makes `folder` unwritable, even for root; undone on exit.

    As root chmod does not stop writes, so use the immutable attribute (chattr +i); an
    unprivileged user gets chmod a-w.
    """
    as_root = os.geteuid() == 0
    if as_root and shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a folder unwritable")

    def freeze() -> None:
        if as_root:
            subprocess.run(["chattr", "+i", str(folder)], check=True, capture_output=True)
        else:
            folder.chmod(0o555)

    try:
        yield freeze
    finally:
        if as_root:
            subprocess.run(["chattr", "-i", str(folder)], check=False, capture_output=True)
        else:
            folder.chmod(0o755)


def test_delta_log_turning_read_only_mid_run_fails_clearly_and_leaves_a_sound_table(
    loaded_stream: Callable[..., tuple[Stream, int]],
) -> None:
    stream, total = loaded_stream(idle_timeout_seconds=5)
    stream.table.open()  # create the table, so its _delta_log exists to be frozen
    log = Path(stream.table.uri) / "_delta_log"
    probe = log / "probe"
    with read_only(log) as freeze:
        try:
            freeze()
            probe.write_text("x")
        except OSError:
            pass
        else:
            pytest.skip("this file system ignores the immutable attribute")
    with read_only(log) as freeze:
        thread = when_commits(stream, 4, freeze)
        with pytest.raises(AccessDenied, match="cannot write to table") as failed:
            run_forward(stream)
        thread.join(30)
        assert "Operation not permitted" in str(failed.value) or "ermission" in str(failed.value)
        frozen_at = commits(stream)
    assert frozen_at >= 4
    DeltaTable(stream.table.uri)  # still loads
    landed = positions(stream)
    assert 0 < len(landed) < total
    assert_ledger_matches_rows(stream)

    report = run_forward(stream)
    assert report.records == total - len(landed)
    assert len(set(positions(stream))) == len(positions(stream)) == total
    assert_ledger_matches_rows(stream)


def test_unreachable_bootstrap_fails_lakeport_ingest_within_15_s_with_exit_code_2(
    tmp_path: Path,
) -> None:
    path = write_stream(tmp_path, "127.0.0.1:1", "nowhere")
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "connectors.cli", "--config", str(path), "ingest"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    elapsed = time.monotonic() - began
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "lakeport: error: cannot read metadata of topic 'nowhere' from 127.0.0.1:1: no answer"
        " within 10 s: cannot reach 127.0.0.1:1: connection refused; check bootstrap_servers"
    )
    assert elapsed < 15
    assert not (tmp_path / "lakehouse" / "events").exists()  # nothing half-created
