"""Every failure a user can cause or meet at the command line ends in one clear line.

Each spec runs the `lakeport` CLI in a subprocess, as a user would, and asserts the exit code
(2 for an error), that stderr holds no traceback and at most a few lines, and the words of the
one `lakeport: error:` line: what went wrong and what fixes it.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Producer

from connectors import Stream, client_settings, load_config
from connectors.cli import build_parser
from dev.local_broker import LocalBroker
from dev.sample_events import Awkward, notification_events, produce_sample
from tests.conftest import SCHEMAS
from tests.helpers import (
    ROOT,
    assert_one_line_error,
    closed_port,
    data_pairs,
    delete_records,
    ensure_topic,
    lakeport_cli,
    ledger,
    produce,
)


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


def test_producing_samples_prints_no_librdkafka_warnings(
    write_config: Callable[..., Path],
) -> None:
    # a consumer-only tuning option makes librdkafka warn once per producer (CONFWARN)
    path = write_config({"options": {"fetch.max.bytes": 1048576}})
    produced = lakeport_cli(path, "produce-sample", "--stream", "events", "--count", "50")
    assert produced.returncode == 0, produced.stderr
    assert produced.stdout.startswith("produced 50 notifications events")
    assert produced.stderr == ""

    verbose = lakeport_cli(path, "-v", "produce-sample", "--stream", "events", "--count", "5")
    assert verbose.returncode == 0, verbose.stderr
    assert "INFO CONFWARN [rdkafka#producer-" in verbose.stderr  # the library's lines, with -v


# --- ordinary mistakes: one line, exit 2 -------------------------------------------------------


@pytest.fixture
def landed(write_config: Callable[..., Path], kafka: LocalBroker) -> tuple[Path, dict[int, int]]:
    """A stream with 600 clean records on 3 partitions, ingested; (config, records per partition)."""
    path = write_config()
    config = load_config(path)
    stream = Stream.from_config(config, "events")
    per = produce(stream, 600, partitions=3)
    assert lakeport_cli(path, "ingest").returncode == 0
    return path, per


def test_query_with_an_unknown_table_names_the_tables_there_are(landed) -> None:
    path, _ = landed
    typo = lakeport_cli(path, "query", "SELECT count(*) FROM event")
    line = assert_one_line_error(
        typo,
        "query: Catalog Error: Table with name event does not exist!",
        "(tables: events); check the SQL",
    )
    assert "LINE 1" not in line
    syntax = lakeport_cli(path, "query", "SELECT count(*) FORM events")
    assert_one_line_error(syntax, 'query: Parser Error: syntax error at or near "events"')


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["--partition", "0", "--from-offset", "200", "--to-offset", "100"],
            ["--from-offset 200 --to-offset 100 is an empty or reversed window"],
        ),
        (
            ["--from", "yesterday", "--to", "2026-11-01T00:00Z"],
            ["--from yesterday: not a time", "e.g. 2026-11-01T00:00Z"],
        ),
        (
            ["--from", "2026-11-02T00:00Z", "--to", "2026-11-01T00:00Z"],
            ["is empty or reversed: --from must be earlier than --to"],
        ),
        (
            ["--partition", "9", "--from-offset", "0", "--to-offset", "10"],
            ["has no partition 9 (it has partitions 0..2): check --partition"],
        ),
    ],
)
def test_backfill_arguments_that_cannot_work_are_one_line(landed, args, words) -> None:
    path, _ = landed
    result = lakeport_cli(path, "backfill", "--stream", "events", "--mode", "fill", *args)
    assert_one_line_error(result, *words)


def test_backfill_mode_is_required(landed) -> None:
    path, _ = landed
    result = lakeport_cli(path, "backfill", "--stream", "events", "--partition", "0",
                          "--from-offset", "0", "--to-offset", "10")  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "the following arguments are required: --mode" in result.stderr


def test_backfill_says_what_it_left_out_instead_of_doing_nothing_silently(landed) -> None:
    path, per = landed
    high = per[0]
    past = lakeport_cli(path, "backfill", "--stream", "events", "--mode", "replace",
                        "--partition", "0", "--from-offset", "0", "--to-offset", str(high + 500))  # fmt: skip
    assert past.returncode == 0, past.stderr
    assert f"events [replace]: {high} rows" in past.stdout
    assert (
        f"warning: p0[0,{high + 500}): partition 0 holds offsets up to {high} only (its high"
        f" watermark); offsets from {high} on are not in the topic yet and were not read"
    ) in past.stdout

    full = lakeport_cli(path, "backfill", "--stream", "events", "--mode", "fill",
                        "--partition", "1", "--from-offset", "0", "--to-offset", "50")  # fmt: skip
    assert full.returncode == 0, full.stderr
    assert "warning: nothing to fill: the table already holds every offset of p1[0,50)" in (
        full.stdout
    )

    empty = lakeport_cli(path, "backfill", "--stream", "events", "--mode", "fill",
                         "--from", "2020-01-01T00:00Z", "--to", "2020-01-02T00:00Z")  # fmt: skip
    assert empty.returncode == 0, empty.stderr
    assert "warning: no record of topic" in empty.stdout
    assert "has a time in [2020-01-01T00:00:00+00:00, 2020-01-02T00:00:00+00:00)" in empty.stdout


def test_upkeep_of_a_table_that_does_not_exist_yet_is_one_line(
    write_config: Callable[..., Path],
) -> None:
    result = lakeport_cli(write_config(), "upkeep", "--stream", "events")
    assert_one_line_error(result, "does not exist yet: run `lakeport ingest` first")


def test_upkeep_compacts_checkpoints_and_vacuums(landed) -> None:
    path, _ = landed
    result = lakeport_cli(path, "upkeep")
    assert result.returncode == 0, result.stderr
    actions = [line.split()[1] for line in result.stdout.splitlines()]
    assert actions == ["compact", "checkpoint", "vacuum"]


def test_an_unreachable_schema_registry_is_one_line_naming_schema_registry_url(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    reader = tmp_path / "trade.avsc"
    reader.write_text(
        json.dumps({"type": "record", "name": "T", "fields": [{"name": "id", "type": "string"}]})
    )
    url = f"http://127.0.0.1:{closed_port()}"
    with_login = url.replace("://", "://lakeport:s3cret-registry@")
    path = write_config(format="avro", schema_file=str(reader), schema_registry_url=with_login)
    stream = Stream.from_config(load_config(path), "events")
    ensure_topic(stream, partitions=1)
    producer = Producer(client_settings(stream.connection))
    producer.produce(stream.topic, b"\x00\x00\x00\x00\x01\x02id", partition=0)
    producer.flush(10)

    result = lakeport_cli(path, "ingest")
    assert_one_line_error(
        result,
        f"the schema registry at {url} (schema_registry_url of stream 'events') did not answer",
        "check schema_registry_url and that the registry is up",
        "gave up after 6 attempts",
    )
    assert "s3cret-registry" not in result.stdout + result.stderr
    assert data_pairs(stream) == []  # nothing dead-lettered because the registry was away


# --- history before the table, and plain words in status and redrive ---------------------------


def test_history_deleted_before_the_table_existed_is_named_when_the_run_records_it(
    write_config: Callable[..., Path],
) -> None:
    path = write_config()
    stream = Stream.from_config(load_config(path), "events")
    per = produce(stream, 300, partitions=3)
    delete_records(stream, {0: 40, 1: 0, 2: 25})
    result = lakeport_cli(path, "ingest")
    assert result.returncode == 0, result.stderr
    assert (
        "warning: never landed: offsets p0[0,40), p2[0,25) were deleted by retention before"
        " this table existed"
    ) in result.stdout
    assert f"events [forward]: {sum(per.values()) - 65} rows" in result.stdout


def test_status_names_landed_dead_lost_holes_and_lag_apart(
    write_config: Callable[..., Path],
) -> None:
    path = write_config(batch_records=100)
    stream = Stream.from_config(load_config(path), "events")
    ensure_topic(stream, partitions=1)
    produce_sample(
        client_settings(stream.connection),
        stream.topic,
        notification_events(300, awkward=Awkward(not_json=0.05)),
        partitions=1,
    )
    assert lakeport_cli(path, "ingest").returncode == 0
    produce(stream, 50, partitions=1)
    dead = ledger(stream).partition(0).dead
    assert dead > 0

    result = lakeport_cli(path, "status")
    assert result.returncode == 0, result.stderr
    assert (
        f"  partition 0: landed {300 - dead} rows + {dead} dead letters in [0,300);"
        " lost to retention 0; holes 0; lag 50 (high watermark 350)"
    ) in result.stdout


def test_redrive_with_nothing_to_move_says_so_in_words(landed) -> None:
    path, _ = landed
    result = lakeport_cli(path, "redrive", "--stream", "events")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "events: no dead letters to re-drive\n"


# --- the local broker and --help ----------------------------------------------------------------


def test_broker_start_on_a_port_other_than_the_running_one_is_refused(tmp_path: Path) -> None:
    home, first, second = tmp_path / "broker", closed_port(), closed_port()
    started = lakeport_cli(tmp_path / "none.yaml", "broker", "start", "--home", str(home),
                           "--port", str(first))  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        other = lakeport_cli(tmp_path / "none.yaml", "broker", "start", "--home", str(home),
                             "--port", str(second))  # fmt: skip
        assert_one_line_error(
            other,
            f"the broker of {home} already runs on 127.0.0.1:{first}, not on port {second}:",
            "stop it first",
        )
        same = lakeport_cli(tmp_path / "none.yaml", "broker", "start", "--home", str(home))
        assert same.stdout == f"already running: 127.0.0.1:{first}\n"
    finally:
        lakeport_cli(tmp_path / "none.yaml", "broker", "stop", "--home", str(home))


def test_make_demo_on_a_taken_port_says_how_to_pick_another(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                "make",
                "-s",
                "demo",
                f"LAKEPORT_BOOTSTRAP=127.0.0.1:{port}",
                f"BROKER_HOME={tmp_path / 'broker'}",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode != 0
    assert (
        f"lakeport: error: port {port} on 127.0.0.1 is already in use: stop what uses it, or"
        f" pick a free port: make demo LAKEPORT_BOOTSTRAP=127.0.0.1:<port>"
    ) in result.stderr
    assert "Traceback" not in result.stderr


VERBS = ["broker", "produce-sample", "ingest", "backfill", "status", "audit", "redrive",
         "derive", "check-connection", "upkeep", "query"]  # fmt: skip


def test_every_verb_has_a_description_and_shows_its_defaults_in_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert sorted(verbs) == sorted(VERBS)
    for verb, sub in verbs.items():
        with pytest.raises(SystemExit) as done:
            parser.parse_args([verb, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        usage, description = text.split("\n\n")[:2]
        assert usage.startswith(f"usage: lakeport {verb}")
        assert description[0].isupper() and len(description) > 20, (verb, description)
        for action in sub._actions:
            if action.default not in (None, False, "==SUPPRESS==") and action.help:
                assert f"(default: {action.default})" in " ".join(text.split()), (verb, action.dest)
        if verb == "broker":
            assert "$LAKEPORT_BOOTSTRAP, else 19092" in " ".join(text.split())
