"""Tables on S3-compatible object storage (moto's S3 server, a real HTTP endpoint on 127.0.0.1):
ingestion works end to end, and each way the store can be misconfigured or away is one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from connectors import Stream, load_config
from dev.local_broker import LocalBroker
from tests.conftest import SCHEMAS
from tests.helpers import (
    assert_consistent,
    assert_one_line_error,
    closed_port,
    lakeport_cli,
    produce,
)

BUCKET = "lake"


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`moto_server` on a free port, with the bucket `lake`."""
    server = shutil.which("moto_server") or str(
        Path(os.__file__).parents[3] / "bin" / "moto_server"
    )
    port = closed_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(f"{url}/{BUCKET}", method="PUT"))
                break
            except OSError:
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def s3_config(
    tmp_path: Path, kafka: LocalBroker, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Path]:
    """A lakeport.yaml whose lakehouse is s3://<bucket>/<test>; storage options overridable."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    def write(bucket: str = BUCKET, **options: object) -> Path:
        storage = {
            "AWS_ENDPOINT_URL": s3_endpoint,
            "AWS_ALLOW_HTTP": True,  # a YAML boolean, as users write it
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "${AWS_SECRET_ACCESS_KEY}",
            **options,
        }
        document = {
            "lakehouse": {
                "root": f"s3://{bucket}/{tmp_path.name}",
                "storage_options": {k: v for k, v in storage.items() if v is not None},
            },
            "connections": {"local": {"bootstrap_servers": kafka.bootstrap_servers}},
            "streams": {
                "events": {
                    "connection": "local",
                    "topic": f"s3_{tmp_path.name}",
                    "table": "events",
                    "schema_file": str(SCHEMAS / "upvest_notification.avsc"),
                    "batch_records": 200,
                    "idle_timeout_seconds": 5,
                }
            },
        }
        path = tmp_path / "lakeport.yaml"
        path.write_text(yaml.safe_dump(document))
        return path

    return write


def test_ingest_status_audit_and_query_on_s3(s3_config: Callable[..., Path]) -> None:
    path = s3_config()
    stream = Stream.from_config(load_config(path), "events")
    per = produce(stream, 600, partitions=3)
    ingested = lakeport_cli(path, "ingest")
    assert ingested.returncode == 0, ingested.stderr
    assert "events [forward]: 600 rows" in ingested.stdout
    assert lakeport_cli(path, "audit").returncode == 0
    query = lakeport_cli(path, "query", "SELECT count(*) AS n FROM events")
    assert query.stdout.split()[1] == "600"
    assert_consistent(stream)
    assert sum(per.values()) == 600


def test_an_http_endpoint_without_allow_http_is_one_line_naming_the_setting(
    s3_config: Callable[..., Path],
) -> None:
    result = lakeport_cli(s3_config(AWS_ALLOW_HTTP=None), "status")
    assert_one_line_error(
        result,
        "the storage endpoint uses http:// but HTTP is not allowed",
        'set AWS_ALLOW_HTTP: "true" in lakehouse.storage_options',
    )


def test_a_missing_bucket_is_one_line_naming_lakehouse_root(
    s3_config: Callable[..., Path],
) -> None:
    result = lakeport_cli(s3_config(bucket="no-such-bucket"), "status")
    assert_one_line_error(
        result,
        "cannot open table s3://no-such-bucket/",
        "the bucket does not exist; check lakehouse.root",
    )


def test_an_endpoint_that_is_down_is_one_line_after_bounded_retries(
    s3_config: Callable[..., Path],
) -> None:
    began = time.monotonic()
    result = lakeport_cli(s3_config(AWS_ENDPOINT_URL=f"http://127.0.0.1:{closed_port()}"), "status")
    line = assert_one_line_error(
        result,
        "the storage endpoint did not answer (Connection refused",
        "check lakehouse.root and AWS_ENDPOINT_URL",
        "gave up after",
    )
    assert "testing" not in line
    assert time.monotonic() - began < 90
