"""Schedules: forward ingestion per stream, and daily table upkeep."""

from dagster import (
    AssetsDefinition,
    JobDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)

from connectors.config import StreamConfig
from pipelines.assets import partitions_for


def ingest_schedule(name: str, stream: StreamConfig, asset: AssetsDefinition) -> ScheduleDefinition:
    """Every tick materializes the current time window, i.e. forward ingestion to the high mark.

    Overlapping ticks cannot run two ingestions of a stream at once: the asset's pool
    (`lakeport_<stream>`) admits one at a time; the ledger's fence would also refuse a duplicate.
    """
    partitions = partitions_for(stream)
    job = define_asset_job(f"{name}_ingest", selection=[asset], partitions_def=partitions)

    @schedule(
        name=f"{name}_ingest_schedule",
        cron_schedule=stream.schedule,
        job=job,
        execution_timezone="UTC",
    )
    def tick(context: ScheduleEvaluationContext) -> RunRequest:
        key = partitions.get_partition_key_for_timestamp(
            context.scheduled_execution_time.timestamp()
        )
        return RunRequest(run_key=None, partition_key=key)

    return tick


def upkeep_schedule(job: JobDefinition) -> ScheduleDefinition:
    return ScheduleDefinition(job=job, cron_schedule="17 3 * * *", execution_timezone="UTC")
