"""The Dagster UI serves the code location: assets, checks, schedules and partitions show."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.config import LakeportConfig

ROOT = Path(__file__).resolve().parent.parent
QUERY = """
{
  assetNodes {
    assetKey { path }
    isPartitioned
    partitionKeys
    assetChecksOrError { ... on AssetChecks { checks { name } } }
  }
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes { name schedules { name cronSchedule } sensors { name } }
    }
  }
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    body = {"query": query}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.timeout(180)
def test_webserver_lists_stream_assets_checks_schedules_and_partitions(
    make_config: Callable[..., LakeportConfig], tmp_path: Path
) -> None:
    config = make_config(time_partitions="daily", time_partitions_start="2026-11-20")
    port = free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "LAKEPORT_CONFIG": str(config.base_dir / "lakeport.yaml"),
        "DAGSTER_HOME": str(home),
    }
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "webserver did not come up in 120 s"
                time.sleep(0.5)
        # The code location loads asynchronously after the server answers.
        while True:
            data = graphql(port, QUERY)["data"]
            if data["assetNodes"] or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()

    (node,) = data["assetNodes"]
    assert node["assetKey"]["path"] == ["events"]
    assert node["isPartitioned"] and node["partitionKeys"][:2] == ["2026-11-20", "2026-11-21"]
    checks = {c["name"] for c in node["assetChecksOrError"]["checks"]}
    assert checks == {
        "coverage_complete",
        "data_matches_ledger",
        "lag_below_threshold",
        "no_recent_dead_letters",
        "fresh",
    }
    schedules = {
        s["name"]: s["cronSchedule"]
        for repo in data["repositoriesOrError"]["nodes"]
        for s in repo["schedules"]
    }
    assert schedules.get("events_ingest_schedule") == "*/5 * * * *"
    sensors = {s["name"] for repo in data["repositoriesOrError"]["nodes"] for s in repo["sensors"]}
    assert sensors == {"events_lag_sensor", "events_ledger_sensor"}
    assert server.returncode is not None
