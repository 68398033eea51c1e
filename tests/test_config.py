"""The configuration file: validated on load, errors name the bad key, secrets come from the env."""

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from connectors.config import load_config
from connectors.errors import ConfigError
from tests.helpers import assert_one_line_error, lakeport_cli

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "lakeport.yaml"
    path.write_text(textwrap.dedent(body))
    return path


VALID = f"""\
    connections:
      upvest:
        bootstrap_servers: ${{BOOTSTRAP:-broker:9096}}
        security_protocol: SASL_SSL
        sasl_mechanism: SCRAM-SHA-512
        sasl_username: acme
        sasl_password: ${{UPVEST_PASSWORD}}
    streams:
      notifications:
        connection: upvest
        topic: Notifications
        table: notifications
        schema_file: {SCHEMAS / "upvest_notification.avsc"}
"""


def test_the_repository_config_is_valid() -> None:
    config = load_config(Path(__file__).resolve().parent.parent / "lakeport.yaml", env={})
    assert set(config.streams) == {"notifications", "prices"}


def test_env_references_are_interpolated_with_defaults_and_the_password_stays_secret(
    tmp_path: Path,
) -> None:
    config = load_config(write(tmp_path, VALID), env={"UPVEST_PASSWORD": "pw-123"})
    conn = config.connections["upvest"]
    assert conn.bootstrap_servers == "broker:9096"
    assert conn.sasl_password is not None and conn.sasl_password.get_secret_value() == "pw-123"
    assert "pw-123" not in repr(config) and "pw-123" not in str(config.model_dump())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("topic: Notifications", "topic: Notifications\n        formatt: json"),
            "streams.notifications.formatt: Extra inputs are not permitted",
        ),
        (
            ("connection: upvest", "connection: upvets"),
            "streams.notifications.connection: unknown connection 'upvets' (known: upvest)",
        ),
        (
            ("table: notifications", "table: notifications\n        format: xml"),
            "streams.notifications.format: Input should be 'json' or 'avro'",
        ),
        (
            ("sasl_mechanism: SCRAM-SHA-512", "sasl_mechanism: SCRAM-SHA-1"),
            "connections.upvest.sasl_mechanism",
        ),
        (
            ("table: notifications", "table: 9bad"),
            "streams.notifications.table: String should match pattern",
        ),
        (("upvest_notification.avsc", "missing.avsc"), "streams.notifications.schema_file:"),
    ],
)
def test_an_invalid_file_fails_on_load_naming_the_bad_key(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = write(tmp_path, VALID.replace(*change))
    with pytest.raises(ConfigError) as error:
        load_config(path, env={"UPVEST_PASSWORD": "pw-123"})
    assert message in str(error.value)
    assert "pw-123" not in str(error.value)


def test_a_missing_environment_variable_is_named_with_its_key(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"connections.upvest.sasl_password: environment variable UPVEST_PASSWORD is not set",
    ):
        load_config(write(tmp_path, VALID), env={})


def test_sasl_without_credentials_is_refused(tmp_path: Path) -> None:
    body = VALID.replace("        sasl_username: acme\n", "")
    with pytest.raises(ConfigError, match="sasl_username and sasl_password are required"):
        load_config(write(tmp_path, body), env={"UPVEST_PASSWORD": "x"})


DERIVED = (
    VALID
    + f"""\
        derived:
          orders:
            kind: latest-state
            where: "category = 'ORDER'"
            schema_file: {SCHEMAS / "upvest_order.avsc"}
            key: [id]
            order_by: [updated_at, event_created_at]
            cluster_by: created_at
"""
)


def test_the_repository_config_declares_derived_tables_without_user_data() -> None:
    config = load_config(Path(__file__).resolve().parent.parent / "lakeport.yaml", env={})
    derived = config.streams["notifications"].derived
    assert set(derived) == {
        "orders",
        "order_events",
        "executions",
        "positions",
        "cash_balances",
        "cash_transactions",
        "accounts",
    }
    assert not any("USER" in d.where for d in derived.values())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("key: [id]", "key: [idd]"),
            "streams.notifications.derived.orders.key: unknown columns ['idd']",
        ),
        (
            ("key: [id]", "key: [status]"),
            "streams.notifications.derived.orders.key: columns ['status'] must be required",
        ),
        (
            ("category = 'ORDER'", "categori = 'ORDER'"),
            "streams.notifications.derived.orders.where: not a condition over the stream's columns",
        ),
        (
            ("kind: latest-state", "kind: latest"),
            "streams.notifications.derived.orders.kind: Input should be 'events' or 'latest-state'",
        ),
        (
            ("kind: latest-state", "kind: events"),
            "streams.notifications.derived.orders: key/order_by: an events table has one row",
        ),
        (
            ("cluster_by: created_at", "cluster_by: updated_at"),
            "streams.notifications.derived.orders.cluster_by: columns ['updated_at'] must be",
        ),
        (
            ("          orders:", "          notifications:"),
            "table name 'notifications' is already",
        ),
        (("upvest_order.avsc", "nope.avsc"), "streams.notifications.derived.orders.schema_file:"),
    ],
)
def test_an_invalid_derived_table_fails_on_load_naming_the_bad_key(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    assert load_config(write(tmp_path, DERIVED), env={"UPVEST_PASSWORD": "x"})
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, DERIVED.replace(*change)), env={"UPVEST_PASSWORD": "x"})
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("option", "fix"),
    [
        ("enable.ssl.certificate.verification: 'false'", "insecure_skip_tls_verification: true"),
        ("ssl.endpoint.identification.algorithm: none", "insecure_skip_tls_verification: true"),
        ("security.protocol: SASL_PLAINTEXT", "set security_protocol"),
        ("sasl.mechanisms: PLAIN", "set sasl_mechanism"),
        ("bootstrap.servers: elsewhere:9092", "set bootstrap_servers"),
        ("group.id: other", "set the stream's group_id"),
        ("auto.offset.reset: earliest", "range consumer sets it itself"),
        ("isolation.level: read_uncommitted", "range consumer sets it itself"),
        ("enable.auto.commit: true", "range consumer sets it itself"),
    ],
)
def test_security_and_correctness_settings_are_refused_in_passthrough_options(
    tmp_path: Path, option: str, fix: str
) -> None:
    key = option.split(":")[0]
    body = VALID.replace(
        "        sasl_password: ${UPVEST_PASSWORD}\n",
        f"        sasl_password: ${{UPVEST_PASSWORD}}\n        options:\n          {option}\n",
    )
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as error:
        load_config(path, env={"UPVEST_PASSWORD": "pw-123"})
    message = str(error.value)
    assert f"connections.upvest: options.{key}: not allowed in options; " in message
    assert fix in message

    proc = subprocess.run(
        [sys.executable, "-m", "connectors.cli", "--config", str(path), "check-connection"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "UPVEST_PASSWORD": "pw-123"},
    )
    assert_one_line_error(proc, f"options.{key}: not allowed in options", fix)


def test_tuning_options_pass_and_yaml_numbers_and_booleans_become_strings(tmp_path: Path) -> None:
    body = VALID.replace(
        "        sasl_password: ${UPVEST_PASSWORD}\n",
        "        sasl_password: ${UPVEST_PASSWORD}\n        options:\n"
        "          broker.address.family: v4\n          queued.min.messages: 200\n"
        "          check.crcs: true\n",
    )
    body = "lakehouse:\n  storage_options:\n    AWS_ALLOW_HTTP: true\n    timeout: 30\n" + (
        textwrap.dedent(body)
    )
    config = load_config(write(tmp_path, body), env={"UPVEST_PASSWORD": "pw-123"})
    assert config.connections["upvest"].options == {
        "broker.address.family": "v4",
        "queued.min.messages": "200",
        "check.crcs": "true",
    }
    assert config.storage_options() == {"AWS_ALLOW_HTTP": "true", "timeout": "30"}


def test_a_password_written_in_the_file_is_warned_about_without_showing_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    body = VALID.replace("${UPVEST_PASSWORD}", "hunter2-literal")
    body = "lakehouse:\n  storage_options:\n    aws_secret_access_key: abc-literal-key\n" + (
        textwrap.dedent(body)
    )
    path = write(tmp_path, body)
    with caplog.at_level(logging.WARNING, logger="lakeport"):
        load_config(path, env={})
    warned = [r.getMessage() for r in caplog.records]
    assert any("connections.upvest.sasl_password is written in the file" in w for w in warned)
    assert any("lakehouse.storage_options.aws_secret_access_key is written" in w for w in warned)
    assert all("${VARIABLE}" in w for w in warned)
    assert not any("hunter2" in w or "abc-literal" in w for w in warned)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lakeport"):
        load_config(write(tmp_path, VALID), env={"UPVEST_PASSWORD": "pw-123"})
    assert not caplog.records  # ${VAR} references are the way: no warning


def test_a_yaml_error_on_the_password_line_names_the_place_but_not_the_password(
    tmp_path: Path,
) -> None:
    body = VALID.replace("${UPVEST_PASSWORD}", "hunter2: oops")
    proc = lakeport_cli(write(tmp_path, body), "status", timeout=60)
    line = assert_one_line_error(
        proc, "not valid YAML at line 7, column 27: mapping values are not allowed here"
    )
    assert "hunter2" not in proc.stdout + proc.stderr, line
