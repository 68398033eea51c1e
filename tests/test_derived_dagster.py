"""Derived tables in Dagster: assets downstream of their stream asset on the same partitions,
materialized in the same run or after it, guarded by their checks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from dagster import (
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    AutomationCondition,
    DagsterInstance,
    DefaultSensorStatus,
    Definitions,
    evaluate_automation_conditions,
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


def now_key() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d-%H:00")


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
        assert derived.automation_conditions_by_key[derived.key] == AutomationCondition.eager()


def test_one_run_lands_the_stream_then_its_derived_tables_and_their_checks_pass(
    make_config: Callable[..., LakeportConfig],
) -> None:
    config, stream, defs = setup(make_config)
    result = materialize(
        list(assets(defs).values()) + list(defs.asset_checks or []),
        resources=defs.resources,
        partition_key=now_key(),
    )
    assert result.success
    meta = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert meta["events"]["records"].value == 4000
    assert meta["orders"]["records"].value > 1000 and meta["orders"]["inserted"].value > 300
    derived_checks = {key: ok for key, ok in checks(result).items() if key[0] in TABLES}
    assert derived_checks == {
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
    assert materialize(
        list(found.values()), resources=defs.resources, partition_key=now_key()
    ).success
    orders = derived_tables(config, "events")[0]
    table = DeltaTable(orders.table.uri)
    victim = table.to_pyarrow_table(columns=["id"])["id"][0].as_py()
    table.delete(f"id = '{victim}'")  # behind lakeport's back
    guards = [
        c
        for c in defs.asset_checks or []
        if {k.asset_key for k in c.check_keys} == {found["orders"].key}
    ]

    broken = materialize(
        [found["orders"], *guards],
        resources=defs.resources,
        selection=AssetSelection.checks_for_assets(found["orders"]),
    )
    assert checks(broken) == {
        ("orders", "counts_reconcile"): False,
        ("orders", "matches_recomputation"): False,
    }

    healed = materialize(  # the events are from 2026-01-05 08:00 to about 08:45
        [found["orders"], *guards], resources=defs.resources, partition_key="2026-01-05-08:00"
    )
    (event,) = healed.get_asset_materialization_events()
    assert event.materialization.metadata["derived_again"].value
    assert event.materialization.metadata["inserted"].value == 1
    assert set(checks(healed).values()) == {True}
    assert_equal_to_recomputation(stream, derived_tables(config, "events"))


def test_once_the_stream_lands_its_partition_automation_requests_the_derived_ones(
    make_config: Callable[..., LakeportConfig],
) -> None:
    _, _, defs = setup(make_config)
    found = assets(defs)
    sensor = defs.resolve_sensor_def("events_derived_automation")
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    instance = DagsterInstance.ephemeral()
    key = now_key()

    before = evaluate_automation_conditions(defs=defs, instance=instance)
    assert before.total_requested == 0, "nothing before the stream lands its partition"
    assert materialize(
        [found["events"]], resources=defs.resources, partition_key=key, instance=instance
    ).success
    after = evaluate_automation_conditions(defs=defs, instance=instance, cursor=before.cursor)
    assert after.total_requested == 2
    for name in TABLES:
        assert after.get_requested_partitions(AssetKey(name)) == {key}
