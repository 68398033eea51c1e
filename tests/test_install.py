"""A production install: `pip install .` (not editable) holds the engine and the Dagster code
location, runs `lakeport ingest`, and knows the development verbs live only in the checkout."""

from __future__ import annotations

import site
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

from connectors import Stream
from tests.helpers import ROOT, config_file, produce


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with lakeport's wheel installed; its dependencies come from the test venv."""
    where = tmp_path_factory.mktemp("install")
    wheels = where / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "-w", str(wheels), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    packages = next(venv.glob("lib/python*/site-packages"))
    # A plain path line: the test venv's packages, but not its editable finder for lakeport.
    (packages / "dependencies.pth").write_text(site.getsitepackages()[0] + "\n")
    wheel = next(wheels.glob("lakeport-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--quiet", "--no-deps", str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    return venv


def _lakeport(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "lakeport"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_installed_package_holds_the_engine_and_pipelines_but_no_dev_tooling(
    installed: Path, tmp_path: Path
) -> None:
    python = str(installed / "bin" / "python")
    probe = "import connectors, pipelines.definitions, importlib.util as u; print(connectors.__file__, u.find_spec('dev'))"
    out = subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=True
    ).stdout.split()
    assert "site-packages" in out[0] and str(ROOT) not in out[0]
    assert out[1] == "None"


def test_installed_lakeport_ingests_a_topic_from_any_directory(
    installed: Path, stream: Stream, tmp_path: Path
) -> None:
    per_partition = produce(stream, 500)

    proc = _lakeport(installed, tmp_path, "--config", str(config_file(stream)), "ingest")

    assert proc.returncode == 0, proc.stderr
    assert "events [forward]: 500 rows, 0 dead letters" in proc.stdout
    assert DeltaTable(stream.table.uri).count() == sum(per_partition.values()) == 500


def test_installed_lakeport_says_the_dev_verbs_need_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    proc = _lakeport(installed, tmp_path, "broker", "status")

    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "lakeport: error: this command is development tooling that lives in the lakeport"
        " checkout (dev/): run it from a clone of the repository (e.g. `.venv/bin/lakeport broker"
        " start`)"
    )


def test_installed_lakeport_finds_the_dev_verbs_when_run_inside_the_checkout(
    installed: Path,
) -> None:
    proc = _lakeport(installed, ROOT, "broker", "status", "--home", "/nonexistent/broker-home")

    assert proc.returncode == 1
    assert proc.stdout.strip() == "no broker was started from /nonexistent/broker-home"
