"""Builds the Dagster definitions from lakeport's configuration file: one set per stream."""

from pathlib import Path

from dagster import Definitions

from connectors import config_path, load_config, load_schema
from pipelines.assets import stream_asset
from pipelines.checks import stream_checks
from pipelines.derived import derived_definitions
from pipelines.resources import LakeportResource
from pipelines.schedules import ingest_job, ingest_schedule, lag_sensor, upkeep_schedule
from pipelines.upkeep import upkeep_job


def build_definitions(path: str | Path | None = None) -> Definitions:
    """Assets, checks, schedules and upkeep jobs for every stream of the config file."""
    file = config_path(path).resolve()
    config = load_config(file)
    assets, checks, schedules, sensors, jobs = [], [], [], [], []
    for name, stream in config.streams.items():
        asset = stream_asset(name, stream, load_schema(config.schema_path(stream)))
        assets.append(asset)
        checks += stream_checks(name, stream)
        derived, guards, automation = derived_definitions(config, name)
        assets += derived
        checks += guards
        sensors += automation
        ingest = ingest_job(name, stream, asset)
        schedules.append(ingest_schedule(name, stream, ingest))
        sensors.append(lag_sensor(name, stream, ingest))
        upkeep = upkeep_job(name, stream.table)
        jobs.append(upkeep)
        schedules.append(upkeep_schedule(upkeep))
    return Definitions(
        assets=assets,
        asset_checks=checks,
        schedules=schedules,
        sensors=sensors,
        jobs=jobs,
        resources={"lakeport": LakeportResource(config_path=str(file))},
    )
