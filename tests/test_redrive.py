"""Re-drive: dead letters that decode after a decoder fix move into the table, exactly once."""

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

from deltalake import DeltaTable

from connectors import Stream, run_forward
from connectors.config import LakeportConfig
from connectors.coverage import audit
from connectors.dead_letters import redrive
from connectors.kafka_client import client_settings
from connectors.ledger import read_ledger
from connectors.ranges import OffsetRange
from dev.sample_events import Awkward, notification_events, produce_sample

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "upvest_notification.avsc"


def strict_schema(tmp_path: Path) -> Path:
    """The Upvest schema with webhook_id required: records without it become dead letters."""
    avsc = json.loads(SCHEMA.read_text())
    for field in avsc["fields"]:
        if field["name"] == "webhook_id":
            field["type"] = {"type": "string", "logicalType": "uuid"}
            field.pop("default")
    path = tmp_path / "strict.avsc"
    path.write_text(json.dumps(avsc))
    return path


def landed_then_fixed(
    make_config: Callable[..., LakeportConfig], tmp_path: Path, count: int, awkward: Awkward
) -> tuple[Stream, Stream]:
    """Land `count` events with the strict schema, then fix it: (before fix, after fix)."""
    strict = strict_schema(tmp_path)
    config = make_config(schema_file=str(strict))
    stream = Stream.from_config(config, "events")
    produce_sample(
        client_settings(stream.connection),
        stream.topic,
        notification_events(count, awkward=awkward),
    )
    run_forward(stream)
    strict.write_text(SCHEMA.read_text())  # the fix: webhook_id is optional again
    return stream, Stream.from_config(config, "events")


def pairs(uri: str) -> set[tuple[int, int]]:
    table = DeltaTable(uri).to_pyarrow_table(columns=["kafka_partition", "kafka_offset"])
    return set(
        zip(table["kafka_partition"].to_pylist(), table["kafka_offset"].to_pylist(), strict=True)
    )


def test_redrive_after_a_decoder_fix_moves_exactly_the_fixable_records_and_twice_equals_once(
    make_config: Callable[..., LakeportConfig], tmp_path: Path
) -> None:
    awkward = Awkward(missing_optional=0.05, not_json=0.01, not_utf8=0.01)
    stream, fixed = landed_then_fixed(make_config, tmp_path, 3000, awkward)
    dead_before = DeltaTable(stream.dead_letters.uri).to_pyarrow_table().to_pylist()
    fixable = {
        (d["kafka_partition"], d["kafka_offset"])
        for d in dead_before
        if d["error_class"] == "missing_field"
    }
    unfixable = {(d["kafka_partition"], d["kafka_offset"]) for d in dead_before} - fixable
    assert fixable and unfixable

    first = redrive(fixed)
    assert first.moved == len(fixable) and first.still_dead == len(unfixable)
    main, dead = pairs(fixed.table.uri), pairs(fixed.dead_letters.uri)
    assert fixable <= main and not (main & dead) and dead == unfixable
    ledger = read_ledger(DeltaTable(fixed.table.uri), fixed.topic)
    assert sum(p.dead for p in ledger.partitions.values()) == len(unfixable)
    assert audit(fixed).ok

    version = DeltaTable(fixed.table.uri).version(), DeltaTable(fixed.dead_letters.uri).version()
    second = redrive(fixed)
    assert second.moved == 0 and second.errors_changed == 0
    assert (
        DeltaTable(fixed.table.uri).version(),
        DeltaTable(fixed.dead_letters.uri).version(),
    ) == version
    assert pairs(fixed.table.uri) == main and pairs(fixed.dead_letters.uri) == dead


def test_redrive_interrupted_between_its_two_commits_is_finished_by_the_next_one(
    make_config: Callable[..., LakeportConfig], tmp_path: Path, monkeypatch
) -> None:
    _, fixed = landed_then_fixed(make_config, tmp_path, 2000, Awkward(missing_optional=0.05))
    dead_count = DeltaTable(fixed.dead_letters.uri).count()

    import connectors.dead_letters as module

    def crash(*args: object, **kwargs: object) -> None:
        raise SystemExit("killed between the two commits")

    monkeypatch.setattr(module, "_apply_to_dead_letters", crash)
    with contextlib.suppress(SystemExit):
        redrive(fixed)
    assert len(pairs(fixed.table.uri) & pairs(fixed.dead_letters.uri)) == dead_count  # in both
    monkeypatch.undo()

    report = redrive(fixed)
    assert report.finished_earlier_move == dead_count and report.moved == 0
    assert not (pairs(fixed.table.uri) & pairs(fixed.dead_letters.uri))
    assert DeltaTable(fixed.dead_letters.uri).count() == 0
    assert audit(fixed).ok


def test_redrive_of_a_window_leaves_dead_letters_outside_it(
    make_config: Callable[..., LakeportConfig], tmp_path: Path
) -> None:
    _, fixed = landed_then_fixed(make_config, tmp_path, 2000, Awkward(missing_optional=0.05))
    dead = pairs(fixed.dead_letters.uri)
    inside = {(p, o) for p, o in dead if p == 0 and o < 200}
    report = redrive(fixed, [OffsetRange(0, 0, 200)])
    assert report.moved == len(inside)
    assert pairs(fixed.dead_letters.uri) == dead - inside
    assert audit(fixed).ok
