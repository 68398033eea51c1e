"""The Kubernetes deployment (deploy/kubernetes) loads and validates: a pod per shard step.

No cluster here: Dagster loads the definitions with dagster-k8s's `k8s_job_executor`, checks
them with `dagster definitions validate`, and the Helm values point at that code location.
"""

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from connectors.config import LakeportConfig
from tests.helpers import ROOT


@pytest.fixture
def sharded(make_config: Callable[..., LakeportConfig], monkeypatch: pytest.MonkeyPatch) -> Path:
    config = make_config(time_partitions="hourly", time_partitions_start="2026-01-05", workers=4)
    path = config.base_dir / "lakeport.yaml"
    monkeypatch.setenv("LAKEPORT_CONFIG", str(path))
    return path


def test_kubernetes_code_location_runs_each_shard_step_in_its_own_pod_with_worker_resources(
    sharded: Path,
) -> None:
    module = importlib.reload(importlib.import_module("deploy.kubernetes.code_location"))
    job = module.defs.resolve_job_def("events_ingest")

    assert job.executor_def.name == "k8s"
    shard_steps = [n for n in job.graph.node_dict if "_forward_" in n]
    assert shard_steps == [f"events_forward_{i}_of_4" for i in range(4)]
    for step in shard_steps:
        tags = job.graph.node_dict[step].definition.tags
        resources = json.loads(tags["dagster-k8s/config"])["container_config"]["resources"]
        assert resources["requests"] == {"cpu": "2", "memory": "1Gi"}


def test_dagster_validates_the_kubernetes_code_location(sharded: Path) -> None:
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-m",
            "deploy.kubernetes.code_location",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={**os.environ, "LAKEPORT_CONFIG": str(sharded)},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Validation successful" in proc.stdout + proc.stderr


def test_helm_values_run_the_kubernetes_code_location_with_secrets_from_a_secret() -> None:
    values = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "values.yaml").read_text())

    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "deploy.kubernetes.code_location"]
    assert {"name": "lakeport-secrets"} in deployment["envSecrets"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
