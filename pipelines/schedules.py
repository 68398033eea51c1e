"""Forward ingestion per stream as a named job, and what starts it: a cron schedule, a lag
sensor; the ledger sensor that shows commits made outside Dagster; the upkeep schedule.

The ingestion job is not a run of the partitioned asset: one forward run can complete many
windows or none, so it lands everything new and then reports a materialization for each
window the ledger now covers completely, and evaluates the stream's checks.
"""

import time

from dagster import (
    AssetKey,
    AssetObservation,
    DefaultSensorStatus,
    JobDefinition,
    OpExecutionContext,
    RunRequest,
    ScheduleDefinition,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    TimeWindowPartitionsDefinition,
    job,
    op,
    sensor,
)

from connectors import Stream, TransientError, run_forward, status
from pipelines.assets import completed_windows, retry_later, run_metadata, span
from pipelines.checks import as_evaluation, evaluate
from pipelines.resources import LakeportResource


def ingest_job(
    name: str, key: AssetKey, partitions: TimeWindowPartitionsDefinition
) -> JobDefinition:
    """`<asset>_ingest`: forward ingestion, then the windows it completed, then the checks."""
    ident = key.to_python_identifier()

    @op(name=f"{ident}_forward", pool=f"lakeport_{name}")
    def forward(context: OpExecutionContext, lakeport: LakeportResource) -> None:
        engine = lakeport.stream(name)
        try:
            report = run_forward(engine)
        except TransientError as exc:
            raise retry_later(context, name, exc) from exc
        context.log_event(AssetObservation(asset_key=key, metadata=run_metadata(report)))
        events = completed_windows(
            engine, key, partitions, "forward ingestion", instance=context.instance
        )
        for event in events:
            context.log_event(event)
        context.log.info(
            f"{name}: landed {report.records} records and {report.dead} dead letters in"
            f" {report.commits} commits ({report.seconds:.2f} s); {span(events)}"
        )
        for result in evaluate(engine, key):
            # Dagster logs check evaluations from any op; only its annotation lags behind.
            context.log_event(as_evaluation(result))  # type: ignore[arg-type]

    @job(name=f"{ident}_ingest", description=f"Forward ingestion of stream {name!r}.")
    def ingest() -> None:
        forward()

    return ingest


def ingest_schedule(cron: str, job: JobDefinition) -> ScheduleDefinition:
    """Forward ingestion on the stream's cron. Overlapping ticks queue in the stream's pool
    (`lakeport_<stream>`); the ledger's fence would also refuse a duplicate."""
    return ScheduleDefinition(
        name=f"{job.name}_schedule", job=job, cron_schedule=cron, execution_timezone="UTC"
    )


def lag_sensor(name: str, key: AssetKey, stream: Stream, job: JobDefinition) -> SensorDefinition:
    """Starts an ingestion between schedule ticks when the stream falls `max_lag_records` behind."""
    threshold = stream.config.max_lag_records

    # By job name: a sensor holding the job object trips a beta warning in Dagster 1.13 when
    # Definitions binds resources to it.
    @sensor(
        name=f"{key.to_python_identifier()}_lag_sensor",
        job_name=job.name,
        minimum_interval_seconds=60,
    )
    def lagging(lakeport: LakeportResource) -> RunRequest | SkipReason:
        lag = sum(p.lag or 0 for p in status(lakeport.stream(name)).partitions)
        if lag <= threshold:
            return SkipReason(f"{lag} records behind, threshold {threshold}")
        return RunRequest(run_key=f"lag-{int(time.time())}")

    return lagging


def ledger_sensor(
    name: str, key: AssetKey, partitions: TimeWindowPartitionsDefinition
) -> SensorDefinition:
    """`<asset>_ledger_sensor`: commits made outside Dagster (the `lakeport` CLI, another
    orchestrator) show up as the windows they completed and the table's new version.

    Its cursor is the last Delta version it saw; on by default, so the UI never disagrees
    with `lakeport status`.
    """

    @sensor(
        name=f"{key.to_python_identifier()}_ledger_sensor",
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Reports windows of {name!r} completed by commits made outside Dagster.",
    )
    def ledger(
        context: SensorEvaluationContext, lakeport: LakeportResource
    ) -> SensorResult | SkipReason:
        engine = lakeport.stream(name)
        table = engine.table.open_existing()
        seen = int(context.cursor) if context.cursor else -1
        if table is None or table.version() <= seen:
            return SkipReason(f"no commit since table version {seen}")
        version = table.version()
        operations = sorted(
            {
                str(entry["lakeport.operation"])
                for entry in table.history(min(version - seen, 100))
                if "lakeport.operation" in entry
            }
        )
        events = completed_windows(
            engine, key, partitions, "commits outside Dagster", instance=context.instance
        )
        observation = AssetObservation(
            asset_key=key,
            metadata={"delta_version": version, "operations": ", ".join(operations)},
        )
        return SensorResult(asset_events=[*events, observation], cursor=str(version))

    return ledger


def upkeep_schedule(job: JobDefinition) -> ScheduleDefinition:
    return ScheduleDefinition(job=job, cron_schedule="17 3 * * *", execution_timezone="UTC")
