"""Derived tables in Dagster: assets downstream of their stream asset on the same partitions,
kept up to date by the stream's ingestion job, backfilled window by window, guarded by checks."""

from __future__ import annotations

from collections.abc import Callable

from dagster import (
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    materialize,
)
from deltalake import DeltaTable

from connectors import Stream, derived_tables
from connectors.config import LakeportConfig
from connectors.kafka_client import client_settings
from dev.sample_events import notification_events, produce_sample
from pipelines.definitions import build_definitions
from tests.derived_oracle import assert_equal_to_recomputation
from tests.helpers import ensure_topic
from tests.test_derived import DERIVED

HOURLY = {"time_partitions": "hourly", "time_partitions_start": "2026-01-05"}
TABLES = {name: DERIVED[name] for name in ("orders", "positions")}


def assets(defs: Definitions) -> dict[str, AssetsDefinition]:
    return {a.key.to_user_string(): a for a in defs.assets or [] if isinstance(a, AssetsDefinition)}


def setup(make_config: Callable[..., LakeportConfig]) -> tuple[LakeportConfig, Stream, Definitions]:
    config = make_config(**HOURLY, derived=TABLES)
    stream = Stream.from_config(config, "events")
    ensure_topic(stream)
    produce_sample(client_settings(stream.connection), stream.topic, notification_events(4000))
    return config, stream, build_definitions(config.base_dir / "lakeport.yaml")


def checks(result: object) -> dict[tuple[str, str], bool]:
    return {
        (e.asset_key.to_user_string(), e.check_name): e.passed
        for e in result.get_asset_check_evaluations()  # type: ignore[attr-defined]
    }


def ingest(defs: Definitions, instance: DagsterInstance) -> None:
    assert defs.resolve_job_def("events_ingest").execute_in_process(instance=instance).success


def test_derived_assets_sit_downstream_of_the_stream_on_its_partitions(
    make_config: Callable[..., LakeportConfig],
) -> None:
    _, _, defs = setup(make_config)
    found = assets(defs)
    assert set(found) == {"events", "orders", "positions"}
    for name in TABLES:
        derived = found[name]
        assert derived.partitions_def == found["events"].partitions_def
        assert AssetKey("events") in derived.asset_deps[derived.key]


def test_the_ingestion_job_derives_what_is_pending_and_reports_the_same_windows_complete(
    make_config: Callable[..., LakeportConfig],
) -> None:
    config, stream, defs = setup(make_config)
    with DagsterInstance.ephemeral() as instance:
        ingest(defs, instance)
        raw = instance.get_materialized_partitions(AssetKey("events"))
        derived = {name: instance.get_materialized_partitions(AssetKey(name)) for name in TABLES}
        guards = materialize(
            list(assets(defs).values()),
            resources=defs.resources,
            selection=AssetSelection.checks_for_assets(*(AssetKey(n) for n in TABLES)),
            instance=instance,
        )

    assert {"2026-01-05-08:00"} <= raw  # the sample's events, 08:00 to about 08:45
    assert all(windows == raw for windows in derived.values())
    assert {key: ok for key, ok in checks(guards).items() if key[0] in TABLES} == {
        (name, check): True
        for name in TABLES
        for check in ("counts_reconcile", "matches_recomputation")
    }
    assert_equal_to_recomputation(stream, derived_tables(config, "events"))


def test_a_lost_row_fails_the_checks_and_deriving_its_past_partition_again_heals_it(
    make_config: Callable[..., LakeportConfig],
) -> None:
    config, stream, defs = setup(make_config)
    found = assets(defs)
    with DagsterInstance.ephemeral() as instance:
        ingest(defs, instance)
    orders = derived_tables(config, "events")[0]
    table = DeltaTable(orders.table.uri)
    victim = table.to_pyarrow_table(columns=["id"])["id"][0].as_py()
    table.delete(f"id = '{victim}'")  # behind lakeport's back
    broken = materialize(
        [found["orders"]],
        resources=defs.resources,
        selection=AssetSelection.checks_for_assets(found["orders"]),
    )
    assert checks(broken) == {
        ("orders", "counts_reconcile"): False,
        ("orders", "matches_recomputation"): False,
    }

    healed = materialize(  # the events are from 2026-01-05 08:00 to about 08:45
        [found["orders"]], resources=defs.resources, partition_key="2026-01-05-08:00"
    )
    (observation,) = [
        e.asset_observation_data.asset_observation
        for e in healed.all_events
        if e.event_type == DagsterEventType.ASSET_OBSERVATION
    ]
    assert observation.metadata["derived_again"].value
    assert observation.metadata["inserted"].value == 1
    assert [e.partition for e in healed.get_asset_materialization_events()] == ["2026-01-05-08:00"]
    assert set(checks(healed).values()) == {True}
    assert_equal_to_recomputation(stream, derived_tables(config, "events"))
