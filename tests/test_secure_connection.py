"""Upvest's connection shape (SASL_SSL) against a real secure broker: what works and each way
it fails, in the words a user sees."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)
from dagster import AssetsDefinition, materialize
from deltalake import DeltaTable

from connectors import Stream, run_forward, run_window
from connectors.connection_check import check_connection
from connectors.coverage import audit
from connectors.errors import LakeportError
from connectors.kafka_client import client_settings, open_consumer
from connectors.ranges import OffsetRange
from dev.local_broker import LocalBroker
from dev.sample_events import notification_events, produce_sample
from pipelines.definitions import build_definitions
from tests.helpers import assert_one_line_error
from tests.secure import (
    PASSWORD,
    create_topic,
    deny_topic,
    describe_only,
    fresh_topic,
    load,
    loopback_alias,
    plain_admin,
    restrict_groups,
    secure_broker,
    write_config,
)

ROOT = Path(__file__).resolve().parent.parent
MakeStream = Callable[..., Stream]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> LocalBroker:
    return secure_broker(tmp_path_factory.mktemp("secure_broker"))


@pytest.fixture
def make_stream(broker: LocalBroker, tmp_path: Path) -> MakeStream:
    """A stream on a fresh topic holding `records` sample events; config overrides as kwargs."""
    count = iter(range(100))

    def make(records: int = 0, topic: str | None = None, **overrides: object) -> Stream:
        name = topic or fresh_topic("secure")
        if records:
            produce_sample(broker.client_config(), name, notification_events(records), partitions=3)
        connection = overrides.pop("connection", None)
        path = write_config(
            tmp_path / f"c{next(count)}",
            broker,
            name,
            connection=connection,  # type: ignore[arg-type]
            **overrides,
        )
        return Stream.from_config(load(path), "events")

    return make


def rows(stream: Stream) -> list[tuple[int, int]]:
    table = DeltaTable(stream.table.uri).to_pyarrow_table(
        columns=["kafka_partition", "kafka_offset"]
    )
    return sorted(
        zip(table["kafka_partition"].to_pylist(), table["kafka_offset"].to_pylist(), strict=True)
    )


def test_check_connection_over_scram_sha_512_lists_partitions_offsets_and_group(
    make_stream: MakeStream,
) -> None:
    stream = make_stream(records=300)
    report = check_connection(stream)
    assert report.ok, report.problem
    assert sorted(report.partitions) == [0, 1, 2]
    assert sum(m.high - m.low for m in report.partitions.values()) == 300
    assert report.steps[0].endswith("over SASL_SSL with SASL SCRAM-SHA-512")
    assert report.steps[-1] == "consumer group 'lakeport.events': may be used"


def test_plain_mechanism_is_configurable_on_the_same_listener(make_stream: MakeStream) -> None:
    stream = make_stream(records=30, connection={"sasl_mechanism": "PLAIN"})
    report = check_connection(stream)
    assert report.ok, report.problem
    assert sum(m.high for m in report.partitions.values()) == 30


def test_wrong_password_is_an_authentication_error_within_seconds_not_a_timeout(
    make_stream: MakeStream, broker: LocalBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEPORT_TEST_PASSWORD", "not-the-password")
    stream = make_stream(records=10)
    began = time.monotonic()
    report = check_connection(stream)
    assert report.problem == (
        "authentication failed: check sasl_username/sasl_password for"
        f" {broker.secure_bootstrap_servers} (user 'lakeport', sasl_mechanism SCRAM-SHA-512)"
    )
    assert time.monotonic() - began < 5
    assert "not-the-password" not in report.problem


def test_check_connection_cli_prints_one_line_and_exits_2_on_a_wrong_password(
    make_stream: MakeStream, broker: LocalBroker
) -> None:
    stream = make_stream(records=10)
    config = Path(stream.table.uri).parent.parent / "lakeport.yaml"
    env = {**os.environ, "LAKEPORT_TEST_PASSWORD": "wrong-" + PASSWORD}
    proc = subprocess.run(
        [sys.executable, "-m", "connectors.cli", "--config", str(config), "check-connection"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert proc.stdout.startswith("events: FAILED")
    assert proc.stderr.strip().endswith(
        f"lakeport: error: events: authentication failed: check sasl_username/sasl_password"
        f" for {broker.secure_bootstrap_servers} (user 'lakeport', sasl_mechanism SCRAM-SHA-512)"
    )
    assert PASSWORD not in proc.stdout + proc.stderr


def test_mechanism_the_broker_does_not_offer_is_named_with_the_offered_ones(
    make_stream: MakeStream,
) -> None:
    stream = make_stream(records=10, connection={"sasl_mechanism": "SCRAM-SHA-256"})
    report = check_connection(stream)
    assert report.problem is not None
    assert "does not accept sasl_mechanism SCRAM-SHA-256" in report.problem
    assert "(it offers SCRAM-SHA-512,PLAIN): check sasl_mechanism" in report.problem


def test_certificate_from_an_untrusted_ca_says_which_trust_store_failed(
    make_stream: MakeStream, broker: LocalBroker
) -> None:
    stream = make_stream(records=10, connection={"ssl_ca_location": None})
    report = check_connection(stream)
    assert report.problem == (
        f"TLS: the certificate of {broker.secure_bootstrap_servers} could not be verified with"
        " the system CA bundle (self-signed certificate in certificate chain):"
        " check ssl_ca_location"
    )


def test_host_name_the_certificate_does_not_list_is_a_hostname_mismatch(
    make_stream: MakeStream, broker: LocalBroker
) -> None:
    alias = loopback_alias()  # resolves to 127.0.0.1; the cert lists localhost and 127.0.0.1
    stream = make_stream(
        records=10, connection={"bootstrap_servers": f"{alias}:{broker.secure_port}"}
    )
    report = check_connection(stream)
    assert report.problem == (
        f"TLS: the certificate of {alias}:{broker.secure_port} is not valid for the host name"
        f" in bootstrap_servers (Hostname mismatch, certificate is not valid for '{alias}'.):"
        " use a host name the certificate names"
    )


def test_insecure_skip_tls_verification_connects_but_warns_for_every_client(
    make_stream: MakeStream, broker: LocalBroker, caplog: pytest.LogCaptureFixture
) -> None:
    alias = loopback_alias()
    stream = make_stream(
        records=10,
        connection={
            "bootstrap_servers": f"{alias}:{broker.secure_port}",
            "insecure_skip_tls_verification": True,
        },
    )
    with caplog.at_level(logging.WARNING, logger="lakeport"):
        assert check_connection(stream).ok
        with open_consumer(stream.connection, "x"):
            pass
    warnings = [r for r in caplog.records if "insecure_skip_tls_verification" in r.message]
    assert len(warnings) == 2 and all(r.levelno == logging.WARNING for r in warnings)
    assert "NOT verified" in warnings[0].message


def test_missing_topic_is_named(make_stream: MakeStream, broker: LocalBroker) -> None:
    report = check_connection(make_stream(topic="no_such_topic"))
    assert report.problem == (
        f"topic 'no_such_topic' does not exist on {broker.secure_bootstrap_servers}:"
        " check the stream's topic (names are case-sensitive)"
    )


def test_topic_denied_by_an_acl_is_an_authorization_error(
    make_stream: MakeStream, broker: LocalBroker
) -> None:
    stream = make_stream(records=10)
    deny_topic(broker, stream.topic)
    report = check_connection(stream)
    assert report.problem == (
        f"user 'lakeport' is not authorized to read topic {stream.topic!r} on"
        f" {broker.secure_bootstrap_servers}: ask the cluster operator for READ and DESCRIBE"
        " on it, or check the stream's topic"
    )


def test_user_who_may_describe_but_not_read_the_topic_fails_the_check_and_the_ingest(
    make_stream: MakeStream, broker: LocalBroker
) -> None:
    stream = make_stream(records=30)
    describe_only(broker, stream.topic)
    message = (
        f"user 'lakeport' is not authorized to read topic {stream.topic!r} on"
        f" {broker.secure_bootstrap_servers}: ask the cluster operator for READ and DESCRIBE"
        " on it, or check the stream's topic"
    )
    report = check_connection(stream)
    assert report.problem == message
    assert sum(m.high for m in report.partitions.values()) == 30  # DESCRIBE was enough for these

    config = Path(stream.table.uri).parent.parent / "lakeport.yaml"
    for verb in ("check-connection", "ingest"):
        proc = subprocess.run(
            [sys.executable, "-m", "connectors.cli", "--config", str(config), verb],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        line = assert_one_line_error(proc, message)
        assert PASSWORD not in proc.stdout + proc.stderr, line


def test_check_connection_proves_read_by_fetching_a_record(make_stream: MakeStream) -> None:
    report = check_connection(make_stream(records=30))
    assert report.ok, report.problem
    assert any(step.endswith(": READ permitted") for step in report.steps), report.steps


@pytest.fixture
def groups_limited_to_allowed_prefix(broker: LocalBroker) -> Iterator[None]:
    """The user may use consumer groups `allowed-*` only (removed again after the test)."""
    restrict_groups(broker, "allowed-")
    yield
    client = plain_admin(broker)
    for future in client.delete_acls(
        [
            AclBindingFilter(
                ResourceType.GROUP,
                None,
                ResourcePatternType.ANY,
                None,
                None,
                AclOperation.ANY,
                AclPermissionType.ANY,
            )
        ]
    ).values():
        future.result()


@pytest.mark.usefixtures("groups_limited_to_allowed_prefix")
def test_unauthorized_default_group_is_named_and_a_granted_group_id_works(
    make_stream: MakeStream, broker: LocalBroker
) -> None:
    denied = make_stream(records=40)
    report = check_connection(denied, group_timeout=8)
    message = (
        f"user 'lakeport' is not authorized to use consumer group 'lakeport.events' on"
        f" {broker.secure_bootstrap_servers}: set group_id in the stream's configuration to a"
        " group you may use (e.g. with the prefix your Kafka operator granted)"
    )
    assert report.problem == message
    assert sum(m.high for m in report.partitions.values()) == 40  # the topic itself was fine

    # librdkafka looks the group up even for assigned partitions: ingest fails the same way.
    with pytest.raises(LakeportError) as failed:
        run_forward(denied)
    assert str(failed.value) == message
    assert audit(denied).ok

    allowed = make_stream(topic=denied.topic, group_id="allowed-x")
    ok = check_connection(allowed)
    assert ok.ok, ok.problem
    assert ok.steps[-1] == "consumer group 'allowed-x': may be used"
    landed = run_forward(allowed)
    assert landed.records == 40 and len(rows(allowed)) == 40 and not landed.warnings


def test_closed_bootstrap_port_fails_within_the_metadata_timeout(make_stream: MakeStream) -> None:
    stream = make_stream(connection={"bootstrap_servers": "127.0.0.1:1"})
    began = time.monotonic()
    report = check_connection(stream, metadata_timeout=4)
    assert time.monotonic() - began < 8
    assert report.problem == (
        "cannot read metadata of topic"
        f" {stream.topic!r} from 127.0.0.1:1: no answer within 4 s: cannot reach 127.0.0.1:1:"
        " connection refused; check bootstrap_servers"
    )


def stream_asset(defs: object) -> AssetsDefinition:
    (asset,) = [a for a in defs.assets or [] if isinstance(a, AssetsDefinition)]  # type: ignore[attr-defined]
    return asset


def test_forward_backfill_and_dagster_materialize_over_sasl_ssl_land_each_record_once(
    make_stream: MakeStream, broker: LocalBroker
) -> None:
    stream = make_stream(
        time_partitions="hourly", time_partitions_start="2026-01-05", batch_records=700
    )
    create_topic(broker, stream.topic)
    report = produce_sample(
        client_settings(stream.connection), stream.topic, notification_events(3000), partitions=3
    )
    assert report.records == 3000  # produced over SASL_SSL as user lakeport

    forward = run_forward(stream)
    assert forward.records + forward.dead == 3000 and forward.commits >= 3

    replaced = run_window(stream, [OffsetRange(0, 100, 400)], "replace")
    assert replaced.ranges == [OffsetRange(0, 100, 400)] and replaced.records == 300

    config = Path(stream.table.uri).parent.parent / "lakeport.yaml"
    defs = build_definitions(config)
    result = materialize(
        [stream_asset(defs)], resources=defs.resources, partition_key="2026-01-05-08:00"
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    meta = event.materialization.metadata  # the window's records: rows and dead letters
    assert event.partition == "2026-01-05-08:00" and meta["records"].value == 3000

    expected = sorted((p, o) for p, n in report.per_partition.items() for o in range(n))
    assert rows(stream) == expected  # every offset once: no loss, no duplicate
    result_audit = audit(stream)
    assert result_audit.ok, result_audit.problems
    assert result_audit.rows + result_audit.dead == 3000
