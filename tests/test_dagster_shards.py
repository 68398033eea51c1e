"""A stream with `workers: N` ingests in N shard steps on Dagster's executor, for real.

The multiprocess executor (Dagster's default) runs each shard in its own process, as a
Kubernetes deployment runs each in its own pod: `dagster job execute` here, then the instance
and the table are read back.
"""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from dagster import AssetKey, DagsterEventType, DagsterInstance

from connectors import Stream
from connectors.config import LakeportConfig
from connectors.ranges import Spans
from pipelines import build_definitions
from tests.helpers import ROOT, assert_consistent, covered, delete_records, ledger, produce
from tests.test_dagster import hour, key


def _execute(config: LakeportConfig, home: Path, job: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LAKEPORT_CONFIG": str(config.base_dir / "lakeport.yaml"),
        "DAGSTER_HOME": str(home),
    }
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "job",
            "execute",
            "-m",
            "pipelines.code_location",
            "-j",
            job,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_three_shard_steps_run_in_their_own_processes_and_land_every_offset_once(
    make_config: Callable[..., LakeportConfig], tmp_path: Path
) -> None:
    config = make_config(time_partitions="hourly", workers=3, batch_records=500)
    stream = Stream.from_config(config, "events")
    per = produce(stream, 6000, start=hour(3))
    home = tmp_path / "dagster_home"
    home.mkdir()

    proc = _execute(config, home, "events_ingest")

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_consistent(stream)
    assert covered(stream) == {p: [(0, n)] for p, n in per.items()}
    instance = DagsterInstance.from_config(str(home))
    (run,) = instance.get_runs()
    starts = [
        e
        for e in instance.all_logs(run.run_id)
        if e.dagster_event_type == DagsterEventType.STEP_START
    ]
    shard_steps = {
        e.step_key: e.dagster_event.pid  # type: ignore[union-attr]
        for e in starts
        if "_forward_" in (e.step_key or "")
    }
    assert set(shard_steps) == {f"events_forward_{i}_of_3" for i in range(3)}
    assert len(set(shard_steps.values())) == 3  # three processes
    assert {key(3), key(2), key(1)} <= instance.get_materialized_partitions(AssetKey("events"))
    observation = next(
        e.asset_observation
        for e in instance.all_logs(run.run_id)
        if e.asset_observation is not None
    )
    shards = observation.metadata["shards"].value
    assert sorted(shards) == ["0/3", "1/3", "2/3"]
    assert {s: v["partitions"] for s, v in shards.items()} == {
        "0/3": [0, 3],
        "1/3": [1, 4],
        "2/3": [2, 5],
    }
    assert sum(v["records"] for v in shards.values()) == 6000


def test_a_failed_shard_fails_the_run_keeps_the_others_commits_and_a_rerun_completes(
    make_config: Callable[..., LakeportConfig],
) -> None:
    config = make_config(time_partitions="hourly", workers=2, batch_records=500)
    stream = Stream.from_config(config, "events")
    first = produce(stream, 1200, start=hour(2))
    job = build_definitions(config.base_dir / "lakeport.yaml").resolve_job_def("events_ingest")
    with DagsterInstance.ephemeral() as instance:
        assert job.execute_in_process(instance=instance).success
        more = produce(stream, 1200, seed=2, start=hour(1))
        # retention deletes new records of partition 1 before lakeport read them: the shard of
        # partitions 1, 3, 5 stops (on_retention_loss: fail), the other one lands its share
        delete_records(stream, {1: first[1] + 10})

        failed = job.execute_in_process(instance=instance, raise_on_error=False)

        assert not failed.success
        failures = [e.step_key for e in failed.all_events if e.is_step_failure]
        assert failures == ["events_forward_1_of_2"]
        assert {p: covered(stream)[p] for p in (0, 2, 4)} == {
            p: [(0, first[p] + more[p])] for p in (0, 2, 4)
        }
        rerun = job.execute_in_process(instance=instance)  # the loss is recorded: it continues

    assert rerun.success
    assert covered(stream)[1] == [(0, first[1]), (first[1] + 10, first[1] + more[1])]
    assert ledger(stream).partition(1).lost == Spans.of([(first[1], first[1] + 10)])
    assert_consistent(stream, complete=False)
