"""Planning is a pure function of (ledger, watermarks, request): the cases that matter."""

from connectors.ledger import Ledger, PartitionLedger
from connectors.planner import plan_forward, plan_window
from connectors.ranges import OffsetRange, PartitionMarks, Spans


def marks(**highs: int) -> dict[int, PartitionMarks]:
    return {int(p[1:]): PartitionMarks(int(p[1:]), 0, h) for p, h in highs.items()}


def test_budget_is_never_exceeded_and_unused_shares_go_to_other_partitions() -> None:
    plan = plan_forward(Ledger("t"), marks(p0=2, p1=100, p2=100), max_offsets=50)
    assert plan.offsets == 50
    assert {r.partition: len(r) for r in plan.ranges} == {0: 2, 1: 24, 2: 24}
    assert plan.skipped == [OffsetRange(1, 24, 100), OffsetRange(2, 24, 100)]


def test_a_budget_smaller_than_the_partition_count_reads_no_more_than_the_budget() -> None:
    plan = plan_forward(Ledger("t"), marks(p0=10, p1=10, p2=10, p3=10, p4=10, p5=10), max_offsets=3)
    assert plan.offsets == 3


def test_history_deleted_before_a_new_table_is_never_read_not_a_loss() -> None:
    plan = plan_forward(Ledger("t"), {0: PartitionMarks(0, 40, 100)})
    assert plan.never_read == [OffsetRange(0, 0, 40)] and not plan.retention_loss
    assert plan.ranges == [OffsetRange(0, 40, 100)]


def test_deleted_offsets_of_a_partition_unseen_by_an_existing_table_are_a_retention_loss() -> None:
    ledger = Ledger("t", {0: PartitionLedger(0, covered=Spans.of([(0, 10)]), seq=1)})
    plan = plan_forward(ledger, {0: PartitionMarks(0, 0, 10), 1: PartitionMarks(1, 5, 20)})
    assert plan.retention_loss == [OffsetRange(1, 0, 5)] and not plan.never_read


def test_forward_fills_every_hole_and_skips_what_is_held() -> None:
    ledger = Ledger("t", {0: PartitionLedger(0, covered=Spans.of([(0, 10), (20, 30)]), seq=2)})
    plan = plan_forward(ledger, marks(p0=40))
    assert plan.ranges == [OffsetRange(0, 10, 20), OffsetRange(0, 30, 40)]


def test_replace_never_deletes_rows_it_cannot_read_again() -> None:
    ledger = Ledger("t", {0: PartitionLedger(0, covered=Spans.of([(0, 100)]), seq=1)})
    plan = plan_window(ledger, {0: PartitionMarks(0, 30, 100)}, [OffsetRange(0, 10, 60)], "replace")
    assert plan.ranges == [OffsetRange(0, 30, 60)]  # [10, 30) is gone from Kafka: rows kept
    assert not plan.retention_loss


def test_fill_reads_only_missing_offsets_and_stops_at_the_high_watermark() -> None:
    ledger = Ledger("t", {0: PartitionLedger(0, covered=Spans.of([(0, 50)]), seq=1)})
    plan = plan_window(ledger, marks(p0=80), [OffsetRange(0, 40, 500)], "fill")
    assert plan.ranges == [OffsetRange(0, 50, 80)]
