"""Table upkeep as a Dagster job: compaction, checkpoint and vacuum, recorded as observations."""

from dagster import AssetObservation, JobDefinition, OpExecutionContext, job, op

from connectors import UpkeepReport, checkpoint, compact, vacuum
from pipelines.resources import LakeportResource


def upkeep_job(name: str, table: str) -> JobDefinition:
    """Compact, then checkpoint, then vacuum one stream's table."""

    def observe(context: OpExecutionContext, report: UpkeepReport) -> None:
        context.log_event(
            AssetObservation(
                asset_key=table,
                metadata={
                    "upkeep": report.action,
                    "delta_version": report.table_version,
                    **report.details,
                },
            )
        )

    @op(name=f"{name}_compact")
    def compact_op(context: OpExecutionContext, lakeport: LakeportResource) -> int:
        report = compact(lakeport.stream(name).table)
        observe(context, report)
        return report.table_version

    @op(name=f"{name}_checkpoint")
    def checkpoint_op(context: OpExecutionContext, lakeport: LakeportResource, after: int) -> int:
        report = checkpoint(lakeport.stream(name).table)
        observe(context, report)
        return report.table_version

    @op(name=f"{name}_vacuum")
    def vacuum_op(context: OpExecutionContext, lakeport: LakeportResource, after: int) -> None:
        observe(context, vacuum(lakeport.stream(name).table))

    @job(name=f"{name}_upkeep", tags={"dagster/concurrency_key": f"lakeport_{name}_upkeep"})
    def upkeep() -> None:
        vacuum_op(checkpoint_op(compact_op()))

    return upkeep
