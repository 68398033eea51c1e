"""Asset checks per stream, each a thin reading of the ledger or the data through `connectors`.

The checks are declared on the stream's asset (`check_specs`) and evaluated by whatever just
changed the table: a backfill run of the asset, the forward ingestion job, or a run of the
checks alone. `coverage_complete` and `data_matches_ledger` are blocking: when they fail,
assets downstream of the table (derived tables) are not materialized on top of it.
"""

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
)

from connectors import Stream, audit, dead_letters_since, last_ingest, status
from pipelines.translator import window_length

Check = Callable[[Stream, AssetKey], AssetCheckResult]


def coverage_complete(stream: Stream, key: AssetKey) -> AssetCheckResult:
    """No hole between landed offsets (the tail is lag), no offset lost to retention."""
    st = status(stream)
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
            asset_key=key,
            passed=False,
            severity=AssetCheckSeverity.WARN,
            metadata=meta,
            description=f"{st.hole_offsets} offsets are missing: {missing}; backfill the"
            " missing partitions",
        )
    if lost:
        return AssetCheckResult(
            asset_key=key,
            passed=False,
            severity=AssetCheckSeverity.WARN,
            metadata=meta,
            description=f"{st.lost_offsets} offsets were lost to retention: {lost}",
        )
    return AssetCheckResult(
        asset_key=key, passed=True, metadata=meta, description="no offset is missing"
    )


def data_matches_ledger(stream: Stream, key: AssetKey) -> AssetCheckResult:
    """Every row is inside the ledger's coverage, once, and the counts agree."""
    result = audit(stream)
    return AssetCheckResult(
        asset_key=key,
        passed=result.ok,
        metadata={"rows": result.rows, "dead_letters": result.dead, "problems": result.problems},
        description="; ".join(result.problems) or "data agrees with the ledger",
    )


def lag_below_threshold(stream: Stream, key: AssetKey) -> AssetCheckResult:
    """The stream is at most `max_lag_records` behind the broker's high watermarks."""
    st = status(stream)
    lag = sum(p.lag or 0 for p in st.partitions)
    limit = stream.config.max_lag_records
    return AssetCheckResult(
        asset_key=key,
        passed=lag <= limit and not st.broker_error,
        severity=AssetCheckSeverity.WARN,
        metadata={"lag": lag, "threshold": limit},
        description=st.broker_error or f"{lag} records behind the high watermark (limit {limit})",
    )


def no_recent_dead_letters(stream: Stream, key: AssetKey) -> AssetCheckResult:
    """No record of the last window went to the dead-letter table."""
    since = datetime.now(UTC) - window_length(stream.config)
    count = dead_letters_since(stream, since)
    return AssetCheckResult(
        asset_key=key,
        passed=count == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={"dead_letters": count, "since": since.isoformat()},
        description=f"{count} records went to {stream.config.table}_dead_letters since"
        f" {since:%Y-%m-%d %H:%M}Z",
    )


def fresh(stream: Stream, key: AssetKey) -> AssetCheckResult:
    """lakeport committed to the table within the last `freshness_minutes`."""
    last = last_ingest(stream)
    limit = timedelta(minutes=stream.config.freshness_minutes)
    age = None if last is None else datetime.now(UTC) - last
    return AssetCheckResult(
        asset_key=key,
        passed=age is not None and age <= limit,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "last_ingest": last.isoformat() if last else "never",
            "limit_minutes": stream.config.freshness_minutes,
        },
        description="never ingested"
        if age is None
        else f"last ingest {duration(age)} ago (limit {duration(limit)})",
    )


def duration(span: timedelta) -> str:
    """`16 s`, `12 min`, `5 h`, `3 days`: the unit a person would use."""
    seconds = span.total_seconds()
    for unit, size in (("days", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= 2 * size or (unit != "days" and seconds >= size * 1.5):
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


CHECKS: dict[str, tuple[Check, bool]] = {
    "coverage_complete": (coverage_complete, False),
    "data_matches_ledger": (data_matches_ledger, True),
    "lag_below_threshold": (lag_below_threshold, False),
    "no_recent_dead_letters": (no_recent_dead_letters, False),
    "fresh": (fresh, False),
}
"""Name -> (evaluation, blocking)."""


def check_specs(key: AssetKey) -> list[AssetCheckSpec]:
    return [
        AssetCheckSpec(name, asset=key, blocking=blocking, description=check.__doc__)
        for name, (check, blocking) in CHECKS.items()
    ]


def evaluate(
    stream: Stream, key: AssetKey, selected: Iterable[AssetCheckKey] | None = None
) -> Iterator[AssetCheckResult]:
    """The results of the selected checks (all by default), in declaration order."""
    names = {k.name for k in selected} if selected is not None else set(CHECKS)
    for name, (check, _) in CHECKS.items():
        if name in names:
            yield check(stream, key)._replace(check_name=name)


def as_evaluation(result: AssetCheckResult) -> AssetCheckEvaluation:
    """A check result as an event an op can log (the forward job is not the asset's step)."""
    assert result.asset_key is not None and result.check_name is not None
    return AssetCheckEvaluation(
        asset_key=result.asset_key,
        check_name=result.check_name,
        passed=result.passed,
        metadata=result.metadata,
        severity=result.severity,
        description=result.description,
        blocking=CHECKS[result.check_name][1],
    )
