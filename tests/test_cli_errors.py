"""Every failure a user can cause or meet at the command line ends in one clear line.

Each spec runs the `lakeport` CLI in a subprocess, as a user would, and asserts the exit code
(2 for an error), that stderr holds no traceback and at most a few lines, and the words of the
one `lakeport: error:` line: what went wrong and what fixes it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from dev.local_broker import LocalBroker
from tests.conftest import SCHEMAS
from tests.helpers import assert_one_line_error, lakeport_cli


def closed_port() -> int:
    """A port of 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def write_config(tmp_path: Path, kafka: LocalBroker) -> Callable[..., Path]:
    """A lakeport.yaml with one `events` stream; connection and stream keys as arguments."""

    def write(connection: dict[str, object] | None = None, **stream: object) -> Path:
        document = {
            "lakehouse": {"root": str(tmp_path / "lakehouse")},
            "connections": {
                "local": {"bootstrap_servers": kafka.bootstrap_servers, **(connection or {})}
            },
            "streams": {
                "events": {
                    "connection": "local",
                    "topic": f"cli_{tmp_path.name}",
                    "table": "events",
                    "schema_file": str(SCHEMAS / "upvest_notification.avsc"),
                    "idle_timeout_seconds": 5,
                    **stream,
                }
            },
        }
        path = tmp_path / "lakeport.yaml"
        path.write_text(yaml.safe_dump(document))
        return path

    return write


# --- librdkafka's own lines belong to -v ------------------------------------------------------


def test_an_unreachable_broker_is_one_line_without_librdkafka_log_lines(
    write_config: Callable[..., Path],
) -> None:
    port = closed_port()
    path = write_config({"bootstrap_servers": f"127.0.0.1:{port}"})
    quiet = lakeport_cli(path, "check-connection")
    assert_one_line_error(quiet, f"cannot reach 127.0.0.1:{port}: connection refused")
    assert quiet.stderr.count("\n") == 1 and "rdkafka" not in quiet.stderr

    verbose = lakeport_cli(path, "-v", "check-connection")
    assert verbose.returncode == 2
    assert "INFO FAIL [rdkafka#consumer-1]" in verbose.stderr  # the library's lines, on request


def test_producing_samples_prints_no_librdkafka_warnings(
    write_config: Callable[..., Path],
) -> None:
    # a consumer-only tuning option makes librdkafka warn once per producer (CONFWARN)
    path = write_config({"options": {"fetch.max.bytes": 1048576}})
    produced = lakeport_cli(path, "produce-sample", "--stream", "events", "--count", "50")
    assert produced.returncode == 0, produced.stderr
    assert produced.stdout.startswith("produced 50 notifications events")
    assert produced.stderr == ""
