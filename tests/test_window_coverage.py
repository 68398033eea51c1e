"""Which time windows the ledger covers completely: pure, over a made-up time -> offset map."""

from datetime import UTC, datetime, timedelta

from connectors import Ledger, OffsetRange, PartitionLedger, Spans, covered_windows

T0 = datetime(2026, 11, 1, tzinfo=UTC)
# Partition 0 holds one record per minute from T0 on (offset = minutes since T0), 300 records.
HIGH = 300


def hours(n: int) -> list[tuple[datetime, datetime]]:
    return [(T0 + timedelta(hours=i), T0 + timedelta(hours=i + 1)) for i in range(n)]


def ledger(covered: list[tuple[int, int]], lost: list[tuple[int, int]] = ()) -> Ledger:
    part = PartitionLedger(0, covered=Spans.of(covered), lost=Spans.of(lost), seq=1)
    return Ledger("t", {0: part})


class Bounds:
    """offsets_for_times of partition 0, counting the look-ups."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, when: datetime) -> dict[int, int]:
        self.calls += 1
        return {0: min(HIGH, max(0, int((when - T0).total_seconds() // 60)))}


def test_a_window_is_complete_exactly_when_its_offsets_are_covered_or_lost() -> None:
    states = covered_windows(ledger([(0, 130)], lost=[(130, 180)]), Bounds(), hours(6))
    assert [s.complete for s in states] == [True, True, True, False, False, True]
    # hour 2 holds offsets 120..180: covered up to 130, then lost to retention
    assert states[2].lost == (OffsetRange(0, 130, 180),) and not states[1].lost
    # hour 5 holds no record (the partition ends at 300): nothing to read, so complete


def test_long_runs_of_complete_windows_cost_two_look_ups_not_one_per_window() -> None:
    bounds = Bounds()
    states = covered_windows(ledger([(0, HIGH)]), bounds, hours(2000))
    assert all(s.complete for s in states) and bounds.calls == 2


def test_a_hole_is_found_by_bisection_in_logarithmic_look_ups() -> None:
    bounds = Bounds()
    states = covered_windows(ledger([(0, 61), (62, HIGH)]), bounds, hours(1024))
    assert [i for i, s in enumerate(states) if not s.complete] == [1]
    assert bounds.calls <= 2 * 10 + 2  # log2(1024) = 10


def test_windows_that_are_not_adjacent_are_judged_separately() -> None:
    windows = hours(6)
    states = covered_windows(ledger([(0, 60), (240, HIGH)]), Bounds(), windows[:1] + windows[4:])
    assert [s.complete for s in states] == [True, True, True]
