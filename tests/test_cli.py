"""The `lakeport` command as a user runs it: broker, produce, ingest, backfill, status, audit, query."""

import os
import socket
import subprocess
import sys
from pathlib import Path

from connectors.config import LakeportConfig

LAKEPORT = str(Path(sys.executable).parent / "lakeport")


def lakeport(
    *args: str, config: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    prefix = ["--config", str(config)] if config else []
    return subprocess.run(
        [LAKEPORT, *prefix, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_broker_start_status_stop_round_trip(tmp_path: Path) -> None:
    home, port = str(tmp_path / "broker"), free_port()
    started = lakeport("broker", "start", "--home", home, "--port", str(port))
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == f"127.0.0.1:{port}"
    assert lakeport("broker", "start", "--home", home).stdout.startswith("already running")
    status = lakeport("broker", "status", "--home", home)
    assert status.returncode == 0 and status.stdout.strip() == f"running: 127.0.0.1:{port}"
    assert lakeport("broker", "stop", "--home", home).stdout.strip() == "stopped"
    assert lakeport("broker", "status", "--home", home).returncode == 1


def test_produce_ingest_backfill_status_audit_and_query_from_the_shell(make_config) -> None:
    config: LakeportConfig = make_config()
    path = config.base_dir / "lakeport.yaml"
    produced = lakeport("produce-sample", "--stream", "events", "--count", "1200", config=path)
    assert produced.returncode == 0 and "produced 1200 notifications events" in produced.stdout

    ingested = lakeport("ingest", "--stream", "events", config=path)
    assert ingested.returncode == 0, ingested.stderr
    assert "events [forward]: 1200 rows, 0 dead letters" in ingested.stdout

    again = lakeport(
        "backfill",
        "--stream",
        "events",
        "--mode",
        "replace",
        "--partition",
        "0",
        "--partition",
        "1",
        "--from-offset",
        "0",
        "--to-offset",
        "50",
        config=path,
    )
    assert again.returncode == 0 and "events [replace]: 100 rows" in again.stdout

    status = lakeport("status", "--stream", "events", config=path)
    assert "partition 0: landed " in status.stdout and "holes 0; lag 0" in status.stdout
    audit = lakeport("audit", config=path)
    assert audit.returncode == 0 and audit.stdout.startswith(
        "events: ok (1200 rows, 0 dead letters)"
    )

    query = lakeport(
        "query", "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM events", config=path
    )
    assert query.returncode == 0 and query.stdout.split("\n")[1].split() == ["1200", "1200"]


def test_user_errors_are_one_line_with_exit_code_2(make_config) -> None:
    config: LakeportConfig = make_config()
    path = config.base_dir / "lakeport.yaml"
    unknown = lakeport("ingest", "--stream", "nope", config=path)
    assert unknown.returncode == 2
    assert (
        unknown.stderr.strip()
        == "lakeport: error: unknown stream 'nope'; configured streams: events"
    )
    half = lakeport(
        "backfill", "--stream", "events", "--mode", "fill", "--from-offset", "3", config=path
    )
    assert (
        half.returncode == 2
        and "go together" not in half.stdout
        and "lakeport: error:" in half.stderr
    )


def test_derive_audit_status_and_query_of_derived_tables_from_the_shell(make_config) -> None:
    from tests.test_derived import DERIVED

    config: LakeportConfig = make_config(derived={"orders": DERIVED["orders"]})
    path = config.base_dir / "lakeport.yaml"
    assert (
        lakeport("produce-sample", "--stream", "events", "--count", "900", config=path).returncode
        == 0
    )
    assert lakeport("ingest", config=path).returncode == 0

    derived = lakeport("derive", config=path)
    assert derived.returncode == 0, derived.stderr
    first, absorbed = derived.stdout.splitlines()[:2]
    assert first.startswith("orders: ") and " inserted, 0 updated, 0 deleted in 1 commits" in first
    assert absorbed.startswith("  absorbed: p0[0,")
    again = lakeport(
        "derive", "--table", "orders", "--partition", "2", "--from-offset", "0",
        "--to-offset", "50", config=path,
    )  # fmt: skip
    assert again.returncode == 0 and "  derived again: p2[0,50)" in again.stdout

    audit = lakeport("audit", config=path)
    assert audit.returncode == 0, audit.stdout
    assert "\norders: ok (" in audit.stdout
    status = lakeport("status", config=path)
    assert "  derived orders (table version 2): 0 raw offsets behind" in status.stdout
    query = lakeport(  # a string filter on a MERGE-written (string_view) table
        "query", "SELECT count(*) = count(DISTINCT id) FROM orders WHERE status <> 'X'", config=path
    )
    assert query.stdout.split("\n")[1].strip() == "True"

    unknown = lakeport("derive", "--table", "nope", config=path)
    assert (unknown.returncode, unknown.stderr.strip()) == (
        2,
        "lakeport: error: unknown derived table 'nope'; configured: orders",
    )
    half = lakeport("derive", "--from-offset", "3", config=path)
    assert (half.returncode, half.stderr.strip()) == (
        2,
        "lakeport: error: --partition, --from-offset and --to-offset go together",
    )
