"""Decide which offset ranges a run reads, from the ledger and the broker's watermarks.

Plans are pure functions of (ledger, watermarks, request), which keeps them easy to test and
makes every run's intent explicit before any record is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from connectors.ledger import Ledger
from connectors.ranges import OffsetRange, PartitionMarks, Spans

Mode = Literal["forward", "replace", "fill"]


@dataclass(frozen=True)
class Plan:
    """What one run will do."""

    mode: Mode
    ranges: list[OffsetRange]
    retention_loss: list[OffsetRange] = field(default_factory=list)
    never_read: list[OffsetRange] = field(default_factory=list)
    skipped: list[OffsetRange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the plan leaves out of the request, in words for the user (never silently)."""

    @property
    def offsets(self) -> int:
        return sum(len(r) for r in self.ranges)


def _ranges(partition: int, spans: Spans) -> list[OffsetRange]:
    return [OffsetRange(partition, s, e) for s, e in spans]


def plan_forward(
    ledger: Ledger, marks: dict[int, PartitionMarks], max_offsets: int | None = None
) -> Plan:
    """Read everything not yet handled, up to each partition's high watermark.

    Offsets below the log start were deleted by retention: for a new table they are simply
    history before the table (`never_read`); once the table holds anything they are a
    retention loss that the stream's policy decides about.
    """
    ranges: list[OffsetRange] = []
    loss: list[OffsetRange] = []
    never: list[OffsetRange] = []
    for p, mark in sorted(marks.items()):
        part = ledger.partition(p)
        missing = part.missing(mark.high)
        gone = missing.intersect([(0, mark.low)])
        (loss if ledger.partitions else never).extend(_ranges(p, gone))
        ranges += _ranges(p, missing.minus([(0, mark.low)]))
    ranges, skipped = _budget(ranges, max_offsets)
    return Plan("forward", ranges, loss, never, skipped)


def plan_window(
    ledger: Ledger, marks: dict[int, PartitionMarks], window: list[OffsetRange], mode: Mode
) -> Plan:
    """Re-read a window (`replace`) or only its missing offsets (`fill`).

    Offsets above the high watermark are not there yet and are left out. Offsets below the log
    start cannot be re-read: a `replace` keeps whatever rows the table has for them, and where
    the table has none they are a retention loss.
    """
    ranges: list[OffsetRange] = []
    loss: list[OffsetRange] = []
    notes: list[str] = []
    for w in window:
        mark = marks[w.partition]  # callers restrict marks to existing partitions first
        if w.end > mark.high:
            notes.append(
                f"{w}: partition {w.partition} holds offsets up to {mark.high} only (its high"
                f" watermark); offsets from {max(w.start, mark.high)} on are not in the topic"
                " yet and were not read"
            )
        part = ledger.partition(w.partition)
        wanted = Spans.of([(w.start, min(w.end, mark.high))])
        missing = wanted.minus(part.handled)
        loss += _ranges(w.partition, missing.intersect([(0, mark.low)]))
        readable: Spans = wanted if mode == "replace" else missing
        ranges += _ranges(w.partition, readable.minus([(0, mark.low)]).minus(part.lost))
    if not window:
        notes.append("the window holds no offsets on any partition: nothing to read")
    elif not ranges and not loss and mode == "fill":
        notes.append(
            "nothing to fill: the table already holds every offset of "
            + ", ".join(str(w) for w in window)
            + " that the topic has"
        )
    return Plan(mode, sorted(ranges), loss, notes=notes)


def _budget(
    ranges: list[OffsetRange], max_offsets: int | None
) -> tuple[list[OffsetRange], list[OffsetRange]]:
    """Cut the plan to at most `max_offsets`, shared fairly: what one partition does not need
    goes to the others."""
    wanted: dict[int, int] = {}
    for r in ranges:
        wanted[r.partition] = wanted.get(r.partition, 0) + len(r)
    if max_offsets is None or sum(wanted.values()) <= max_offsets:
        return ranges, []
    allowance = dict.fromkeys(wanted, 0)
    left = max_offsets
    while left > 0:
        hungry = [p for p in sorted(wanted) if allowance[p] < wanted[p]]
        share = max(1, left // len(hungry))
        for p in hungry:
            give = min(share, wanted[p] - allowance[p], left)
            allowance[p] += give
            left -= give
    kept: list[OffsetRange] = []
    skipped: list[OffsetRange] = []
    for r in ranges:
        take = min(len(r), allowance[r.partition])
        allowance[r.partition] -= take
        if take:
            kept.append(OffsetRange(r.partition, r.start, r.start + take))
        if take < len(r):
            skipped.append(OffsetRange(r.partition, r.start + take, r.end))
    return kept, skipped


def time_window(
    starts: dict[int, int | None], ends: dict[int, int | None], marks: dict[int, PartitionMarks]
) -> list[OffsetRange]:
    """Turn per-partition offsets of a time window's bounds into offset ranges.

    An unmatched bound (no record at or after that time) means the partition's high watermark.
    """
    window = []
    for p, mark in sorted(marks.items()):
        start = starts.get(p)
        end = ends.get(p)
        lo = mark.high if start is None else start
        hi = mark.high if end is None else end
        if hi > lo:
            window.append(OffsetRange(p, lo, hi))
    return window
