"""Dagster runs against the real broker: partitions are the ledger's windows, whoever wrote them.

A partition is materialized exactly when its time window is complete in the ledger; the forward
ingestion job, backfills of the asset and the ledger sensor (for `lakeport` CLI commits) all
report windows that way, so the UI's missing partitions are the windows a backfill must read.
"""

import collections
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    build_schedule_context,
    build_sensor_context,
    materialize,
)
from deltalake import DeltaTable, write_deltalake

from connectors import Stream, run_forward, run_window
from connectors.config import LakeportConfig
from connectors.ledger import read_ledger
from connectors.ranges import OffsetRange
from dev.sample_events import notification_events
from pipelines import build_definitions
from tests.helpers import assert_consistent, lakeport_cli, produce

HOURLY = {"time_partitions": "hourly", "time_partitions_start": "2026-01-05"}
KEY = AssetKey("events")
FMT = "%Y-%m-%d-%H:%M"


def config_file(config: LakeportConfig) -> Path:
    return config.base_dir / "lakeport.yaml"


def stream_asset(defs: Definitions) -> AssetsDefinition:
    (asset,) = [a for a in defs.assets or [] if isinstance(a, AssetsDefinition)]
    return asset


def hour(ago: int) -> datetime:
    """The start of the hour `ago` hours before the current one."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=ago)


def key(ago: int) -> str:
    return hour(ago).strftime(FMT)


def per_window(count: int, start: datetime) -> dict[str, int]:
    """How many of the sample events fall into each hourly window (by Kafka timestamp)."""
    return collections.Counter(
        datetime.fromtimestamp(r.timestamp_ms / 1000, UTC).strftime("%Y-%m-%d-%H:00")
        for r in notification_events(count, start=start)
    )


def missing(defs: Definitions, instance: DagsterInstance) -> set[str]:
    """The partitions the UI shows as missing."""
    keys = stream_asset(defs).partitions_def.get_partition_keys()  # type: ignore[union-attr]
    return set(keys) - instance.get_materialized_partitions(KEY)


def sense(defs: Definitions, instance: DagsterInstance, cursor: str | None) -> tuple[list, str]:
    """One tick of the ledger sensor, its events stored as the daemon would: (events, cursor)."""
    sensor = defs.resolve_sensor_def("events_ledger_sensor")
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources=defs.resources, definitions=defs
    )
    result = sensor.evaluate_tick(context)
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return list(result.asset_events), result.cursor or ""


def test_ingest_job_materializes_each_closed_window_from_the_first_record_and_never_the_open_one(
    make_config: Callable[..., LakeportConfig],
) -> None:
    config = make_config(time_partitions="hourly")
    stream = Stream.from_config(config, "events")
    produce(stream, 6000, start=hour(4))  # about 65 minutes of events from 4 hours ago
    defs = build_definitions(config_file(config))
    assert stream_asset(defs).partitions_def.get_first_partition_key() == key(4)  # type: ignore[union-attr]

    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("events_ingest").execute_in_process(instance=instance)
        assert result.success
        done = instance.get_materialized_partitions(KEY)
        events = {
            e.partition: e.materialization.metadata
            for e in result.get_asset_materialization_events()
        }

    current = datetime.now(UTC).strftime("%Y-%m-%d-%H:00")
    assert {key(4), key(3), key(2), key(1)} <= done and current not in done
    assert min(done) == key(4)  # nothing before the first record
    expected = per_window(6000, hour(4))
    assert {k: events[k]["dagster/row_count"].value for k in expected} == expected
    assert events[key(2)]["records"].value == 0  # closed, empty, nothing a backfill could read
    checks = {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
        and isinstance(e.event_specific_data, AssetCheckEvaluation)
    }
    assert all(c.passed for c in checks.values()), checks
    assert checks["data_matches_ledger"].blocking and not checks["fresh"].blocking
    assert checks["fresh"].description.startswith("last ingest ")
    assert checks["fresh"].description.endswith(" s ago (limit 30 min)")


def test_ledger_sensor_reports_the_windows_that_cli_commits_completed_and_the_table_version(
    make_config: Callable[..., LakeportConfig],
) -> None:
    config = make_config(time_partitions="hourly")
    stream = Stream.from_config(config, "events")
    produce(stream, 6000, start=hour(4))
    defs = build_definitions(config_file(config))
    path = config_file(config)
    window = ["--from", hour(4).isoformat(), "--to", hour(3).isoformat()]
    filled = lakeport_cli(path, "backfill", "--stream", "events", "--mode", "fill", *window)
    assert filled.returncode == 0, filled.stderr

    with DagsterInstance.ephemeral() as instance:
        first, cursor = sense(defs, instance, None)
        reported = {e.partition for e in first if isinstance(e, AssetMaterialization)}
        assert key(4) in reported and key(3) not in reported  # 08:00 covered, 09:00 not yet
        assert missing(defs, instance) == {key(3)}

        assert lakeport_cli(path, "ingest").returncode == 0
        second, cursor = sense(defs, instance, cursor)
        assert [e.partition for e in second if isinstance(e, AssetMaterialization)] == [key(3)]
        (observation,) = [e for e in second if not isinstance(e, AssetMaterialization)]
        version = DeltaTable(stream.table.uri).version()
        assert observation.metadata["delta_version"].value == version
        assert observation.metadata["operations"].value == "forward"
        assert cursor == str(version) and missing(defs, instance) == set()
        assert sense(defs, instance, cursor)[0] == []  # nothing new, nothing reported


def test_a_backfill_of_the_missing_partitions_reads_only_their_records(
    make_config: Callable[..., LakeportConfig],
) -> None:
    # The table will start at 4 hours ago: a configured start shows the history before it.
    config = make_config(time_partitions="hourly", time_partitions_start=hour(6).isoformat())
    stream = Stream.from_config(config, "events")
    produce(stream, 12_000, start=hour(5))  # windows 5, 4 and the start of 3 hours ago
    counts = per_window(12_000, hour(5))
    window = ["--from", hour(4).isoformat(), "--to", hour(3).isoformat()]
    path = config_file(config)
    filled = lakeport_cli(path, "backfill", "--stream", "events", "--mode", "fill", *window)
    assert filled.returncode == 0, filled.stderr
    defs = build_definitions(path)

    with DagsterInstance.ephemeral() as instance:
        sense(defs, instance, None)
        gaps = missing(defs, instance)
        assert gaps == {key(5), key(3)}
        read = 0
        for partition in sorted(gaps):  # as the UI launches them: one run per range
            result = materialize(
                [stream_asset(defs)],
                resources=defs.resources,
                partition_key=partition,
                instance=instance,
            )
            assert result.success
            (observation,) = result.get_asset_observation_events()
            read += observation.event_specific_data.asset_observation.metadata["records"].value
            assert [e.partition for e in result.get_asset_materialization_events()] == [partition]
        assert read == counts[key(5)] + counts[key(3)]
        assert missing(defs, instance) == set()
    assert_consistent(stream)


def test_schedule_tick_runs_the_named_ingestion_job_and_lands_new_events(
    make_config: Callable[..., LakeportConfig],
) -> None:
    config = make_config(**HOURLY)
    stream = Stream.from_config(config, "events")
    produce(stream, 1500)
    defs = build_definitions(config_file(config))
    schedule = defs.resolve_schedule_def("events_ingest_schedule")
    context = build_schedule_context(
        scheduled_execution_time=datetime.now(UTC), repository_def=defs.get_repository_def()
    )
    (request,) = list(schedule.evaluate_tick(context).run_requests or [])
    assert schedule.job_name == "events_ingest" and request.partition_key is None

    result = defs.resolve_job_def(schedule.job_name).execute_in_process()

    assert result.success
    (observation,) = result.get_asset_observation_events()
    meta = observation.event_specific_data.asset_observation.metadata
    assert meta["records"].value + meta["dead_letters"].value == 1500
    assert meta["mode"].value == "forward"
    assert DeltaTable(stream.table.uri).count() == meta["records"].value


def sorted_rows(uri: str, where: Callable[[pa.Table], pa.Table] = lambda t: t) -> list[dict]:
    table = where(DeltaTable(uri).to_pyarrow_table())
    return table.sort_by(
        [("kafka_partition", "ascending"), ("kafka_offset", "ascending")]
    ).to_pylist()


def test_partition_range_backfill_equals_a_fresh_ingest_and_a_replace_changes_only_the_version(
    make_config: Callable[..., LakeportConfig], tmp_path: Path
) -> None:
    config = make_config(**HOURLY)
    stream = Stream.from_config(config, "events")
    produce(stream, 20_000)  # 2026-01-05 08:00 to about 11:35
    defs = build_definitions(config_file(config))
    tags = {
        "dagster/asset_partition_range_start": "2026-01-05-09:00",
        "dagster/asset_partition_range_end": "2026-01-05-11:00",
    }

    first = materialize([stream_asset(defs)], resources=defs.resources, tags=tags)
    assert first.success
    assert len(first.get_asset_materialization_events()) == 3  # one per window
    backfilled = sorted_rows(stream.table.uri)
    version = DeltaTable(stream.table.uri).version()

    # A fresh forward ingest of everything, cut to the same three hours, row for row.
    fresh = Stream.from_config(config, "events")
    fresh = Stream(
        fresh.name,
        fresh.config,
        fresh.connection,
        fresh.schema,
        type(fresh.table)(str(tmp_path / "fresh"), fresh.table.schema, {}),
        type(fresh.dead_letters)(str(tmp_path / "fresh_dead"), fresh.dead_letters.schema, {}),
    )
    run_forward(fresh)
    lo, hi = datetime(2026, 1, 5, 9, tzinfo=UTC), datetime(2026, 1, 5, 12, tzinfo=UTC)
    expected = sorted_rows(
        fresh.table.uri,
        lambda t: t.filter(
            (pa.compute.field("kafka_timestamp") >= lo) & (pa.compute.field("kafka_timestamp") < hi)
        ),
    )
    assert len(backfilled) > 10_000
    assert backfilled == expected

    replace = {"ops": {"events_windows": {"config": {"mode": "replace"}}}}
    again = materialize(
        [stream_asset(defs)], resources=defs.resources, tags=tags, run_config=replace
    )
    assert again.success
    assert sorted_rows(stream.table.uri) == backfilled
    assert DeltaTable(stream.table.uri).version() > version


def run_checks(defs: Definitions) -> dict[str, tuple[bool, str]]:
    """Evaluate every check alone (no ingestion): name -> (passed, description)."""
    result = materialize(
        [stream_asset(defs)],
        resources=defs.resources,
        selection=AssetSelection.all_asset_checks(),
        raise_on_error=False,  # a failing blocking check fails the run
    )
    return {
        e.check_name: (e.passed, e.description or "") for e in result.get_asset_check_evaluations()
    }


def test_checks_pass_on_a_healthy_table_and_fail_after_a_duplicate_or_a_gap(
    make_config: Callable[..., LakeportConfig],
) -> None:
    config = make_config(**HOURLY)
    stream = Stream.from_config(config, "events")
    produce(stream, 2000)
    run_forward(stream)
    defs = build_definitions(config_file(config))

    healthy = run_checks(defs)
    assert healthy["coverage_complete"][0] and healthy["data_matches_ledger"][0]
    assert healthy["lag_below_threshold"][0] and healthy["fresh"][0]

    one_row = DeltaTable(stream.table.uri).to_pyarrow_table().slice(0, 1)
    write_deltalake(stream.table.uri, one_row, mode="append")
    passed, description = run_checks(defs)["data_matches_ledger"]
    assert not passed and "1 duplicated offsets" in description

    gap_config = make_config(**HOURLY)
    gap_stream = Stream.from_config(gap_config, "events")
    produce(gap_stream, 600)
    run_window(gap_stream, [OffsetRange(0, 50, 60)], "fill")
    passed, description = run_checks(build_definitions(config_file(gap_config)))[
        "coverage_complete"
    ]
    assert not passed and "50 offsets are missing" in description and "[0,50)" in description


def test_dagster_cli_materializes_a_partition_range(
    make_config: Callable[..., LakeportConfig], tmp_path: Path
) -> None:
    config = make_config(**HOURLY)
    stream = Stream.from_config(config, "events")
    produce(stream, 8000)  # 08:00 to about 09:25
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "LAKEPORT_CONFIG": str(config_file(config)), "DAGSTER_HOME": str(home)}
    cli = Path(sys.executable).parent / "dagster"
    proc = subprocess.run(
        [
            str(cli),
            "asset",
            "materialize",
            "-m",
            "pipelines.code_location",
            "--select",
            "events",
            "--partition-range",
            "2026-01-05-08:00...2026-01-05-09:00",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    landed = DeltaTable(stream.table.uri).count()
    if os.path.exists(stream.dead_letters.uri):
        landed += DeltaTable(stream.dead_letters.uri).count()
    assert landed == 8000, proc.stderr[-4000:]
    instance = DagsterInstance.from_config(str(home))
    assert instance.get_materialized_partitions(KEY) == {"2026-01-05-08:00", "2026-01-05-09:00"}


@pytest.mark.timeout(300)
def test_upkeep_after_200_micro_batches_keeps_rows_ledger_and_checks_and_cuts_files(
    make_config: Callable[..., LakeportConfig],
) -> None:
    config = make_config(**HOURLY, batch_records=30)
    stream = Stream.from_config(config, "events")
    produce(stream, 6000)
    report = run_forward(stream)
    assert report.commits >= 200
    table = DeltaTable(stream.table.uri)
    rows_before = sorted_rows(stream.table.uri)
    ledger_before = read_ledger(table, stream.topic).partitions
    files_before = len(table.file_uris())

    defs = build_definitions(config_file(config))
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("events_upkeep").execute_in_process(instance=instance)
    assert result.success

    table = DeltaTable(stream.table.uri)
    assert sorted_rows(stream.table.uri) == rows_before
    assert read_ledger(table, stream.topic).partitions.keys() == ledger_before.keys()
    for p, before in ledger_before.items():
        after = read_ledger(table, stream.topic).partitions[p]
        assert (after.covered, after.records, after.dead) == (
            before.covered,
            before.records,
            before.dead,
        )
    files_after = len(table.file_uris())
    print(f"upkeep: {report.commits} commits, files {files_before} -> {files_after}")
    assert files_after < files_before / 10
    from connectors.coverage import audit

    assert audit(stream).ok


def test_the_shipped_instance_config_loads_and_admits_one_run_per_stream_pool(
    tmp_path: Path,
) -> None:
    shipped = Path(__file__).resolve().parent.parent / "dev" / "dagster" / "dagster.yaml"
    (tmp_path / "dagster.yaml").write_text(shipped.read_text())
    instance = DagsterInstance.from_config(str(tmp_path))
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1


def test_lag_sensor_starts_an_ingestion_only_when_the_stream_falls_behind(
    make_config: Callable[..., LakeportConfig],
) -> None:
    config = make_config(**HOURLY, max_lag_records=500)
    stream = Stream.from_config(config, "events")
    defs = build_definitions(config_file(config))
    sensor = defs.resolve_sensor_def("events_lag_sensor")

    def evaluate() -> list:
        context = build_sensor_context(resources=defs.resources, definitions=defs)
        return list(sensor.evaluate_tick(context).run_requests or [])

    produce(stream, 300)
    assert evaluate() == []  # 300 behind: within the threshold
    produce(stream, 600)
    (request,) = evaluate()  # 900 behind
    assert sensor.job_name == "events_ingest" and request.partition_key is None
    run_forward(stream)
    assert evaluate() == []
