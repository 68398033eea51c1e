"""Table upkeep as a Dagster job: compaction, checkpoint and vacuum, recorded as observations."""

from dagster import AssetKey, AssetObservation, JobDefinition, OpExecutionContext, job, op

from connectors import UpkeepReport, checkpoint, compact, vacuum
from pipelines.resources import LakeportResource


def upkeep_job(name: str, key: AssetKey) -> JobDefinition:
    """`<asset>_upkeep`: compact, then checkpoint, then vacuum one stream's table."""
    ident = key.to_python_identifier()

    def observe(context: OpExecutionContext, report: UpkeepReport) -> None:
        context.log_event(
            AssetObservation(
                asset_key=key,
                metadata={
                    "upkeep": report.action,
                    "delta_version": report.table_version,
                    **report.details,
                },
            )
        )

    @op(name=f"{ident}_compact")
    def compact_op(context: OpExecutionContext, lakeport: LakeportResource) -> int:
        report = compact(lakeport.stream(name).table)
        observe(context, report)
        return report.table_version

    @op(name=f"{ident}_checkpoint")
    def checkpoint_op(context: OpExecutionContext, lakeport: LakeportResource, after: int) -> int:
        report = checkpoint(lakeport.stream(name).table)
        observe(context, report)
        return report.table_version

    @op(name=f"{ident}_vacuum")
    def vacuum_op(context: OpExecutionContext, lakeport: LakeportResource, after: int) -> None:
        observe(context, vacuum(lakeport.stream(name).table))

    @job(name=f"{ident}_upkeep", tags={"dagster/concurrency_key": f"lakeport_{name}_upkeep"})
    def upkeep() -> None:
        vacuum_op(checkpoint_op(compact_op()))

    return upkeep
