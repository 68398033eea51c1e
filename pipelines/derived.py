"""Derived tables in Dagster: assets downstream of their stream's asset, on the same partitions.

As for the raw table, a derived partition is materialized when the derived table's ledger
covers its window completely (the window's raw offsets are absorbed, or lost to retention),
whoever did the work:

- the stream's ingestion job derives everything pending right after landing new records (new
  raw rows, and windows a raw backfill or re-drive rewrote: those need no derived backfill);
- `lakeport derive` on the command line (reported by the next ingestion);
- a backfill of the derived asset derives those windows again, e.g. after a change of the
  derived `.avsc`.

Checks guard each derived table: `counts_reconcile` (every event or entity of the window's raw
rows is in the table, dead letters match) and `matches_recomputation` (ledger, counts and rows
against a recomputation from scratch; it reads every absorbed raw row of the table's category,
so it is not blocking).
"""

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    BetaWarning,
    MetadataValue,
    OpExecutionContext,
    TableColumn,
    TableSchema,
    TimeWindow,
    TimeWindowPartitionsDefinition,
    multi_asset,
)

from connectors import (
    DerivedTable,
    DeriveReport,
    TransientError,
    audit_derived,
    derive,
    find_derived,
    reconcile,
    time_window,
)
from pipelines.assets import completed_windows, retry_later, span
from pipelines.resources import LakeportResource


def derived_metadata(report: DeriveReport) -> dict[str, Any]:
    """What a derive run absorbed and derived again, and the outcome (an observation)."""
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


def derive_pending(
    context: OpExecutionContext,
    lakeport: LakeportResource,
    derived: list[tuple[str, AssetKey]],
    partitions: TimeWindowPartitionsDefinition,
) -> None:
    """After an ingestion: derive what is pending in each derived table, report its windows."""
    for name, key in derived:
        engine = find_derived(lakeport.config(), name)
        report = derive(engine)
        events = completed_windows(
            engine.as_stream(), key, partitions, "derivation", instance=context.instance
        )
        _log_derived(context, name, key, report, events)


def _log_derived(
    context: OpExecutionContext | AssetExecutionContext,
    name: str,
    key: AssetKey,
    report: DeriveReport,
    events: list[AssetMaterialization],
) -> None:
    """A derivation's observation (its figures) and the windows it completed."""
    context.log_event(AssetObservation(asset_key=key, metadata=derived_metadata(report)))
    for event in events:
        context.log_event(event)
    context.log.info(f"{name}: derived {report.records} raw records; {span(events)}")


def counts_reconcile(
    table: DerivedTable, key: AssetKey, window: TimeWindow | None
) -> AssetCheckResult:
    """Every event (or entity) of the window's raw rows is in the table; dead letters match."""
    start, end = window or (datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))
    found = reconcile(table, start, end)
    return AssetCheckResult(
        asset_key=key,
        check_name="counts_reconcile",
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


def matches_recomputation(table: DerivedTable, key: AssetKey) -> AssetCheckResult:
    """Ledger, counts and rows equal a recomputation from scratch (pending work is noted)."""
    result = audit_derived(table)
    return AssetCheckResult(
        asset_key=key,
        check_name="matches_recomputation",
        passed=result.ok,
        metadata={
            "rows": result.rows,
            "dead_letters": result.dead,
            "problems": MetadataValue.json(result.problems),
            "pending": MetadataValue.json(result.pending),
        },
        description="; ".join(result.problems) or "equal to a recomputation from scratch",
    )


def derived_asset(
    table: DerivedTable, upstream: AssetKey, partitions: TimeWindowPartitionsDefinition
) -> AssetsDefinition:
    """The asset of one derived table with its checks; materializing windows derives them again.

    Neither check blocks: `matches_recomputation` reads every absorbed raw row of the table's
    category, and both run with derived backfills or on their own, not on every ingestion.
    """
    config = table.config
    key = AssetKey(table.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)  # see pipelines.assets.stream_asset
        policy = BackfillPolicy.single_run()
    spec = AssetSpec(
        key,
        deps=[upstream],
        group_name="lakeport_derived",
        kinds={"delta"},
        description=config.description or f"{config.kind} table derived from {upstream}.",
        owners=config.owners,
        tags=config.tags,
        metadata={
            "dagster/column_schema": TableSchema(
                columns=[TableColumn(f.name, str(f.type)) for f in table.arrow]
            ),
            "dagster/table_name": table.name,
            "dagster/uri": MetadataValue.path(table.table.uri),
            "lakeport_stream": table.source.name,
            "derived_kind": config.kind,
            "key": MetadataValue.json(table.key),
        },
        skippable=True,
        partitions_def=partitions,
    )
    guards = [
        AssetCheckSpec(name, asset=key, blocking=False, description=check.__doc__)
        for name, check in (
            ("counts_reconcile", counts_reconcile),
            ("matches_recomputation", matches_recomputation),
        )
    ]

    @multi_asset(
        name=f"{key.to_python_identifier()}_windows",
        specs=[spec],
        check_specs=guards,
        partitions_def=partitions,
        backfill_policy=policy,
        pool=f"lakeport_{table.name}",
        can_subset=True,
    )
    def windows(context: AssetExecutionContext, lakeport: LakeportResource) -> Iterator[Any]:
        engine = find_derived(lakeport.config(), table.name)
        partitioned = context.has_partition_key or context.has_partition_key_range
        window = context.partition_time_window if partitioned else None
        if key in context.selected_asset_keys and window is not None:
            try:
                report = derive(engine, time_window(engine, window.start, window.end))
            except TransientError as exc:
                raise retry_later(context, table.name, exc) from exc
            events = completed_windows(
                engine.as_stream(), key, partitions, "derived backfill", keys=context.partition_keys
            )
            _log_derived(context, table.name, key, report, events)
        selected = {k.name for k in context.selected_asset_check_keys}
        if "counts_reconcile" in selected:
            yield counts_reconcile(engine, key, window)
        if "matches_recomputation" in selected:
            yield matches_recomputation(engine, key)

    return windows
