"""Tests for dev.local_broker against a real Kafka broker (no mocks)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from dev.local_broker import (
    BrokerError,
    LocalBroker,
    ScramUser,
    _generate_tls,
    ensure_broker_jars,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(120)


# ------------------------------------------------------------------ helpers
def _create_topic(config: dict[str, str], name: str, partitions: int = 1) -> None:
    admin = AdminClient(config)
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=30)


def _produce(config: dict[str, str], topic: str, value: bytes, partition: int = 0) -> None:
    delivered: list[KafkaError | None] = []
    producer = Producer({**config, "enable.idempotence": "true"})
    producer.produce(
        topic,
        value=value,
        key=b"k",
        partition=partition,
        on_delivery=lambda err, _msg: delivered.append(err),
    )
    remaining = producer.flush(30)
    assert remaining == 0, "record was not delivered within 30 s"
    assert delivered == [None]


def _consume_one(config: dict[str, str], topic: str, partition: int = 0) -> bytes:
    consumer = Consumer({**config, "group.id": f"t-{uuid.uuid4()}", "enable.auto.commit": "false"})
    try:
        consumer.assign([TopicPartition(topic, partition, 0)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            value = msg.value()
            assert value is not None
            return value
    finally:
        consumer.close()
    raise AssertionError(f"no record consumed from {topic}[{partition}] within 30 s")


def _first_error(
    config: dict[str, str], topic: str, wait: float = 20.0, message_timeout_ms: int = 15000
) -> KafkaError:
    """Produce with ``config`` and return the first client error (auth failures arrive here)."""
    errors: list[KafkaError] = []
    producer = Producer(
        {**config, "error_cb": errors.append, "message.timeout.ms": str(message_timeout_ms)}
    )
    producer.produce(topic, value=b"x", on_delivery=lambda err, _m: err and errors.append(err))
    deadline = time.monotonic() + wait
    while not errors and time.monotonic() < deadline:
        producer.poll(0.2)
    producer.purge()
    producer.flush(1)
    assert errors, "expected the client to report an error"
    return errors[0]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _start(broker: LocalBroker) -> float:
    started = time.monotonic()
    broker.start()
    return time.monotonic() - started


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def plain_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    broker = LocalBroker(home=tmp_path_factory.mktemp("plain-broker"))
    elapsed = _start(broker)
    print(f"plain broker ready in {elapsed:.1f}s")
    yield broker
    broker.stop()


ALICE = ScramUser("alice", secrets.token_urlsafe(16))
BOB = ScramUser("bob", secrets.token_urlsafe(16))


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    broker = LocalBroker(
        home=tmp_path_factory.mktemp("secure-broker"), secure=True, users=(ALICE, BOB)
    )
    elapsed = _start(broker)
    print(f"secure broker ready in {elapsed:.1f}s")
    yield broker
    broker.stop()


# -------------------------------------------------------------------- tests
def test_started_broker_answers_metadata_and_round_trips_a_record(
    plain_broker: LocalBroker,
) -> None:
    config = plain_broker.client_config()
    assert config == {"bootstrap.servers": plain_broker.bootstrap_servers}
    assert plain_broker.bootstrap_servers.startswith("127.0.0.1:")

    _create_topic(config, "orders", partitions=6)
    metadata = AdminClient(config).list_topics(timeout=10)
    assert len(metadata.topics["orders"].partitions) == 6
    assert list(metadata.brokers) == [1]

    _produce(config, "orders", b"hello lakeport", partition=4)
    assert _consume_one(config, "orders", partition=4) == b"hello lakeport"


def test_broker_does_not_auto_create_topics(plain_broker: LocalBroker) -> None:
    error = _first_error(plain_broker.client_config(), "never-created", message_timeout_ms=2000)
    assert error.code() in (
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._MSG_TIMED_OUT,
    )
    assert (
        "never-created"
        not in AdminClient(plain_broker.client_config()).list_topics(timeout=10).topics
    )


def test_second_start_on_a_running_home_is_refused(plain_broker: LocalBroker) -> None:
    with pytest.raises(BrokerError, match="already running"):
        LocalBroker(home=plain_broker.home).start()
    assert plain_broker.is_running()


def test_start_fails_clearly_when_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        broker = LocalBroker(home=tmp_path / "b", port=port)
        started = time.monotonic()
        with pytest.raises(BrokerError, match=f"port {port} on 127.0.0.1 is already in use"):
            broker.start()
    assert time.monotonic() - started < 5
    assert not broker.is_running()


def test_start_fails_clearly_when_java_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(BrokerError, match="java not found"):
        LocalBroker(home=tmp_path / "b").start()


def test_missing_jars_without_maven_fail_with_instructions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "project"
    (root / "dev" / "kafka").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "dev" / "kafka" / "pom.xml", root / "dev" / "kafka" / "pom.xml")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(BrokerError, match="`mvn` is not on PATH"):
        ensure_broker_jars(root)


def test_ensure_broker_jars_returns_the_fetched_libs() -> None:
    libs = ensure_broker_jars()
    assert libs == PROJECT_ROOT / "dev" / "kafka" / "target" / "libs"
    assert any(libs.glob("kafka_2.13-*.jar"))
    assert any(libs.glob("log4j-slf4j-impl-*.jar"))


def test_start_reports_exit_code_and_log_tail_when_broker_exits_early(tmp_path: Path) -> None:
    home = tmp_path / "broken"
    (home / "data").mkdir(parents=True)
    (home / "data" / "meta.properties").write_text("version=1\nthis is not a valid meta file\n")
    broker = LocalBroker(home=home)
    with pytest.raises(BrokerError, match=r"exited early with exit code \d+") as info:
        broker.start(timeout=60)
    assert "broker.log" in str(info.value)
    assert len(str(info.value).splitlines()) > 2  # the log tail is included
    assert not broker.is_running()
    assert json.loads((home / "state.json").read_text())["pid"] is None


def test_attach_finds_running_broker_and_stop_ends_it(tmp_path: Path) -> None:
    broker = LocalBroker(home=tmp_path / "attached")
    broker.start()
    port = broker.port
    assert port is not None and _port_open(port)

    # A second process (as `lakeport broker status/stop` would be) finds and stops it.
    script = (
        "import sys; from pathlib import Path\n"
        "from dev.local_broker import LocalBroker\n"
        "b = LocalBroker.attach(Path(sys.argv[1]))\n"
        "print(b.bootstrap_servers, b.is_running())\n"
        "b.stop()\n"
        "print(b.is_running())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(broker.home)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"127.0.0.1:{port}", "True", "False"]

    deadline = time.monotonic() + 10
    while broker.is_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not broker.is_running()
    assert not _port_open(port)
    assert LocalBroker.attach(broker.home).is_running() is False


def test_attach_without_state_explains_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="no broker state"):
        LocalBroker.attach(tmp_path)


def test_broker_restarts_on_same_home_with_its_data(tmp_path: Path) -> None:
    broker = LocalBroker(home=tmp_path / "restart")
    broker.start()
    try:
        ports = (broker.port, broker.controller_port)
        config = broker.client_config()
        _create_topic(config, "durable", partitions=2)
        _produce(config, "durable", b"survives a crash", partition=1)

        broker.kill()
        assert not broker.is_running()
        assert not _port_open(ports[0] or 0)

        broker.start()
        assert (broker.port, broker.controller_port) == ports
        assert broker.client_config() == config
        assert _consume_one(config, "durable", partition=1) == b"survives a crash"
    finally:
        broker.stop()
    assert not broker.is_running()


def test_secure_listener_accepts_scram_and_plain_and_rejects_wrong_password(
    secure_broker: LocalBroker,
) -> None:
    assert secure_broker.secure_bootstrap_servers.startswith("localhost:")
    _create_topic(secure_broker.client_config(), "secure-events", partitions=1)

    scram = secure_broker.client_config(ALICE)
    assert scram["security.protocol"] == "SASL_SSL"
    assert scram["sasl.mechanism"] == "SCRAM-SHA-512"
    assert scram["ssl.ca.location"] == str(secure_broker.ca_file)
    _produce(scram, "secure-events", b"via scram")

    plain = secure_broker.client_config(BOB, mechanism="PLAIN")
    _produce(plain, "secure-events", b"via plain")
    assert _consume_one(plain, "secure-events") == b"via scram"

    for mechanism in ("SCRAM-SHA-512", "PLAIN"):
        wrong = secure_broker.client_config(
            ScramUser("alice", "not-the-password"), mechanism=mechanism
        )
        error = _first_error(wrong, "secure-events")
        assert error.code() == KafkaError._AUTHENTICATION, error


def test_secure_listener_is_refused_by_clients_trusting_another_ca(
    secure_broker: LocalBroker, tmp_path: Path
) -> None:
    _generate_tls(tmp_path / "other")  # a different throw-away CA
    config = {
        **secure_broker.client_config(ALICE),
        "ssl.ca.location": str(tmp_path / "other" / "ca.pem"),
    }
    error = _first_error(config, "secure-events", wait=15)
    assert error.code() in (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN), (
        error
    )
    assert "certificate verify failed" in error.str()


def test_acls_restrict_a_named_user_on_the_secure_listener(secure_broker: LocalBroker) -> None:
    admin = AdminClient(secure_broker.client_config())  # ANONYMOUS on PLAINTEXT is a super user
    _create_topic(secure_broker.client_config(), "alice-only", partitions=1)
    binding = AclBinding(
        ResourceType.TOPIC,
        "alice-only",
        ResourcePatternType.LITERAL,
        "User:alice",
        "*",
        AclOperation.ALL,
        AclPermissionType.ALLOW,
    )
    admin.create_acls([binding])[binding].result(timeout=30)

    _produce(secure_broker.client_config(ALICE), "alice-only", b"allowed")
    error = _first_error(secure_broker.client_config(BOB), "alice-only")
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error


def test_state_file_lists_ports_and_user_names_but_never_passwords(
    secure_broker: LocalBroker,
) -> None:
    state_text = (secure_broker.home / "state.json").read_text()
    state = json.loads(state_text)
    assert state["pid"] == secure_broker.pid
    assert state["secure"] is True
    assert state["users"] == ["alice", "bob"]
    assert state["secure_bootstrap_servers"] == secure_broker.secure_bootstrap_servers
    for user in (ALICE, BOB):
        assert user.password not in state_text
        assert user.password not in (secure_broker.home / "server.properties").read_text()
        assert user.password not in (secure_broker.home / "broker.log").read_text()
        assert user.password not in repr(secure_broker)
    assert (secure_broker.home / "tls" / "server-key.pem").stat().st_mode & 0o077 == 0

    attached = LocalBroker.attach(secure_broker.home)
    assert attached.is_running()
    assert attached.user_names == ("alice", "bob")
    assert attached.secure_bootstrap_servers == secure_broker.secure_bootstrap_servers
    assert attached.ca_file == secure_broker.ca_file


def test_secure_broker_restarts_from_attach_and_keeps_users_and_ca(
    secure_broker: LocalBroker,
) -> None:
    """Runs last on the module's secure broker: a second handle (no passwords) restarts it."""
    ca_before = secure_broker.ca_file.read_bytes()
    secure_broker.stop()
    assert not secure_broker.is_running()

    attached = LocalBroker.attach(secure_broker.home)
    assert attached.users == ()  # passwords are never persisted
    attached.start()
    assert attached.secure_bootstrap_servers == secure_broker.secure_bootstrap_servers
    assert attached.ca_file.read_bytes() == ca_before
    assert secure_broker.is_running()  # the original handle sees the new process too

    assert _consume_one(secure_broker.client_config(ALICE), "secure-events") == b"via scram"
    _produce(secure_broker.client_config(BOB, mechanism="PLAIN"), "secure-events", b"after restart")


def test_cluster_id_never_starts_with_a_dash_so_the_storage_tool_accepts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dev.local_broker as local_broker

    dash_first = uuid.UUID(bytes=b"\xf8" + bytes(15))  # base64 "-A...": the storage tool's 1 in 64
    plain = uuid.UUID(bytes=b"\x10" + bytes(15))
    drawn = iter([dash_first, plain])
    monkeypatch.setattr(local_broker.uuid, "uuid4", lambda: next(drawn))

    cluster_id = local_broker._random_cluster_id()

    assert cluster_id == "EAAAAAAAAAAAAAAAAAAAAA"
    assert not cluster_id.startswith("-")
