"""Forward ingestion per stream as a named job, and what starts it: a cron schedule, a lag
sensor; the ledger sensor that shows commits made outside Dagster; the upkeep schedule.

The ingestion job is not a run of the partitioned asset: one forward run can complete many
windows or none, so it lands everything new and then reports a materialization for each
window the ledger now covers completely, and evaluates the stream's checks.
"""

import time
from collections.abc import Mapping, Sequence
from typing import Any

from dagster import (
    AssetKey,
    AssetObservation,
    DefaultSensorStatus,
    JobDefinition,
    OpDefinition,
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

from connectors import (
    EveryFewSeconds,
    RunReport,
    Shard,
    Stream,
    TransientError,
    run_forward,
    status,
)
from pipelines.assets import completed_windows, retry_later, run_metadata, span
from pipelines.checks import as_evaluation, evaluate
from pipelines.derived import derive_pending
from pipelines.resources import LakeportResource


def ingest_job(
    name: str,
    key: AssetKey,
    partitions: TimeWindowPartitionsDefinition,
    workers: int = 1,
    step_tags: Mapping[str, Any] | None = None,
    derived: Sequence[tuple[str, AssetKey]] = (),
) -> JobDefinition:
    """`<asset>_ingest`: forward ingestion, then the windows it completed, then the checks.

    With `workers` > 1 the topic's partitions are dealt to that many shards (p % workers), each
    a step of its own (`<asset>_forward_<i>_of_<n>`): its own process on the multiprocess
    executor, its own pod on Kubernetes. A last step reports the windows and the checks once
    every shard is done. A failed shard fails the run without touching the other shards'
    commits; re-executing the run from its failure redoes only what is missing. `step_tags`
    go on the ingestion steps (e.g. `dagster-k8s/config` with the resources a worker needs).
    The stream's `derived` tables (name, asset key) then absorb what is pending.
    """
    ident = key.to_python_identifier()
    tags = dict(step_tags or {})

    def land(
        context: OpExecutionContext, lakeport: LakeportResource, shard: Shard | None
    ) -> RunReport:
        try:
            progress = EveryFewSeconds(context.log.info)  # a long backlog shows how far it is
            report = run_forward(lakeport.stream(name), partitions=shard, progress=progress)
        except TransientError as exc:
            raise retry_later(context, name, exc) from exc
        context.log.info(
            f"{name}{f' shard {shard}' if shard else ''}: landed {report.records} records and"
            f" {report.dead} dead letters in {report.commits} commits ({report.seconds:.2f} s)"
        )
        return report

    def publish(
        context: OpExecutionContext, lakeport: LakeportResource, reports: list[RunReport]
    ) -> None:
        engine = lakeport.stream(name)
        context.log_event(AssetObservation(asset_key=key, metadata=run_metadata(*reports)))
        events = completed_windows(
            engine, key, partitions, "forward ingestion", instance=context.instance
        )
        for event in events:
            context.log_event(event)
        context.log.info(f"{name}: {span(events)}")
        failed = []
        for result in evaluate(engine, key):
            # Dagster logs check evaluations from any op; only its annotation lags behind.
            evaluation = as_evaluation(result)
            context.log_event(evaluation)  # type: ignore[arg-type]
            if evaluation.blocking and not evaluation.passed:
                failed.append(evaluation.check_name)
        if derived and failed:  # as Dagster does downstream of a failed blocking check
            context.log.warning(
                f"{name}: derived tables not updated: blocking check {', '.join(failed)} failed"
            )
        elif derived:
            derive_pending(context, lakeport, list(derived), partitions)

    if workers == 1:

        @op(name=f"{ident}_forward", pool=f"lakeport_{name}", tags=tags)
        def forward(context: OpExecutionContext, lakeport: LakeportResource) -> None:
            publish(context, lakeport, [land(context, lakeport, None)])

        @job(name=f"{ident}_ingest", description=f"Forward ingestion of stream {name!r}.")
        def ingest() -> None:
            forward()

        return ingest

    def shard_op(shard: Shard) -> OpDefinition:
        @op(
            name=f"{ident}_forward_{shard.index}_of_{shard.count}",
            description=f"Forward ingestion of the partitions p % {shard.count} == {shard.index}.",
            pool=f"lakeport_{name}_{shard.index}_of_{shard.count}",  # shards run side by side
            tags=tags,
        )
        def forward_shard(context: OpExecutionContext, lakeport: LakeportResource) -> RunReport:
            return land(context, lakeport, shard)

        return forward_shard

    @op(name=f"{ident}_completed_windows")
    def windows(
        context: OpExecutionContext, lakeport: LakeportResource, reports: list[RunReport]
    ) -> None:
        publish(context, lakeport, reports)

    shard_ops = [shard_op(Shard(i, workers)) for i in range(workers)]

    @job(
        name=f"{ident}_ingest",
        description=f"Forward ingestion of stream {name!r} in {workers} shard steps.",
    )
    def ingest_sharded() -> None:
        windows([step() for step in shard_ops])

    return ingest_sharded


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
