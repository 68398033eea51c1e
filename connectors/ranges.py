"""Half-open offset ranges and sets of them: the unit in which lakeport plans, reads and records.

A Kafka record is identified by (topic, partition, offset); a table holds one topic, so a
range is (partition, [start, end)). Sets of ranges are kept normalised (sorted, disjoint,
adjacent ones merged), which keeps the ledger small however many runs touched a partition.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

from connectors.errors import UsageError


@dataclass(frozen=True, order=True)
class OffsetRange:
    """Offsets [start, end) of one partition."""

    partition: int
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise UsageError(
                f"invalid offset range [{self.start}, {self.end}) of partition {self.partition}:"
                " offsets start at 0 and a range's start may not exceed its end"
            )

    def __len__(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:
        return f"p{self.partition}[{self.start},{self.end})"


Span = tuple[int, int]


@dataclass(frozen=True)
class Spans:
    """A normalised set of [start, end) spans of one partition."""

    spans: tuple[Span, ...] = ()

    @classmethod
    def of(cls, spans: Iterable[Span]) -> Spans:
        merged: list[list[int]] = []
        for start, end in sorted(s for s in spans if s[1] > s[0]):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return cls(tuple((s, e) for s, e in merged))

    def __iter__(self) -> Iterator[Span]:
        return iter(self.spans)

    def __bool__(self) -> bool:
        return bool(self.spans)

    def __len__(self) -> int:
        return len(self.spans)

    @property
    def size(self) -> int:
        """How many offsets the set holds."""
        return sum(e - s for s, e in self.spans)

    def union(self, other: Iterable[Span]) -> Spans:
        return Spans.of((*self.spans, *other))

    def minus(self, other: Iterable[Span]) -> Spans:
        result: list[Span] = []
        cuts = Spans.of(other).spans
        for start, end in self.spans:
            cursor = start
            for cut_start, cut_end in cuts:
                if cut_end <= cursor or cut_start >= end:
                    continue
                if cut_start > cursor:
                    result.append((cursor, cut_start))
                cursor = max(cursor, cut_end)
            if cursor < end:
                result.append((cursor, end))
        return Spans(tuple(result))

    def intersect(self, other: Iterable[Span]) -> Spans:
        return self.minus(self.minus(other))

    def overlaps(self, other: Iterable[Span]) -> bool:
        return bool(self.intersect(other))

    def __str__(self) -> str:
        return " ".join(f"[{s},{e})" for s, e in self.spans) or "∅"


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`: the partitions p with p % count == index.

    A stream spread over `count` workers gives each one shard; partitions the topic gains
    later fall into a shard too, without re-configuring anything.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise UsageError(
                f"shard {self.index}/{self.count}: give a shard as INDEX/COUNT with"
                " 0 <= INDEX < COUNT, e.g. 0/3"
            )

    def __contains__(self, partition: object) -> bool:
        return isinstance(partition, int) and partition % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`1/3` -> Shard(1, 3)."""
        index, _, count = text.partition("/")
        if not (index.isdigit() and count.isdigit()):
            raise UsageError(f"shard {text!r}: give a shard as INDEX/COUNT, e.g. 0/3")
        return cls(int(index), int(count))


Partitions = Collection[int] | Shard
"""Which partitions a run touches: a list of them, or a shard of the topic's."""


@dataclass(frozen=True)
class PartitionMarks:
    """Where a partition's log starts and ends right now (the broker's watermarks)."""

    partition: int
    low: int
    high: int
