"""Derived tables as Dagster assets: downstream of their stream's asset, on the same partitions.

Each derived table of a stream is an asset that depends on the stream's table asset and shares
its time partitions. Materializing the window that contains "now" derives everything pending:
the raw rows committed since the last run and the windows the raw table rewrote (a raw backfill
needs no derived backfill: the raw ledger records what it rewrote). Materializing a past window
derives that window's raw offsets again, which is how a changed derived schema reaches history.
An eager automation condition requests the derived partition once its raw partition updates;
the sensor that evaluates it, `<stream>_derived_automation`, runs by default (Dagster's own
default automation sensor starts stopped).

Checks guard each derived table: `counts_reconcile` (the raw rows of the run's window, or of
the whole table, against the derived rows: every event or entity of the window is there) and
`matches_recomputation` (ledger, counts and rows against a recomputation from scratch; it
reads every absorbed raw row of the table's category, so it is not blocking).
"""

from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetExecutionContext,
    AssetsDefinition,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    BackfillPolicy,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    RetryRequested,
    SensorDefinition,
    TableColumn,
    TableSchema,
    asset,
    asset_check,
)

from connectors import (
    DerivedTable,
    DeriveReport,
    LakeportConfig,
    TransientError,
    audit_derived,
    derive,
    derived_tables,
    find_derived,
    reconcile,
    time_window,
)
from pipelines.assets import partitions_for
from pipelines.resources import LakeportResource


def derived_metadata(report: DeriveReport) -> dict[str, Any]:
    """Materialization metadata: what the run absorbed and derived again, and the outcome."""
    return {
        "records": report.records,
        "dead_letters": report.dead,
        "inserted": report.inserted,
        "updated": report.updated,
        "deleted": report.deleted,
        "files_rewritten": report.files_rewritten,
        "commits": report.commits,
        "delta_version": report.table_version,
        "absorbed": MetadataValue.json([str(r) for r in report.absorbed]),
        "derived_again": MetadataValue.json([str(r) for r in report.rederived]),
        "duration_s": round(report.seconds, 3),
        "events_per_s": round(report.events_per_second, 1),
        "replans": report.replans,
    }


def derived_asset(stream: str, table: DerivedTable) -> AssetsDefinition:
    """The asset of one derived table (factory: one per entry of a stream's `derived`)."""
    config = table.config

    @asset(
        name=table.name,
        deps=[table.source.config.table],
        group_name="lakeport_derived",
        kinds={"delta"},
        description=config.description or f"{config.kind} table derived from {stream!r}.",
        owners=config.owners,
        tags=config.tags,
        metadata={
            "dagster/column_schema": TableSchema(
                columns=[TableColumn(f.name, str(f.type)) for f in table.arrow]
            ),
            "lakeport_stream": stream,
            "derived_kind": config.kind,
            "key": MetadataValue.json(table.key),
        },
        partitions_def=partitions_for(table.source.config),
        backfill_policy=BackfillPolicy.single_run(),
        pool=f"lakeport_{table.name}",
        automation_condition=AutomationCondition.eager(),
    )
    def materialize(
        context: AssetExecutionContext, lakeport: LakeportResource
    ) -> MaterializeResult[None]:
        engine = find_derived(lakeport.config(), table.name)
        window = context.partition_time_window
        try:
            if window.end > datetime.now(UTC):
                report = derive(engine)
            else:
                report = derive(engine, time_window(engine, window.start, window.end))
        except TransientError as exc:  # every commit is fenced: a retry of the run is safe
            context.log.warning(f"{table.name}: {exc}; asking Dagster to retry the run")
            raise RetryRequested(max_retries=2, seconds_to_wait=30) from exc
        return MaterializeResult(metadata=derived_metadata(report))

    return materialize


def derived_checks(table: DerivedTable) -> list[AssetChecksDefinition]:
    """`counts_reconcile` and `matches_recomputation` of one derived table."""

    @asset_check(asset=table.name, name="counts_reconcile", blocking=False)
    def counts_reconcile(
        context: AssetCheckExecutionContext, lakeport: LakeportResource
    ) -> AssetCheckResult:
        """Every event (or entity) of the window's raw rows is in the table; dead letters match."""
        if context.has_partition_key or context.has_partition_key_range:
            start, end = context.partition_time_window
        else:
            start, end = datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
        found = reconcile(find_derived(lakeport.config(), table.name), start, end)
        return AssetCheckResult(
            passed=found.ok,
            metadata={
                "window": f"[{start.isoformat()}, {end.isoformat()})",
                "raw_records": found.records,
                "dead_letters": found.dead,
                "dead_letters_in_table": found.dead_in_table,
                "keys": found.keys,
                "keys_in_table": found.present,
            },
            description=(
                f"{found.present} of {found.keys} keys of {found.records} raw rows are in the"
                f" table; {found.dead_in_table} of {found.dead} dead letters"
            ),
        )

    @asset_check(asset=table.name, name="matches_recomputation", blocking=False)
    def matches_recomputation(lakeport: LakeportResource) -> AssetCheckResult:
        """Ledger, counts and rows equal a recomputation from scratch (pending work is noted)."""
        result = audit_derived(find_derived(lakeport.config(), table.name))
        return AssetCheckResult(
            passed=result.ok,
            metadata={
                "rows": result.rows,
                "dead_letters": result.dead,
                "problems": MetadataValue.json(result.problems),
                "pending": MetadataValue.json(result.pending),
            },
            description="; ".join(result.problems) or "equal to a recomputation from scratch",
        )

    return [counts_reconcile, matches_recomputation]


def derived_definitions(
    config: LakeportConfig, stream: str
) -> tuple[list[AssetsDefinition], list[AssetChecksDefinition], list[SensorDefinition]]:
    """The assets, checks and automation sensor of every derived table of `stream`."""
    tables = derived_tables(config, stream)
    if not tables:
        return [], [], []
    assets = [derived_asset(stream, table) for table in tables]
    automation = AutomationConditionSensorDefinition(
        f"{stream}_derived_automation",
        target=assets,
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
    )
    return assets, [c for table in tables for c in derived_checks(table)], [automation]
