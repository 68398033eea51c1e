"""One Dagster asset per configured stream: its Delta table, partitioned by time windows.

Materializing a past window re-reads the offsets its time window maps to and swaps them in
atomically (`replace`), so a Dagster backfill of any partition range is the way to re-ingest
history, and running it twice gives the same table. Materializing the window that contains
"now" (what the schedule does) runs forward ingestion up to the high watermark instead.

Backfills run as one run per range (`BackfillPolicy.single_run()`): one plan, one consumer and
one sequence of micro-batch commits for the whole range, instead of N runs that would contend
for the same partitions' ledger fence and each pay the per-run start-up.
"""

from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    DailyPartitionsDefinition,
    HourlyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    RetryRequested,
    TableColumn,
    TableSchema,
    TimeWindowPartitionsDefinition,
    asset,
)

from connectors import (
    RunReport,
    StreamConfig,
    StreamSchema,
    TransientError,
    run_forward,
    run_time_window,
)
from pipelines.resources import LakeportResource


def partitions_for(stream: StreamConfig) -> TimeWindowPartitionsDefinition:
    """Time windows of the stream, including the current (still open) one."""
    kind = (
        HourlyPartitionsDefinition
        if stream.time_partitions == "hourly"
        else DailyPartitionsDefinition
    )
    start = stream.time_partitions_start
    if stream.time_partitions == "hourly" and len(start) == 10:
        start += "-00:00"
    return kind(start_date=start, end_offset=1, timezone="UTC")


def table_schema_metadata(schema: StreamSchema) -> TableSchema:
    return TableSchema(columns=[TableColumn(f.name, str(f.type)) for f in schema.arrow])


def run_metadata(report: RunReport) -> dict[str, Any]:
    """Materialization metadata: what the run landed, where, and how fast."""
    per_partition: dict[str, list[str]] = {}
    for r in report.ranges:
        per_partition.setdefault(str(r.partition), []).append(f"[{r.start},{r.end})")
    return {
        "mode": report.mode,
        "records": report.records,
        "dead_letters": report.dead,
        "bytes": report.bytes,
        "commits": report.commits,
        "delta_version": report.table_version,
        "offset_ranges": MetadataValue.json(per_partition),
        "lost_to_retention": MetadataValue.json([str(r) for r in report.lost]),
        "lag_after_run": sum(report.lag.values()),
        "lag_per_partition": MetadataValue.json({str(p): n for p, n in report.lag.items()}),
        "duration_s": round(report.seconds, 3),
        "events_per_s": round(report.events_per_second, 1),
        "replans": report.replans,
        "warnings": MetadataValue.json(report.warnings),
    }


def stream_asset(name: str, stream: StreamConfig, schema: StreamSchema) -> AssetsDefinition:
    """The asset of one stream (factory: one per entry of the config's `streams`)."""

    @asset(
        name=stream.table,
        group_name="lakeport",
        kinds={"kafka", "delta"},
        description=stream.description or f"Kafka topic {stream.topic!r} landed as a Delta table.",
        owners=stream.owners,
        tags=stream.tags,
        metadata={
            "dagster/column_schema": table_schema_metadata(schema),
            "kafka_topic": stream.topic,
            "lakeport_stream": name,
        },
        partitions_def=partitions_for(stream),
        backfill_policy=BackfillPolicy.single_run(),
        pool=f"lakeport_{name}",
    )
    def ingest(
        context: AssetExecutionContext, lakeport: LakeportResource
    ) -> MaterializeResult[None]:
        engine = lakeport.stream(name)
        window = context.partition_time_window
        try:
            if window.end > datetime.now(UTC):
                report = run_forward(engine)
            else:
                report = run_time_window(engine, window.start, window.end, "replace")
        except TransientError as exc:
            # Broker, storage or registry away, after the engine's own bounded retries: a later
            # attempt of the same run is safe (every commit is fenced by the ledger).
            context.log.warning(f"{name}: {exc}; asking Dagster to retry the run")
            raise RetryRequested(max_retries=2, seconds_to_wait=30) from exc
        context.log.info(
            f"{name}: {report.mode} landed {report.records} records and {report.dead} dead"
            f" letters in {report.commits} commits ({report.seconds:.2f} s)"
        )
        return MaterializeResult(metadata=run_metadata(report))

    return ingest
