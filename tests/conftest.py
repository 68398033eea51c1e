"""Shared fixtures: one real Kafka broker per test session, a fresh topic and lakehouse per test."""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connectors import Stream
from connectors.config import LakeportConfig, load_config
from dev.local_broker import LocalBroker
from tests.secure import stop_secure_broker

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
_topics = itertools.count()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A real single-node KRaft Apache Kafka broker on a free port of 127.0.0.1."""
    broker = LocalBroker(home=tmp_path_factory.mktemp("broker"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session", autouse=True)
def _secure_broker_stops_with_the_session() -> Iterator[None]:
    yield
    stop_secure_broker()


@pytest.fixture
def make_config(
    kafka: LocalBroker, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[..., LakeportConfig]:
    """Write a lakeport.yaml for a fresh topic and lakehouse; extra stream keys as kwargs."""

    def make(**stream: object) -> LakeportConfig:
        topic = f"t{next(_topics)}_{request.node.name[:40]}".replace("[", "_").replace("]", "")
        keys = {"schema_file": str(SCHEMAS / "upvest_notification.avsc"), "idle_timeout_seconds": 5}
        keys.update(stream)
        body = "\n".join(
            f"    {k}: {v!r}" if isinstance(v, str) else f"    {k}: {v}" for k, v in keys.items()
        )
        path = tmp_path / "lakeport.yaml"
        path.write_text(
            textwrap.dedent(
                f"""\
                lakehouse:
                  root: {tmp_path / "lakehouse"}
                connections:
                  local:
                    bootstrap_servers: {kafka.bootstrap_servers}
                streams:
                  events:
                    connection: local
                    topic: {topic}
                    table: events
                """
            )
            + body
            + "\n"
        )
        return load_config(path)

    return make


@pytest.fixture
def stream(make_config: Callable[..., LakeportConfig]) -> Stream:
    """The `events` stream of a fresh config (Upvest notifications schema)."""
    return Stream.from_config(make_config(), "events")
