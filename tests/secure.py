"""A SASL_SSL broker shared by the secure-connection, outage and secret-hygiene tests.

Not a conftest fixture: starting a TLS broker costs 5-20 s, so only the modules that need it
pay, and they share one instance (started on first use, stopped when the test session ends).
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from connectors.config import LakeportConfig, load_config
from dev.local_broker import LocalBroker, ScramUser
from dev.sample_events import notification_events, produce_sample

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
PASSWORD = "s3cr3t-Pa55w0rd-DO-NOT-LEAK"  # recognisable, so a leak is easy to grep
PASSWORD_ENV = "LAKEPORT_TEST_PASSWORD"
USER = ScramUser("lakeport", PASSWORD)
ADMIN = ScramUser("admin", "adm1n-Pa55w0rd-DO-NOT-LEAK")
_topics = itertools.count()
_shared: dict[str, LocalBroker] = {}


def secure_broker(home: Path) -> LocalBroker:
    """The shared SASL_SSL broker (SCRAM-SHA-512 and PLAIN users `lakeport` and `admin`)."""
    if "broker" not in _shared:
        broker = LocalBroker(home=home, secure=True, users=(USER, ADMIN))
        broker.start()
        _shared["broker"] = broker
    os.environ[PASSWORD_ENV] = PASSWORD
    return _shared["broker"]


def stop_secure_broker() -> None:
    """Stop the shared broker if a test started it (at the end of a session or xdist worker,
    where `atexit` handlers do not run)."""
    broker = _shared.pop("broker", None)
    if broker is not None:
        broker.stop()


def fresh_topic(prefix: str) -> str:
    return f"{prefix}_{next(_topics)}"


def write_config(
    folder: Path,
    broker: LocalBroker,
    topic: str,
    *,
    connection: dict[str, Any] | None = None,
    lakehouse: dict[str, Any] | None = None,
    **stream: Any,
) -> Path:
    """A lakeport.yaml whose `events` stream reads `topic` over SASL_SSL as user `lakeport`.

    The password is the `${LAKEPORT_TEST_PASSWORD}` reference, as in a real deployment.
    """
    conn: dict[str, Any] = {
        "bootstrap_servers": broker.secure_bootstrap_servers,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": USER.username,
        "sasl_password": "${" + PASSWORD_ENV + "}",
        "ssl_ca_location": str(broker.ca_file),
        # "localhost" may also resolve to ::1, where the broker does not listen.
        "options": {"broker.address.family": "v4"},
    }
    conn.update(connection or {})
    keys: dict[str, Any] = {
        "connection": "upvest",
        "topic": topic,
        "table": "events",
        "schema_file": str(SCHEMAS / "upvest_notification.avsc"),
        "idle_timeout_seconds": 5,
    }
    keys.update(stream)
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "lakehouse": {"root": str(folder / "lakehouse"), **(lakehouse or {})},
        "connections": {"upvest": conn},
        "streams": {"events": keys},
    }
    path = folder / "lakeport.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def load(path: Path) -> LakeportConfig:
    return load_config(path)


def plain_admin(broker: LocalBroker) -> AdminClient:
    """Admin over the PLAINTEXT listener, where ANONYMOUS is a super user (ACL changes)."""
    return AdminClient(broker.client_config())


def set_acls(broker: LocalBroker, bindings: list[AclBinding]) -> None:
    client = plain_admin(broker)
    for future in client.create_acls(bindings).values():
        future.result()


def topic_acls(
    broker: LocalBroker, topic: str, *rules: tuple[AclOperation, AclPermissionType]
) -> None:
    """ACLs of the user `lakeport` on `topic`: (operation, ALLOW or DENY) per rule."""
    set_acls(
        broker,
        [
            AclBinding(
                ResourceType.TOPIC,
                topic,
                ResourcePatternType.LITERAL,
                f"User:{USER.username}",
                "*",
                operation,
                permission,
            )
            for operation, permission in rules
        ],
    )


def deny_topic(broker: LocalBroker, topic: str) -> None:
    """The user `lakeport` may do nothing with `topic`."""
    topic_acls(broker, topic, (AclOperation.ALL, AclPermissionType.DENY))


def describe_only(broker: LocalBroker, topic: str) -> None:
    """The user `lakeport` may DESCRIBE `topic` (metadata, offsets) but not READ it."""
    topic_acls(
        broker,
        topic,
        (AclOperation.DESCRIBE, AclPermissionType.ALLOW),
        (AclOperation.READ, AclPermissionType.DENY),
    )


def restrict_groups(broker: LocalBroker, prefix: str) -> None:
    """The user `lakeport` may use consumer groups starting with `prefix` only.

    `allow.everyone.if.no.acl.found` allows any group without an ACL, so an ACL for `admin`
    on every group makes the `lakeport` prefix rule the only one that admits that user.
    """
    set_acls(
        broker,
        [
            AclBinding(
                ResourceType.GROUP,
                prefix,
                ResourcePatternType.PREFIXED,
                f"User:{USER.username}",
                "*",
                AclOperation.READ,
                AclPermissionType.ALLOW,
            ),
            AclBinding(
                ResourceType.GROUP,
                "*",
                ResourcePatternType.LITERAL,
                f"User:{ADMIN.username}",
                "*",
                AclOperation.ALL,
                AclPermissionType.ALLOW,
            ),
        ],
    )


def loopback_alias() -> str:
    """A name for 127.0.0.1 that the broker certificate (localhost, 127.0.0.1) does not list.

    The machine's host name when it resolves to loopback (like a user typing the host they
    see), else `127.1`: resolves to 127.0.0.1 but is verified as a DNS name, not an IP.
    """
    name = socket.gethostname()
    try:
        if name not in ("localhost", "127.0.0.1") and socket.gethostbyname(name) == "127.0.0.1":
            return name
    except OSError:
        pass
    return "127.1"


def create_topic(broker: LocalBroker, topic: str, partitions: int = 3, timeout: float = 30) -> None:
    """Create `topic` and wait until metadata serves it.

    `sample_events._ensure_topic` lists the topic right after creating it and sometimes sees
    UNKNOWN_TOPIC_OR_PART (metadata not propagated yet), so tests create topics here first.
    """
    client = plain_admin(broker)
    client.create_topics([NewTopic(topic, num_partitions=partitions)])[topic].result(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.list_topics(topic, timeout=5).topics.get(topic)
        if info is not None and info.error is None and len(info.partitions) == partitions:
            return
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} not visible after {timeout} s")


def produce(
    broker: LocalBroker, topic: str, count: int, partitions: int = 3, seed: int = 7
) -> dict[int, int]:
    """Produce `count` sample notifications to a new `topic`; records per partition."""
    create_topic(broker, topic, partitions)
    report = produce_sample(
        broker.client_config(), topic, notification_events(count, seed=seed), partitions=partitions
    )
    return report.per_partition
