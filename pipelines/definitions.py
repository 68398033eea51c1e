"""Everything lakeport puts into Dagster for a `lakeport.yaml`: one set of definitions per stream."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from dagster import (
    AssetKey,
    AssetsDefinition,
    AutomationCondition,
    Definitions,
    ExecutorDefinition,
    TimeWindowPartitionsDefinition,
)

from connectors import config_path, derived_tables
from pipelines.assets import stream_assets
from pipelines.derived import derived_asset
from pipelines.resources import LakeportResource
from pipelines.schedules import (
    ingest_job,
    ingest_schedule,
    lag_sensor,
    ledger_sensor,
    upkeep_schedule,
)
from pipelines.translator import LakeportTranslator
from pipelines.upkeep import upkeep_job

Automation = Literal["schedule", "condition"]


def build_definitions(
    config: str | Path | LakeportResource | None = None,
    *,
    translator: LakeportTranslator | None = None,
    streams: Sequence[str] | None = None,
    automation: Automation = "schedule",
    executor: ExecutorDefinition | None = None,
    step_tags: Mapping[str, Any] | None = None,
) -> Definitions:
    """Assets with their checks, ingestion and upkeep jobs, schedules and sensors per stream.

    `config` is a path (default: `$LAKEPORT_CONFIG` or `./lakeport.yaml`) or a
    `LakeportResource` (e.g. with `EnvVar` secrets). `automation="schedule"` runs forward
    ingestion on each stream's cron; `"condition"` instead gives each asset
    `AutomationCondition.on_missing()`: every window is read (a `fill`) as soon as it closes,
    by Dagster's automation sensor.

    A stream with `workers: N` ingests in N shard steps; `executor` decides where steps run
    (Dagster's multiprocess executor by default; `k8s_job_executor` from dagster-k8s for a pod
    per step) and `step_tags` go on every ingestion step (e.g. `dagster-k8s/config` with the
    CPU and memory of a worker).
    """
    lakeport = (
        config
        if isinstance(config, LakeportResource)
        else LakeportResource(config_path=str(config_path(config).resolve()))
    )
    assets: list[AssetsDefinition] = []
    schedules, sensors, jobs = [], [], []
    for stream, spec, asset in stream_assets(lakeport, translator, streams):
        name, key = stream.name, spec.key
        partitions = asset.partitions_def
        assert isinstance(partitions, TimeWindowPartitionsDefinition)
        if automation == "condition":
            asset = asset.map_asset_specs(
                lambda s: s.replace_attributes(
                    automation_condition=AutomationCondition.on_missing()
                )
            )
        assets.append(asset)
        derived = derived_tables(lakeport.config(), name)
        assets += [derived_asset(table, key, partitions) for table in derived]
        derived_keys = [(table.name, AssetKey(table.name)) for table in derived]
        ingest = ingest_job(
            name, key, partitions, stream.config.workers, step_tags, derived=derived_keys
        )
        jobs.append(ingest)
        if automation == "schedule":
            schedules.append(ingest_schedule(stream.config.schedule, ingest))
            sensors.append(lag_sensor(name, key, stream, ingest))
        sensors.append(ledger_sensor(name, key, partitions))
        upkeep = upkeep_job(name, key)
        jobs.append(upkeep)
        schedules.append(upkeep_schedule(upkeep))
    return Definitions(
        assets=assets,
        schedules=schedules,
        sensors=sensors,
        jobs=jobs,
        resources={"lakeport": lakeport},
        executor=executor,
    )
