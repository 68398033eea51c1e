"""Dagster runs against the real broker: schedule ticks, partition backfills, checks, upkeep, CLI."""

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from dagster import (
    AssetsDefinition,
    AssetSelection,
    DagsterInstance,
    Definitions,
    build_schedule_context,
    materialize,
)
from deltalake import DeltaTable, write_deltalake

from connectors import Stream, run_forward, run_window
from connectors.config import LakeportConfig
from connectors.kafka_client import client_settings
from connectors.ledger import read_ledger
from connectors.ranges import OffsetRange
from dev.sample_events import notification_events, produce_sample
from pipelines.definitions import build_definitions

HOURLY = {"time_partitions": "hourly", "time_partitions_start": "2026-01-05"}


def produce(stream: Stream, count: int) -> None:
    produce_sample(client_settings(stream.connection), stream.topic, notification_events(count))


def config_file(config: LakeportConfig) -> Path:
    return config.base_dir / "lakeport.yaml"


def stream_asset(defs: Definitions) -> AssetsDefinition:
    (asset,) = [a for a in defs.assets or [] if isinstance(a, AssetsDefinition)]
    return asset


def sorted_rows(uri: str, where: Callable[[pa.Table], pa.Table] = lambda t: t) -> list[dict]:
    table = where(DeltaTable(uri).to_pyarrow_table())
    return table.sort_by(
        [("kafka_partition", "ascending"), ("kafka_offset", "ascending")]
    ).to_pylist()


def test_schedule_tick_materializes_the_current_window_and_lands_new_events(
    make_config: Callable[..., LakeportConfig],
) -> None:
    config = make_config(**HOURLY)
    stream = Stream.from_config(config, "events")
    produce(stream, 1500)
    defs = build_definitions(config_file(config))
    schedule = defs.resolve_schedule_def("events_ingest_schedule")
    now = datetime.now(UTC)
    request = next(
        iter(
            schedule.evaluate_tick(
                build_schedule_context(
                    scheduled_execution_time=now, repository_def=defs.get_repository_def()
                )
            ).run_requests
        )
    )
    assert request.partition_key == now.strftime("%Y-%m-%d-%H:00")

    result = materialize(
        [stream_asset(defs)], resources=defs.resources, partition_key=request.partition_key
    )

    assert result.success
    (event,) = result.get_asset_materialization_events()
    meta = event.materialization.metadata
    assert meta["records"].value + meta["dead_letters"].value == 1500
    assert meta["mode"].value == "forward"
    assert DeltaTable(stream.table.uri).count() == meta["records"].value


def test_partition_range_backfill_equals_a_fresh_ingest_and_rerun_changes_only_the_version(
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

    again = materialize([stream_asset(defs)], resources=defs.resources, tags=tags)
    assert again.success
    assert sorted_rows(stream.table.uri) == backfilled
    assert DeltaTable(stream.table.uri).version() > version


def run_checks(
    defs: Definitions, partition_key: str, ingest: bool = True
) -> dict[str, tuple[bool, str]]:
    """Materialize the stream (or not) and evaluate every check: name -> (passed, description)."""
    result = materialize(
        [stream_asset(defs), *(defs.asset_checks or [])],
        resources=defs.resources,
        partition_key=partition_key if ingest else None,
        selection=None if ingest else AssetSelection.all_asset_checks(),
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
    defs = build_definitions(config_file(config))
    current = datetime.now(UTC).strftime("%Y-%m-%d-%H:00")

    healthy = run_checks(defs, current)
    assert healthy["coverage_complete"][0] and healthy["data_matches_ledger"][0]
    assert healthy["lag_below_threshold"][0] and healthy["fresh"][0]

    one_row = DeltaTable(stream.table.uri).to_pyarrow_table().slice(0, 1)
    write_deltalake(stream.table.uri, one_row, mode="append")
    passed, description = run_checks(defs, current, ingest=False)["data_matches_ledger"]
    assert not passed and "1 duplicated offsets" in description

    gap_config = make_config(**HOURLY)
    gap_stream = Stream.from_config(gap_config, "events")
    produce(gap_stream, 600)
    run_window(gap_stream, [OffsetRange(0, 50, 60)], "fill")
    passed, description = run_checks(
        build_definitions(config_file(gap_config)), current, ingest=False
    )["coverage_complete"]
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
    from dagster import build_sensor_context

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
    assert request.partition_key == datetime.now(UTC).strftime("%Y-%m-%d-%H:00")
    run_forward(stream)
    assert evaluate() == []
