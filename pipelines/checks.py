"""Asset checks per stream, each a thin reading of the ledger or the data through `connectors`."""

from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import AssetCheckResult, AssetChecksDefinition, AssetCheckSeverity, asset_check

from connectors import StreamConfig, audit, dead_letters_since, last_ingest, status
from pipelines.resources import LakeportResource


def stream_checks(name: str, stream: StreamConfig) -> list[AssetChecksDefinition]:
    """Coverage, data/ledger agreement, lag, dead letters and freshness of one stream's table."""
    key = stream.table
    window = timedelta(hours=1 if stream.time_partitions == "hourly" else 24)

    @asset_check(asset=key, name="coverage_complete", blocking=False)
    def coverage_complete(lakeport: LakeportResource) -> AssetCheckResult:
        """No hole between landed offsets; retention losses are warnings, the tail is lag."""
        st = status(lakeport.stream(name))
        missing = {p.partition: str(p.holes) for p in st.partitions if p.holes}
        lost = {p.partition: str(p.lost) for p in st.partitions if p.lost}
        meta: dict[str, Any] = {
            "missing_offsets": st.hole_offsets,
            "lost_offsets": st.lost_offsets,
            "missing": missing,
            "lost_to_retention": lost,
        }
        if missing:
            return AssetCheckResult(
                passed=False,
                metadata=meta,
                description=f"{st.hole_offsets} offsets are missing: {missing}",
            )
        if lost:
            return AssetCheckResult(
                passed=False,
                severity=AssetCheckSeverity.WARN,
                metadata=meta,
                description=f"{st.lost_offsets} offsets were lost to retention: {lost}",
            )
        return AssetCheckResult(passed=True, metadata=meta)

    @asset_check(asset=key, name="data_matches_ledger", blocking=False)
    def data_matches_ledger(lakeport: LakeportResource) -> AssetCheckResult:
        """Every row is inside the ledger's coverage, once, and the counts agree."""
        result = audit(lakeport.stream(name))
        return AssetCheckResult(
            passed=result.ok,
            metadata={
                "rows": result.rows,
                "dead_letters": result.dead,
                "problems": result.problems,
            },
            description="; ".join(result.problems) or "data agrees with the ledger",
        )

    @asset_check(asset=key, name="lag_below_threshold")
    def lag_below_threshold(lakeport: LakeportResource) -> AssetCheckResult:
        st = status(lakeport.stream(name))
        lag = sum(p.lag or 0 for p in st.partitions)
        return AssetCheckResult(
            passed=lag <= stream.max_lag_records and not st.broker_error,
            severity=AssetCheckSeverity.WARN,
            metadata={"lag": lag, "threshold": stream.max_lag_records},
            description=st.broker_error or f"{lag} records behind the high watermark",
        )

    @asset_check(asset=key, name="no_recent_dead_letters")
    def no_recent_dead_letters(lakeport: LakeportResource) -> AssetCheckResult:
        since = datetime.now(UTC) - window
        count = dead_letters_since(lakeport.stream(name), since)
        return AssetCheckResult(
            passed=count == 0,
            severity=AssetCheckSeverity.WARN,
            metadata={"dead_letters": count, "since": since.isoformat()},
            description=f"{count} records went to {key}_dead_letters since {since:%Y-%m-%d %H:%M}Z",
        )

    @asset_check(asset=key, name="fresh")
    def fresh(lakeport: LakeportResource) -> AssetCheckResult:
        last = last_ingest(lakeport.stream(name))
        limit = timedelta(minutes=stream.freshness_minutes)
        age = None if last is None else datetime.now(UTC) - last
        return AssetCheckResult(
            passed=age is not None and age <= limit,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "last_ingest": last.isoformat() if last else "never",
                "limit_minutes": stream.freshness_minutes,
            },
            description="never ingested" if age is None else f"last ingest {age} ago",
        )

    return [
        coverage_complete,
        data_matches_ledger,
        lag_below_threshold,
        no_recent_dead_letters,
        fresh,
    ]
