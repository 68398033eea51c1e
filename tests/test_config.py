"""The configuration file: validated on load, errors name the bad key, secrets come from the env."""

import textwrap
from pathlib import Path

import pytest

from connectors.config import load_config
from connectors.errors import ConfigError

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
