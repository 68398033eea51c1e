"""One Dagster asset per configured stream: its Delta table, partitioned by closed time windows.

A partition is materialized when the ledger covers its window completely (every offset whose
record timestamp falls in it is landed, dead-lettered or recorded as lost), whoever did the
work: the forward ingestion job, a backfill of the asset, or a `lakeport` command seen by the
ledger sensor. So the partitions shown as missing are exactly the windows a backfill has to
read, and the open window never shows as materialized.

Materializing partitions of the asset (a backfill) reads the offsets their time windows map to:
only what the ledger lacks (`fill`, the default) or everything, swapped in atomically
(`replace`, in the launchpad's config). A backfill runs as one run per range
(`BackfillPolicy.single_run()`): one plan, one consumer and one sequence of commits for the
whole range instead of N runs contending for the same partitions' ledger fence.
"""

import logging
import warnings
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    BetaWarning,
    Config,
    DagsterInstance,
    DailyPartitionsDefinition,
    HourlyPartitionsDefinition,
    MetadataValue,
    RetryRequested,
    TimeWindowPartitionsDefinition,
    multi_asset,
)

from connectors import (
    EveryFewSeconds,
    LakeportError,
    RunReport,
    Spans,
    Stream,
    TransientError,
    WindowCoverage,
    first_record_time,
    run_time_window,
    window_coverage,
)
from pipelines.checks import check_specs, evaluate
from pipelines.resources import LakeportResource
from pipelines.translator import LakeportStreamProps, LakeportTranslator

log = logging.getLogger("lakeport")


def partitions_for(stream: Stream) -> TimeWindowPartitionsDefinition:
    """Closed time windows of the stream, from `time_partitions_start` or its first record.

    Without a configured start, the first record's time comes from the table's file statistics
    (no broker needed to load definitions); before the first ingest that is the current window,
    so the asset shows partitions from the first record on once the code location reloads.
    """
    kind = (
        HourlyPartitionsDefinition
        if stream.config.time_partitions == "hourly"
        else DailyPartitionsDefinition
    )
    configured = stream.config.time_partitions_start
    if configured:
        start = datetime.fromisoformat(configured).replace(tzinfo=UTC)
    else:
        try:
            start = first_record_time(stream) or datetime.now(UTC)
        except LakeportError as exc:
            log.warning("stream %s: partitions start now (%s)", stream.name, exc)
            start = datetime.now(UTC)
    if kind is DailyPartitionsDefinition:
        start = start.replace(hour=0)
    return kind(
        start_date=start.replace(minute=0, second=0, microsecond=0),
        end_offset=0,
        timezone="UTC",
    )


def run_metadata(*reports: RunReport) -> dict[str, Any]:
    """What a run landed, where, and how fast (an observation of the table); a run spread over
    shards reports each shard's share and timings too."""
    spans: dict[int, Spans] = {}
    for report in reports:
        for r in report.ranges:
            spans[r.partition] = spans.get(r.partition, Spans()).union([(r.start, r.end)])
    lag = {p: n for report in reports for p, n in report.lag.items()}
    seconds = max(report.seconds for report in reports)
    records = sum(report.records for report in reports)
    metadata: dict[str, Any] = {
        "mode": reports[0].mode,
        "records": records,
        "dead_letters": sum(report.dead for report in reports),
        "bytes": sum(report.bytes for report in reports),
        "commits": sum(report.commits for report in reports),
        "delta_version": max(report.table_version or -1 for report in reports),
        "offset_ranges": MetadataValue.json({str(p): str(s) for p, s in sorted(spans.items())}),
        "lost_to_retention": MetadataValue.json([str(r) for x in reports for r in x.lost]),
        "lag_after_run": sum(lag.values()),
        "lag_per_partition": MetadataValue.json({str(p): n for p, n in sorted(lag.items())}),
        "duration_s": round(seconds, 3),
        "events_per_s": round(records / seconds if seconds else 0.0, 1),
        "replans": sum(report.replans for report in reports),
        "conflicts": sum(report.conflicts for report in reports),
        "warnings": MetadataValue.json([w for report in reports for w in report.warnings]),
    }
    if len(reports) > 1:
        metadata["shards"] = MetadataValue.json(
            {
                report.shard or str(i): {
                    "partitions": sorted({r.partition for r in report.ranges}),
                    "records": report.records,
                    "dead_letters": report.dead,
                    "commits": report.commits,
                    "conflicts": report.conflicts,
                    "seconds": round(report.seconds, 3),
                    "events_per_s": round(report.events_per_second, 1),
                    **{k: round(v, 3) for k, v in report.timings.items()},
                }
                for i, report in enumerate(reports)
            }
        )
    return metadata


def window_event(
    key: AssetKey, partition: str, window: WindowCoverage, by: str
) -> AssetMaterialization:
    """A completed window as a partition materialization, with what the table holds of it."""
    lost = sum(len(r) for r in window.lost)
    return AssetMaterialization(
        asset_key=key,
        partition=partition,
        description=f"complete; {lost} offsets lost to retention" if lost else "complete",
        metadata={
            "dagster/row_count": window.rows,
            "records": window.records,
            "dead_letters": window.dead,
            "offset_ranges": MetadataValue.json(
                {str(r.partition): [r.start, r.end] for r in window.ranges}
            ),
            "lost_offsets": lost,
            "lost_to_retention": MetadataValue.json([str(r) for r in window.lost]),
            "delta_version": window.table_version,
            "completed_by": by,
        },
        tags={"lakeport/retention_loss": "true"} if lost else None,
    )


def completed_windows(
    stream: Stream,
    key: AssetKey,
    partitions: TimeWindowPartitionsDefinition,
    by: str,
    instance: DagsterInstance | None = None,
    keys: Sequence[str] | None = None,
) -> list[AssetMaterialization]:
    """Materializations of the windows the ledger now covers completely.

    Looks at `keys`, or else at every closed window the instance does not show as materialized
    yet (so each window is reported once, whoever completed it).
    """
    if keys is None:
        assert instance is not None
        done = instance.get_materialized_partitions(key)
        keys = [k for k in partitions.get_partition_keys() if k not in done]
    windows = [partitions.time_window_for_partition_key(k) for k in keys]
    coverage = window_coverage(stream, [(w.start, w.end) for w in windows])
    return [
        window_event(key, k, window, by)
        for k, window in zip(keys, coverage, strict=True)
        if window.complete
    ]


def span(events: list[AssetMaterialization]) -> str:
    """`3 windows complete (2026-01-05-08:00 .. 2026-01-05-10:00)`, or `no window complete`."""
    keys = sorted(e.partition or "" for e in events)
    if not keys:
        return "no window complete"
    return f"{len(keys)} windows complete ({keys[0]} .. {keys[-1]})"


class BackfillConfig(Config):
    """How a backfill reads its windows."""

    mode: Literal["fill", "replace"] = "fill"
    """`fill` reads only offsets the ledger lacks; `replace` re-reads the windows and swaps them
    in atomically (after a decoder or schema fix)."""


def retry_later(context: Any, name: str, exc: TransientError) -> RetryRequested:
    """Broker, storage or registry away after the engine's own bounded retries: a later attempt
    of the same run is safe (every commit is fenced by the ledger)."""
    context.log.warning(f"{name}: {exc}; asking Dagster to retry the run")
    return RetryRequested(max_retries=2, seconds_to_wait=30)


def stream_asset(name: str, stream: Stream, spec: AssetSpec) -> AssetsDefinition:
    """The asset of one stream, with its checks (factory: one per configured stream)."""
    partitions = partitions_for(stream)
    with warnings.catch_warnings():
        # The single-run policy is what makes a range backfill one plan and one consumer
        # (measured in benchmarks/backfill_policy.py); Dagster still labels it beta.
        warnings.simplefilter("ignore", BetaWarning)
        policy = BackfillPolicy.single_run()

    @multi_asset(
        name=f"{spec.key.to_python_identifier()}_windows",
        specs=[spec.replace_attributes(skippable=True, partitions_def=partitions)],
        check_specs=check_specs(spec.key),
        partitions_def=partitions,
        backfill_policy=policy,
        pool=f"lakeport_{name}",
        can_subset=True,
    )
    def windows(
        context: AssetExecutionContext, config: BackfillConfig, lakeport: LakeportResource
    ) -> Iterator[Any]:
        engine = lakeport.stream(name)
        if spec.key in context.selected_asset_keys:
            window = context.partition_time_window
            try:
                report = run_time_window(
                    engine,
                    window.start,
                    window.end,
                    config.mode,
                    progress=EveryFewSeconds(context.log.info),  # a long backfill's headway
                )
            except TransientError as exc:
                raise retry_later(context, name, exc) from exc
            context.log_event(AssetObservation(asset_key=spec.key, metadata=run_metadata(report)))
            keys = context.partition_keys
            events = completed_windows(
                engine, spec.key, partitions, f"backfill ({config.mode})", keys=keys
            )
            for event in events:
                context.log_event(event)
            context.log.info(
                f"{name}: {config.mode} of {len(keys)} windows read {report.records} records and"
                f" {report.dead} dead letters; {span(events)}"
            )
            incomplete = sorted(set(keys) - {e.partition for e in events if e.partition})
            if incomplete:
                context.log.warning(f"{name}: windows still incomplete: {', '.join(incomplete)}")
        yield from evaluate(engine, spec.key, context.selected_asset_check_keys)

    return windows


def lakeport_assets(
    lakeport: LakeportResource,
    *,
    translator: LakeportTranslator | None = None,
    streams: Sequence[str] | None = None,
) -> list[AssetsDefinition]:
    """The assets of a `lakeport.yaml`'s streams (all, or the named ones), usable in any project.

    Bind the same resource as `lakeport` in your `Definitions`; `build_definitions` adds it
    together with the ingestion jobs, schedules and sensors.
    """
    return [asset for _, _, asset in stream_assets(lakeport, translator, streams)]


def stream_assets(
    lakeport: LakeportResource,
    translator: LakeportTranslator | None,
    streams: Sequence[str] | None,
) -> list[tuple[Stream, AssetSpec, AssetsDefinition]]:
    """(stream, its asset spec, its asset) per selected stream."""
    translate = translator or LakeportTranslator()
    config = lakeport.config()
    result = []
    for name in streams or list(config.streams):
        stream = Stream.from_config(config, name)
        props = LakeportStreamProps(name, stream.config, stream.schema, stream.table.uri)
        spec = translate.get_asset_spec(props)
        result.append((stream, spec, stream_asset(name, stream, spec)))
    return result
