"""The offset ledger's invariants against a real broker and real Delta tables.

Every test checks the three views together (see `tests/helpers.py`): the table's rows, the
ledger in the table's Delta log (covered / lost spans, records counts) and what the broker
holds, never just that a run did not raise.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pyarrow as pa
import pytest
from confluent_kafka.admin import NewPartitions
from deltalake import DeltaTable

from connectors import (
    RetentionLossError,
    ScratchSpaceError,
    Stream,
    run_forward,
    run_time_window,
    run_window,
    staging,
)
from connectors.coverage import status
from connectors.delta_store import DeltaStore
from connectors.errors import LedgerError
from connectors.kafka_client import open_consumer, partition_marks
from connectors.ledger import Ledger, LedgerUpdate, PartitionLedger, read_ledger
from connectors.planner import plan_forward
from connectors.ranges import OffsetRange, Spans
from connectors.writer import TableWriter, append_rows
from dev.history import synthesize_commits
from dev.sample_events import notification_events
from tests.helpers import (
    admin,
    assert_consistent,
    covered,
    data_pairs,
    delete_records,
    ledger,
    lost,
    produce,
    transactional_producer,
    watermarks,
)

T1 = datetime(2026, 1, 5, tzinfo=UTC)
T2 = datetime(2026, 2, 1, tzinfo=UTC)
T3 = datetime(2026, 3, 1, tzinfo=UTC)


def _stream(make_config, **keys: object) -> Stream:
    return Stream.from_config(make_config(**keys), "events")


def _ids(stream: Stream) -> set[str]:
    table = DeltaTable(stream.table.uri)
    return set(table.to_pyarrow_table(columns=["id"])["id"].to_pylist())


def _event_id(value: bytes) -> str:
    return json.loads(value)["id"]


# --- transactions ----------------------------------------------------------------------------


def test_transactional_topic_run_covers_markers_without_hanging_and_drops_aborted(
    make_config,
) -> None:
    stream = _stream(make_config)
    produce(stream, 60, seed=1)  # creates the 6-partition topic, plain records first
    producer = transactional_producer(stream, f"tx-{stream.topic}")
    committed = list(notification_events(400, seed=2))
    aborted = list(notification_events(200, seed=3, start=T3))
    for i in range(4):
        producer.begin_transaction()
        for r in committed[i * 100 : (i + 1) * 100]:
            producer.produce(stream.topic, r.value, r.key, timestamp=r.timestamp_ms)
        producer.commit_transaction(30)
        producer.begin_transaction()
        for r in aborted[i * 50 : (i + 1) * 50]:
            producer.produce(stream.topic, r.value, r.key, timestamp=r.timestamp_ms)
        producer.flush(30)
        producer.abort_transaction(30)
    # the log now ends with an abort marker on every partition that saw the transaction

    began = time.monotonic()
    report = run_forward(stream)
    seconds = time.monotonic() - began

    assert report.records == 460
    # no range waited for records that never come (idle timeout is 5 s)
    assert seconds < stream.config.idle_timeout_seconds, seconds
    expected = assert_consistent(stream)  # covered == [0, high) incl. markers, data == broker
    assert len(expected) == 460
    highs = {p: high for p, (_, high) in watermarks(stream).items()}
    assert covered(stream) == {p: [(0, h)] for p, h in highs.items() if h}
    assert sum(highs.values()) > 460 + 200  # markers and aborted records take offsets
    ids = _ids(stream)
    assert not ids & {_event_id(r.value) for r in aborted}
    assert {_event_id(r.value) for r in committed} <= ids


def test_open_transaction_is_not_waited_for_and_lands_once_committed(make_config) -> None:
    stream = _stream(make_config)
    produce(stream, 120, seed=1)
    producer = transactional_producer(stream, f"tx-{stream.topic}")
    pending = list(notification_events(90, seed=4, start=T2))
    producer.begin_transaction()
    for r in pending:
        producer.produce(stream.topic, r.value, r.key, timestamp=r.timestamp_ms)
    producer.flush(30)

    began = time.monotonic()
    report = run_forward(stream)
    assert time.monotonic() - began < stream.config.idle_timeout_seconds
    assert report.records == 120
    assert not _ids(stream) & {_event_id(r.value) for r in pending}
    assert (
        ledger(stream).partition(0).records
        + sum(ledger(stream).partition(p).records for p in range(1, 6))
        == 120
    )

    producer.commit_transaction(30)
    _wait_until_every_transaction_marker_is_written(stream)
    report = run_forward(stream)
    assert report.records == 90
    assert_consistent(stream)
    assert {_event_id(r.value) for r in pending} <= _ids(stream)


def _wait_until_every_transaction_marker_is_written(stream: Stream, timeout: float = 15) -> None:
    """commit_transaction returns before the coordinator has written the commit marker to
    every partition; until then a read_committed reader's end (the LSO) lags behind."""
    from confluent_kafka import Consumer, TopicPartition

    from connectors.kafka_client import client_settings

    plain = Consumer({**client_settings(stream.connection), "group.id": "probe"})
    deadline = time.monotonic() + timeout
    try:
        while True:
            with open_consumer(stream.connection, "probe") as consumer:
                committed = partition_marks(consumer, stream.topic)
            ends = {
                p: plain.get_watermark_offsets(TopicPartition(stream.topic, p))[1]
                for p in committed
            }
            if all(m.high == ends[p] for p, m in committed.items()) or time.monotonic() > deadline:
                return
            time.sleep(0.2)
    finally:
        plain.close()


# --- retention -------------------------------------------------------------------------------


def _ingest_then_lose(stream: Stream, gap: int = 40) -> tuple[dict[int, int], dict[int, int]]:
    first = produce(stream, 600, seed=1)
    run_forward(stream)
    second = produce(stream, 600, seed=2)
    # delete records beyond the table's frontier: [first[p], first[p] + gap) are gone unread
    delete_records(stream, {p: first[p] + gap for p in first})
    return first, second


def test_retention_loss_fails_clearly_records_the_gap_and_next_run_continues(
    make_config,
) -> None:
    stream = _stream(make_config)
    first, second = _ingest_then_lose(stream)

    with pytest.raises(RetentionLossError) as info:
        run_forward(stream)
    message = str(info.value)
    assert "deleted by" in message and "retention" in message and stream.topic in message
    for p, n in first.items():
        assert str(OffsetRange(p, n, n + 40)) in message

    assert lost(stream) == {p: [(n, n + 40)] for p, n in first.items()}
    st = status(stream)
    assert st.lost_offsets == 40 * len(first)
    assert {s.partition: list(s.lost) for s in st.partitions} == lost(stream)
    assert st.missing_offsets == 0  # the failing run still landed everything readable
    assert_consistent(stream)

    third = produce(stream, 300, seed=3)
    report = run_forward(stream)
    assert report.records == 300 and not report.lost
    assert_consistent(stream)
    for p in first:
        total = first[p] + second.get(p, 0) + third.get(p, 0)
        assert covered(stream)[p] == [(0, first[p]), (first[p] + 40, total)]
        assert ledger(stream).partition(p).records == total - 40


def test_retention_loss_record_and_continue_succeeds_and_records_the_gap(make_config) -> None:
    stream = _stream(make_config, on_retention_loss="record-and-continue")
    first, _second = _ingest_then_lose(stream)

    report = run_forward(stream)
    assert sorted(report.lost) == sorted(OffsetRange(p, n, n + 40) for p, n in first.items())
    assert any("lost to retention" in w for w in report.warnings)
    assert report.records == 600 - 40 * len(first)
    assert lost(stream) == {p: [(n, n + 40)] for p, n in first.items()}
    assert_consistent(stream)


def test_fresh_table_on_topic_with_log_start_above_zero_records_history_as_lost(
    make_config,
) -> None:
    stream = _stream(make_config)
    per = produce(stream, 600, seed=1)
    delete_records(stream, dict.fromkeys(per, 30))

    report = run_forward(stream)  # on_retention_loss: fail, yet this is not a failure
    assert report.records == 600 - 30 * len(per)
    assert lost(stream) == {key: [(0, 30)] for key in per}
    assert covered(stream) == {p: [(30, n)] for p, n in per.items()}
    assert status(stream).lost_offsets == 30 * len(per)
    assert_consistent(stream)


# --- log cleanup -----------------------------------------------------------------------------


def test_ledger_survives_checkpoint_and_log_cleanup_and_ingestion_continues(make_config) -> None:
    stream = _stream(make_config, batch_records=150)
    first = produce(stream, 900, seed=1)
    run_forward(stream)
    second = produce(stream, 600, seed=2)
    run_forward(stream)
    table = DeltaTable(stream.table.uri)
    before = read_ledger(table, stream.topic)
    version = table.version()
    assert version >= 8

    # deltalake 1.6.6: touching the commit files' mtime into the past only lets cleanup drop
    # files before an older checkpoint; a zero log retention removes every old commit file
    table.alter.set_table_properties({"delta.logRetentionDuration": "interval 0 seconds"})
    table = DeltaTable(stream.table.uri)
    table.create_checkpoint()
    table.cleanup_metadata()
    log_dir = Path(stream.table.uri) / "_delta_log"
    commits = sorted(f for f in os.listdir(log_dir) if f.endswith(".json"))
    assert commits == [f"{table.version():020d}.json"], commits  # history is gone

    after = read_ledger(DeltaTable(stream.table.uri), stream.topic)
    assert after.partitions == before.partitions
    assert {p: list(x.covered) for p, x in after.partitions.items()} == {
        p: [(0, first.get(p, 0) + second.get(p, 0))] for p in first
    }
    assert_consistent(stream)

    third = produce(stream, 500, seed=3)
    report = run_forward(stream)
    assert report.records == 500
    assert_consistent(stream)
    assert covered(stream) == {
        p: [(0, first.get(p, 0) + second.get(p, 0) + third.get(p, 0))] for p in first
    }


# --- planning cost ---------------------------------------------------------------------------


def test_table_with_2000_commits_plans_a_run_in_well_under_a_second(make_config) -> None:
    stream = _stream(make_config)
    per = produce(stream, 2000, seed=1)
    # decode the records once, in a scratch table, to get real rows for the tiny commits
    scratch = dataclasses.replace(
        stream, table=DeltaStore(stream.table.uri + "_scratch", stream.table.schema, {})
    )
    run_forward(scratch)
    rows = (
        DeltaTable(scratch.table.uri)
        .to_pyarrow_table()
        .sort_by([("kafka_partition", "ascending"), ("kafka_offset", "ascending")])
    )
    stream.table.open()  # version 0: the engine creates the table
    version = synthesize_commits(stream.table.uri, stream.topic, rows)
    assert version == 2000

    with open_consumer(stream.connection, stream.group_id) as consumer:
        marks = partition_marks(consumer, stream.topic)
    timings = []
    for _ in range(3):
        began = time.perf_counter()
        table = DeltaTable(stream.table.uri)
        loaded = time.perf_counter()
        led = read_ledger(table, stream.topic)
        plan = plan_forward(led, marks)
        timings.append((loaded - began, time.perf_counter() - loaded))
    load, ledger_and_plan = min(timings, key=sum)
    print(
        f"\n2000-commit table: open {load * 1000:.1f} ms, read_ledger + plan_forward"
        f" {ledger_and_plan * 1000:.1f} ms"
    )
    assert plan.ranges == [] and led.table_version == 2000
    assert {p: list(x.covered) for p, x in led.partitions.items()} == {
        p: [(0, n)] for p, n in per.items()
    }
    assert load + ledger_and_plan < 1.0

    # the synthesized history is a valid lakeport table: audit passes, ingestion continues
    more = produce(stream, 200, seed=2)
    report = run_forward(stream)
    assert report.records == 200
    assert_consistent(stream)
    assert covered(stream) == {p: [(0, per[p] + more.get(p, 0))] for p in per}


# --- budgets and new partitions --------------------------------------------------------------


def test_max_records_per_run_stops_at_budget_and_next_run_continues_where_it_stopped(
    make_config,
) -> None:
    stream = _stream(make_config, max_records_per_run=600)
    per = produce(stream, 1500, seed=1)

    first = run_forward(stream)
    assert 0 < first.records <= 600
    after_first = covered(stream)
    assert sum(e - s for spans in after_first.values() for s, e in spans) == first.records
    assert all(spans[0][0] == 0 and len(spans) == 1 for spans in after_first.values())
    assert len(data_pairs(stream)) == first.records
    assert_consistent(stream, complete=False)

    second = run_forward(stream)
    # the second run starts exactly at each partition's frontier: no gap, no overlap
    frontier = {p: after_first[p][0][1] for p in per}
    starts: dict[int, int] = {}
    for r in second.ranges:
        starts[r.partition] = min(starts.get(r.partition, r.start), r.start)
    assert starts == {p: f for p, f in frontier.items() if f < per[p]}
    assert 0 < second.records <= 600
    assert_consistent(stream, complete=False)
    while sum(ledger(stream).partition(p).records for p in per) < 1500:
        assert run_forward(stream).records > 0
    assert_consistent(stream)


def test_new_partition_is_picked_up_from_its_beginning(make_config) -> None:
    stream = _stream(make_config)
    per = produce(stream, 600, seed=1)
    run_forward(stream)
    client = admin(stream)
    futures = client.create_partitions([NewPartitions(stream.topic, 8)])
    futures[stream.topic].result(timeout=30)
    more = produce(stream, 800, seed=2, partitions=8)
    assert more.get(6) and more.get(7)

    report = run_forward(stream)
    assert report.records == 800
    assert {r.partition for r in report.ranges} >= {6, 7}
    assert covered(stream)[6] == [(0, more[6])] and covered(stream)[7] == [(0, more[7])]
    assert ledger(stream).partition_count == 8
    assert_consistent(stream)
    assert covered(stream)[0] == [(0, per[0] + more.get(0, 0))]


# --- backfills -------------------------------------------------------------------------------


def _rows(stream: Stream):
    table = DeltaTable(stream.table.uri).to_pyarrow_table()
    return table.drop_columns([c for c in table.column_names if c.startswith("_")]).sort_by(
        [("kafka_partition", "ascending"), ("kafka_offset", "ascending")]
    )


@pytest.mark.parametrize("chunk_bytes", [None, 1])
def test_a_replace_backfill_commits_its_micro_batches_in_staged_chunks(
    make_config, monkeypatch, chunk_bytes
) -> None:
    """One commit per staged chunk (by default a whole 1M-event window) instead of one per
    micro-batch, so the files inside a chunk are removed once instead of rewritten again and
    again; with a tiny chunk every micro-batch is its own commit, exact all the same."""
    stream = _stream(make_config, batch_records=200)
    per = produce(stream, 1200, seed=1)
    run_forward(stream)
    original = _rows(stream)
    monkeypatch.setattr(staging, "CHUNK_BYTES", chunk_bytes or staging.CHUNK_BYTES)
    window = [OffsetRange(p, 0, n) for p, n in per.items()]

    report = run_window(stream, window, "replace")

    assert report.commits == 1 if chunk_bytes is None else report.commits >= 1200 // 200
    assert report.records == sum(per.values())
    assert _rows(stream).equals(original)
    assert covered(stream) == {p: [(0, n)] for p, n in per.items()}
    assert_consistent(stream)


def test_a_replace_backfill_without_scratch_space_is_one_clear_error_and_changes_nothing(
    make_config, monkeypatch, tmp_path
) -> None:
    stream = _stream(make_config, batch_records=200)
    per = produce(stream, 600, seed=2)
    run_forward(stream)
    before, version = _rows(stream), DeltaTable(stream.table.uri).version()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))

    with pytest.raises(ScratchSpaceError, match="set TMPDIR to a folder with 1024 MiB free"):
        run_window(stream, [OffsetRange(p, 0, n) for p, n in per.items()], "replace")

    assert DeltaTable(stream.table.uri).version() == version
    assert _rows(stream).equals(before)


def test_replace_backfill_twice_gives_the_same_rows_and_counts(make_config) -> None:
    stream = _stream(make_config, batch_records=200)
    per = produce(stream, 1200, seed=1)
    run_forward(stream)
    original = _rows(stream)
    before = ledger(stream)
    window = [OffsetRange(0, 10, per[0] - 5), OffsetRange(3, 0, per[3])]

    first = run_window(stream, window, "replace")
    for w in window:
        spans = Spans.of((r.start, r.end) for r in first.ranges if r.partition == w.partition)
        assert list(spans) == [(w.start, w.end)]
    assert first.records == (per[0] - 15) + per[3]
    once = _rows(stream)
    v1 = DeltaTable(stream.table.uri).version()
    second = run_window(stream, window, "replace")
    assert second.records == first.records
    twice = _rows(stream)
    assert DeltaTable(stream.table.uri).version() > v1  # it really rewrote the window

    assert once.equals(original) and twice.equals(original)
    after = ledger(stream)
    assert {p: (x.covered, x.records) for p, x in after.partitions.items()} == {
        p: (x.covered, x.records) for p, x in before.partitions.items()
    }
    assert all(after.partition(p).seq > before.partition(p).seq for p in (0, 3))
    assert_consistent(stream)


def test_fill_backfill_ingests_only_the_missing_sub_ranges(make_config) -> None:
    stream = _stream(make_config, max_records_per_run=600)
    per = produce(stream, 1500, seed=1)
    run_forward(stream)  # lands about 100 of each partition
    frontier = {p: spans[0][1] for p, spans in covered(stream).items()}
    version = DeltaTable(stream.table.uri).version()
    original = _rows(stream)

    window = [OffsetRange(p, 0, per[p]) for p in (1, 4)]
    report = run_window(stream, window, "fill")
    for p in (1, 4):
        spans = Spans.of((r.start, r.end) for r in report.ranges if r.partition == p)
        assert list(spans) == [(frontier[p], per[p])]
    assert {r.partition for r in report.ranges} == {1, 4}
    assert report.records == sum(per[p] - frontier[p] for p in (1, 4))
    # the rows that were there are untouched: only appends, no rewrite of existing files
    now = _rows(stream)
    assert now.num_rows == original.num_rows + report.records
    table = DeltaTable(stream.table.uri)
    new_commits = table.history(table.version() - version)
    assert new_commits and all(
        h["operationParameters"].get("mode") == "Append" for h in new_commits
    )
    assert covered(stream)[1] == [(0, per[1])] and covered(stream)[4] == [(0, per[4])]
    assert covered(stream)[0] == [(0, frontier[0])]
    assert_consistent(stream, complete=False)

    again = run_window(stream, window, "fill")
    assert again.records == 0 and again.commits == 0


def test_one_run_lands_every_missing_range_of_a_partition(make_config) -> None:
    stream = _stream(make_config)
    per = produce(stream, 1200, seed=1)
    window = [OffsetRange(p, 50, 100) for p in per]
    run_window(stream, window, "fill")  # lands [50, 100) of each partition: [0, 50) is missing
    assert covered(stream) == {key: [(50, 100)] for key in per}

    run_forward(stream)  # must land [0, 50) and [100, high) of every partition
    assert covered(stream) == {p: [(0, n)] for p, n in per.items()}
    assert_consistent(stream)


def test_backfill_by_time_maps_to_the_offsets_of_that_time_window(make_config) -> None:
    stream = _stream(make_config)
    a = produce(stream, 300, seed=1, start=T1)
    b = produce(stream, 400, seed=2, start=T2)
    c = produce(stream, 300, seed=3, start=T3)
    run_forward(stream)
    original = _rows(stream)

    report = run_time_window(stream, T2, T3, "replace")
    expected = sorted(OffsetRange(p, a.get(p, 0), a.get(p, 0) + n) for p, n in b.items() if n)
    assert sorted(report.ranges) == expected
    assert report.records == 400
    assert _rows(stream).equals(original)
    total = {p: a.get(p, 0) + b.get(p, 0) + c.get(p, 0) for p in a}
    assert covered(stream) == {p: [(0, n)] for p, n in total.items()}
    assert_consistent(stream)

    # a time window that ends after the last record runs to the high watermark
    report = run_time_window(stream, T3, datetime(2030, 1, 1, tzinfo=UTC), "fill")
    assert report.records == 0  # all of it is already there
    assert_consistent(stream)


# --- the ledger refuses to go backwards ------------------------------------------------------


def _ledger(**parts: tuple[list[tuple[int, int]], list[tuple[int, int]], int]) -> Ledger:
    return Ledger(
        "t",
        {
            int(p[1:]): PartitionLedger(int(p[1:]), Spans.of(c), Spans.of(lo), records=n, seq=3)
            for p, (c, lo, n) in parts.items()
        },
        7,
    )


def test_ledger_update_refuses_overlap_shrink_and_impossible_counts() -> None:
    before = _ledger(p0=([(0, 100)], [(100, 120)], 100), p1=([(0, 50), (60, 80)], [], 70))

    update = LedgerUpdate(before)
    with pytest.raises(LedgerError, match="overlaps"):
        update.add(OffsetRange(0, 90, 130), 40)  # would land [90, 100) twice
    with pytest.raises(LedgerError, match="overlaps"):
        update.add(OffsetRange(0, 110, 130), 20)  # lost offsets are handled too
    with pytest.raises(LedgerError):
        update.mark_lost(OffsetRange(1, 40, 55))  # covered offsets cannot become lost
    with pytest.raises(LedgerError, match="lost"):
        update.replace(OffsetRange(0, 90, 115), 25, 0, 10, 0)
    assert not update  # nothing half-applied

    # a transaction set that would shrink coverage is refused when the actions are built
    shrink = LedgerUpdate(before)
    shrink.after[1] = dataclasses.replace(before.partition(1), covered=Spans.of([(0, 50)]))
    with pytest.raises(LedgerError, match="shrink"):
        shrink.transactions()
    forget = LedgerUpdate(before)
    forget.after[0] = dataclasses.replace(before.partition(0), lost=Spans())
    with pytest.raises(LedgerError, match="shrink"):
        forget.transactions()
    negative = LedgerUpdate(before)
    negative.replace(OffsetRange(1, 0, 50), 0, 0, 80, 0)  # claims 80 old rows, 70 exist
    with pytest.raises(LedgerError, match="impossible"):
        negative.transactions()

    # a valid update: seq goes up by one, coverage grows, every slot is written
    ok = LedgerUpdate(before)
    ok.add(OffsetRange(1, 50, 60), 10)
    actions = {t.app_id: t.version for t in ok.transactions()}
    assert actions["lakeport/t/1/seq"] == 4
    assert actions["lakeport/t/1/covered"] == 1
    assert actions["lakeport/t/1/covered/0/end"] == 80
    assert actions["lakeport/t/1/records"] == 80


def test_a_writer_s_ledger_after_its_own_commit_equals_the_ledger_read_back(make_config) -> None:
    """The cached ledger a writer keeps after committing carries the seq it wrote: a stale seq
    would let a later update rebase over another writer's commit."""
    stream = _stream(make_config)
    produce(stream, 300, seed=1)
    run_forward(stream)
    writer = stream.writer()
    for p in range(2):
        update = writer.update()
        update.mark_lost(OffsetRange(p, 10_000, 10_001))
        writer.commit(update, append_rows(stream.table.schema.empty_table()), "retention")
        assert writer.ledger == read_ledger(DeltaTable(stream.table.uri), stream.topic)


def test_rewritten_spans_stay_exact_when_recent_and_only_widen_when_merged() -> None:
    from connectors.ledger import merge_rewrites

    # overlapping spans merge and keep the newest seq; adjacent ones of other seqs stay apart
    assert merge_rewrites([(0, 100, 3), (50, 150, 5), (150, 200, 9)]) == (
        (0, 150, 5),
        (150, 200, 9),
    )
    # beyond the limit the oldest neighbours merge first; recent rewrites stay exact
    many = [(i * 10, i * 10 + 5, i + 1) for i in range(40)]
    kept = merge_rewrites(many, limit=32)
    assert len(kept) == 32 and kept[-20:] == tuple(many[-20:])
    for after_seq in range(0, 41):  # what a derived table re-derives only grows
        wanted = Spans.of((s, e) for s, e, q in many if q > after_seq)
        got = Spans.of((s, e) for s, e, q in kept if q > after_seq)
        assert not wanted.minus(got), after_seq


def test_a_replace_records_what_it_rewrote_and_a_fresh_window_is_not_a_rewrite() -> None:
    before = _ledger(p0=([(0, 100)], [], 100))
    update = LedgerUpdate(before)
    update.replace(OffsetRange(0, 80, 150), 70, 0, 20, 0)  # [100, 150) is new coverage
    update.move_dead(OffsetRange(1, 5, 9), 0)
    actions = {t.app_id: t.version for t in update.transactions()}
    assert [actions[f"lakeport/t/0/rewritten/0/{k}"] for k in ("start", "end", "seq")] == [
        80,
        100,
        4,
    ]
    assert actions["lakeport/t/1/rewritten"] == 1 and actions["lakeport/t/1/rewritten/0/seq"] == 1
    assert "lakeport/t/0/source_seq" not in actions, "raw tables write no source seq"


def test_a_writer_that_commits_again_bumps_the_fence_every_time(make_config) -> None:
    """The seq a writer keeps after its own commit is the one in the log, so its next commit
    bumps it again; a writer racing on that partition then sees it change and re-plans."""
    stream = _stream(make_config, batch_records=100)
    produce(stream, 300, partitions=1)
    report = run_forward(stream)
    assert report.commits == 3
    table = DeltaTable(stream.table.uri)
    seqs = [
        json.loads(line)["txn"]["version"]
        for v in range(1, table.version() + 1)
        for line in (Path(stream.table.uri) / "_delta_log" / f"{v:020d}.json")
        .read_text()
        .splitlines()
        if json.loads(line).get("txn", {}).get("appId", "").endswith("/0/seq")
    ]
    assert seqs == [1, 2, 3]
    writer = stream.writer()
    update = writer.update()
    update.add(OffsetRange(0, 300, 301), 1)
    assert (
        update.applied(99).partition(0).seq == read_ledger(table, stream.topic).partition(0).seq + 1
    )


def test_a_writer_after_others_commits_replays_their_ledger_copies_and_sees_the_full_ledger(
    tmp_path: Path,
) -> None:
    schema = pa.schema([("kafka_partition", pa.int32()), ("kafka_offset", pa.int64())])
    store = DeltaStore(str(tmp_path / "t"), schema, {})
    mine, theirs = TableWriter(store, "topic"), TableWriter(store, "topic")

    def land(writer: TableWriter, p: int, start: int, end: int) -> None:
        update = writer.update()
        update.add(OffsetRange(p, start, end), end - start)
        rows = pa.table(
            {"kafka_partition": pa.array([p] * (end - start), pa.int32()),
             "kafka_offset": pa.array(range(start, end), pa.int64())}
        )  # fmt: skip
        writer.commit(update, append_rows(rows), "forward")

    land(mine, 0, 0, 10)
    land(theirs, 1, 0, 5)
    DeltaTable(store.uri).optimize.compact()  # another engine's commit in between
    land(theirs, 2, 0, 7)
    land(mine, 0, 10, 12)  # after the others' commits: replays their ledger copies

    full = read_ledger(DeltaTable(store.uri), "topic")  # every slot (a local table)
    with mock.patch.object(DeltaTable, "transaction_version", side_effect=AssertionError):
        replayed = mine.ledger  # from the commits' copies alone: not one txn look-up
    assert replayed == full
    assert {p: (x.covered, x.records) for p, x in full.partitions.items()} == {
        0: (Spans.of([(0, 12)]), 12),
        1: (Spans.of([(0, 5)]), 5),
        2: (Spans.of([(0, 7)]), 7),
    }


def test_after_a_restore_a_writers_ledger_still_equals_its_txn_slots(
    tmp_path: Path,
) -> None:
    schema = pa.schema([("kafka_partition", pa.int32()), ("kafka_offset", pa.int64())])
    store = DeltaStore(str(tmp_path / "t"), schema, {})
    writer = TableWriter(store, "topic")
    for start in (0, 10, 20):
        update = writer.update()
        update.add(OffsetRange(0, start, start + 10), 10)
        rows = pa.table(
            {"kafka_partition": pa.array([0] * 10, pa.int32()),
             "kafka_offset": pa.array(range(start, start + 10), pa.int64())}
        )  # fmt: skip
        writer.commit(update, append_rows(rows), "forward")

    DeltaTable(store.uri).restore(2)  # data back to [0, 20); delta-rs keeps the txn actions
    writer.table = store.open()

    slots = read_ledger(DeltaTable(store.uri), "topic")  # a local table: every slot
    assert writer.ledger == slots
    assert slots.table_version == 4
