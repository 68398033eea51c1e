"""Schedules and sensors: forward ingestion per stream (on a cron, and when lag grows), upkeep."""

import time
from typing import TYPE_CHECKING

from dagster import (
    AssetsDefinition,
    JobDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorDefinition,
    SkipReason,
    define_asset_job,
    schedule,
    sensor,
)

from connectors import StreamConfig, status
from pipelines.assets import partitions_for
from pipelines.resources import LakeportResource

if TYPE_CHECKING:  # what define_asset_job returns; Dagster does not export the name
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )


def ingest_job(
    name: str, stream: StreamConfig, asset: AssetsDefinition
) -> "UnresolvedAssetJobDefinition":
    """The stream's ingestion job: one partition of its asset per run."""
    return define_asset_job(
        f"{name}_ingest", selection=[asset], partitions_def=partitions_for(stream)
    )


def _current_window(stream: StreamConfig, timestamp: float) -> RunRequest:
    """A run of the window containing `timestamp`: forward ingestion to the high watermark."""
    key = partitions_for(stream).get_partition_key_for_timestamp(timestamp)
    return RunRequest(run_key=None, partition_key=key)


def ingest_schedule(
    name: str, stream: StreamConfig, job: "UnresolvedAssetJobDefinition"
) -> ScheduleDefinition:
    """Every tick materializes the current time window, i.e. forward ingestion to the high mark.

    Overlapping ticks cannot run two ingestions of a stream at once: the asset's pool
    (`lakeport_<stream>`) admits one at a time; the ledger's fence would also refuse a duplicate.
    """

    @schedule(
        name=f"{name}_ingest_schedule",
        cron_schedule=stream.schedule,
        job=job,
        execution_timezone="UTC",
    )
    def tick(context: ScheduleEvaluationContext) -> RunRequest:
        return _current_window(stream, context.scheduled_execution_time.timestamp())

    return tick


def lag_sensor(
    name: str, stream: StreamConfig, job: "UnresolvedAssetJobDefinition"
) -> SensorDefinition:
    """Starts an ingestion between schedule ticks when the stream falls `max_lag_records` behind."""

    @sensor(name=f"{name}_lag_sensor", job=job, minimum_interval_seconds=60)
    def lagging(lakeport: LakeportResource) -> RunRequest | SkipReason:
        lag = sum(p.lag or 0 for p in status(lakeport.stream(name)).partitions)
        if lag <= stream.max_lag_records:
            return SkipReason(f"{lag} records behind, threshold {stream.max_lag_records}")
        return _current_window(stream, time.time())

    return lagging


def upkeep_schedule(job: JobDefinition) -> ScheduleDefinition:
    return ScheduleDefinition(job=job, cron_schedule="17 3 * * *", execution_timezone="UTC")
