"""The offset ledger: which offsets of each partition a table holds, stored in the table's own log.

The ledger lives in Delta `txn` (set-transaction) actions written in the same commit as the
data, so data and progress are one atomic step. `txn` actions are kept in checkpoints and
survive log cleanup, unlike `commitInfo`. A `txn` holds one integer per application id, so each
partition's state is spread over a few ids:

    lakeport/{topic}/partitions             number of partitions the ledger knows
    lakeport/{topic}/{p}/seq                bumped by every commit touching p (the fence)
    lakeport/{topic}/{p}/records            records landed (main table + dead letters)
    lakeport/{topic}/{p}/dead               records in the dead-letter table
    lakeport/{topic}/{p}/covered            number of covered spans, then .../covered/{i}/start|end
    lakeport/{topic}/{p}/lost               number of spans lost to retention, then .../lost/{i}/...
    lakeport/{topic}/{p}/rewritten          number of spans rewritten after they were covered,
                                            then .../rewritten/{i}/start|end|seq
    lakeport/{topic}/{p}/source_seq         derived tables: the source table's seq of p they reflect

Every commit that touches partition p rewrites p's ids, so two writers racing on p collide in
delta-rs's conflict checker ("Concurrent transaction failed") and exactly one wins; writers on
different partitions do not block each other.

Reading one id costs a read of the log since the last checkpoint (a GET per commit on object
storage), so each commit also stores the whole ledger it leaves behind in its `commitInfo`
(`lakeport.ledger`). Readers take a partition from that copy only while the partition's `seq`
id still holds the value the copy records; the `txn` ids stay the truth.

Derived tables (`connectors.derived`) keep the same ledger in their own log, in the same topic
namespace: for them `covered` is the raw offsets they absorbed, so "which Kafka offsets does
this table reflect" has one answer and one set of tools for raw and derived tables alike.
What a derived table cannot learn from coverage is that rows it already absorbed changed: a
`replace` backfill or a re-drive rewrites offsets that stay covered. So the raw ledger also
records *rewritten* spans with the `seq` of the commit that rewrote them, and a derived table
records the raw `seq` it has caught up with (`source_seq`); spans rewritten at a higher `seq`
are what it must re-derive. Like the rest of the ledger this lives in `txn` actions, which
survive checkpoints, log cleanup and vacuum (commit metadata and Delta's change data feed do
not: both need the commit files or `_change_data` files of the versions in between). The list
is kept short by merging the oldest neighbours, which can only widen what gets re-derived,
never miss it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from deltalake import DeltaTable, Transaction

from connectors.errors import ConcurrentChange, LedgerError
from connectors.ranges import OffsetRange, Span, Spans
from connectors.version import __version__

Rewrite = tuple[int, int, int]
"""Offsets [start, end) of a partition rewritten by the commit that raised its seq to `seq`."""

MAX_REWRITES = 32
"""Rewritten spans kept per partition; beyond it the closest neighbours merge (wider, safe)."""


def merge_rewrites(rewrites: Iterable[Rewrite], limit: int = MAX_REWRITES) -> tuple[Rewrite, ...]:
    """Sorted, disjoint rewritten spans, at most `limit`; a merged span keeps the highest seq.

    Overlapping spans merge; beyond `limit`, the neighbours rewritten longest ago merge first
    (closest first among equals): recent rewrites stay exact, old ones only get coarser for a
    derived table that has not caught up with them.
    """
    merged: list[list[int]] = []
    for start, end, seq in sorted(r for r in rewrites if r[1] > r[0]):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
            merged[-1][2] = max(merged[-1][2], seq)
        else:
            merged.append([start, end, seq])
    while len(merged) > limit:
        i = min(
            range(len(merged) - 1),
            key=lambda j: (max(merged[j][2], merged[j + 1][2]), merged[j + 1][0] - merged[j][1]),
        )
        right = merged.pop(i + 1)
        merged[i][1], merged[i][2] = right[1], max(merged[i][2], right[2])
    return tuple((s, e, q) for s, e, q in merged)


@dataclass(frozen=True)
class PartitionLedger:
    """What the table holds of one partition."""

    partition: int
    covered: Spans = field(default_factory=Spans)
    lost: Spans = field(default_factory=Spans)
    records: int = 0
    dead: int = 0
    seq: int = 0
    rewritten: tuple[Rewrite, ...] = ()
    source_seq: int = 0

    @property
    def handled(self) -> Spans:
        """Offsets that need no more reading: landed, or known to be gone."""
        return self.covered.union(self.lost)

    @property
    def frontier(self) -> int:
        """The first offset not handled: everything below it is covered or lost."""
        first = next(iter(self.handled), None)
        return first[1] if first and first[0] == 0 else 0

    def missing(self, below: int) -> Spans:
        """Offsets in [0, below) that are neither covered nor lost."""
        return Spans.of([(0, below)]).minus(self.handled)

    def rewritten_after(self, seq: int) -> Spans:
        """Offsets rewritten by commits that raised this partition's seq above `seq`."""
        return Spans.of((s, e) for s, e, q in self.rewritten if q > seq)


@dataclass(frozen=True)
class Ledger:
    """The ledger of one table as of one Delta version."""

    topic: str
    partitions: dict[int, PartitionLedger] = field(default_factory=dict)
    table_version: int | None = None

    def partition(self, p: int) -> PartitionLedger:
        return self.partitions.get(p) or PartitionLedger(p)

    @property
    def partition_count(self) -> int:
        return max(self.partitions, default=-1) + 1


def _app(topic: str, *parts: object) -> str:
    return "/".join(("lakeport", topic, *(str(p) for p in parts)))


_HEAD = ("seq", "records", "dead", "source_seq", "covered", "lost", "rewritten")
"""Per partition, the slots read first (the last three are the number of spans of each kind)."""
_LOOKUP_THREADS = 8


def read_ledger(table: DeltaTable, topic: str, known: Ledger | None = None) -> Ledger:
    """Read the ledger from the table's current snapshot (a few `txn` look-ups per partition).

    A look-up reads the log from the last checkpoint (on object storage: a GET per commit
    since), so their number matters. Every lakeport commit also stores the ledger it leaves
    behind in its `commitInfo` (`lakeport.ledger`); that copy, or a `known` older ledger of
    the same table, is taken for each partition whose `seq` is still the one it records
    (every commit touching a partition bumps its `seq`), so a read is one look-up per
    partition plus a full read of only the partitions that moved since. Tables without such a
    copy are read slot by slot: the fixed slots of every partition, then their spans. The
    look-ups run on a few threads (delta-rs releases the GIL meanwhile). The copy is used on
    object storage only (`_remote`). A writer that holds
    the ledger of an older version (`known`) replays the newer commits' copies instead, with
    no look-up at all (`_replayed`).
    """
    replayed = _replayed(table, topic, known) if known is not None else None
    if replayed is not None:
        return replayed
    with ThreadPoolExecutor(_LOOKUP_THREADS) as pool:

        def read(slots: list[tuple[object, ...]]) -> dict[tuple[object, ...], int | None]:
            found = pool.map(lambda slot: table.transaction_version(_app(topic, *slot)), slots)
            return dict(zip(slots, found, strict=True))

        count = table.transaction_version(_app(topic, "partitions")) or 0
        copy = _committed_snapshot(table, topic) if _remote(table) else None
        candidates = [c for c in (known, copy) if c is not None]
        kept: dict[int, PartitionLedger] = {}
        if candidates:
            seqs = read([(p, "seq") for p in range(count)])
            for p in range(count):
                seq = seqs[(p, "seq")]
                match = [c.partitions[p] for c in candidates if seq and c.partition(p).seq == seq]
                if match:
                    kept[p] = match[0]
        head = read([(p, name) for p in range(count) if p not in kept for name in _HEAD])
        present = [p for p in range(count) if p not in kept and head[(p, "seq")] is not None]
        tail = read(
            [
                (p, kind, i, field)
                for p in present
                for kind, fields in (
                    ("covered", ("start", "end")),
                    ("lost", ("start", "end")),
                    ("rewritten", ("start", "end", "seq")),
                )
                for i in range(head[(p, kind)] or 0)
                for field in fields
            ]
        )

    def spans(p: int, kind: str) -> Spans:
        return Spans.of(
            (tail[(p, kind, i, "start")] or 0, tail[(p, kind, i, "end")] or 0)
            for i in range(head[(p, kind)] or 0)
        )

    partitions = {
        p: PartitionLedger(
            partition=p,
            covered=spans(p, "covered"),
            lost=spans(p, "lost"),
            records=head[(p, "records")] or 0,
            dead=head[(p, "dead")] or 0,
            seq=head[(p, "seq")] or 0,
            rewritten=tuple(
                (
                    tail[(p, "rewritten", i, "start")] or 0,
                    tail[(p, "rewritten", i, "end")] or 0,
                    tail[(p, "rewritten", i, "seq")] or 0,
                )
                for i in range(head[(p, "rewritten")] or 0)
            ),
            source_seq=head[(p, "source_seq")] or 0,
        )
        for p in present
    }
    return Ledger(topic, dict(sorted({**kept, **partitions}.items())), table.version())


@dataclass
class LedgerUpdate:
    """The changes one commit makes to the ledger, checked before they are written."""

    before: Ledger
    after: dict[int, PartitionLedger] = field(default_factory=dict)
    written: list[OffsetRange] = field(default_factory=list)
    lost: list[OffsetRange] = field(default_factory=list)

    def _current(self, p: int) -> PartitionLedger:
        return self.after.get(p) or self.before.partition(p)

    def add(self, span: OffsetRange, records: int, dead: int = 0) -> None:
        """Newly covered offsets: they must not be handled already (that would duplicate)."""
        current = self._current(span.partition)
        if current.handled.overlaps([(span.start, span.end)]):
            raise LedgerError(
                f"{span} overlaps offsets the table already holds"
                f" ({current.handled}); refusing to land them twice"
            )
        self._set(
            current,
            covered=current.covered.union([(span.start, span.end)]),
            records=current.records + records,
            dead=current.dead + dead,
        )
        self.written.append(span)

    def replace(
        self, span: OffsetRange, records: int, dead: int, old_records: int, old_dead: int
    ) -> None:
        """A window re-read and swapped in: coverage may grow, counts change by the difference.

        The part that was covered before is recorded as rewritten (derived tables re-derive it).
        """
        current = self._current(span.partition)
        if current.lost.overlaps([(span.start, span.end)]):
            raise LedgerError(f"{span} overlaps offsets recorded as lost to retention")
        self._set(
            current,
            covered=current.covered.union([(span.start, span.end)]),
            records=current.records + records - old_records,
            dead=current.dead + dead - old_dead,
            rewritten=self._rewrites(current, current.covered.intersect([(span.start, span.end)])),
        )
        self.written.append(span)

    def move_dead(self, span: OffsetRange, count: int) -> None:
        """`count` dead letters of `span` re-driven into the main table: covered, no longer dead.

        `span` (the re-driven records' first to last offset) is recorded as rewritten.
        """
        current = self._current(span.partition)
        self._set(
            current,
            dead=current.dead - count,
            rewritten=self._rewrites(current, [(span.start, span.end)]),
        )

    def rederive(self, partition: int, records: int, dead: int) -> None:
        """Derived tables: covered offsets derived again; the partition's counts, recounted."""
        self._set(self._current(partition), records=records, dead=dead)

    def caught_up(self, source: PartitionLedger) -> None:
        """Derived tables: every rewrite of the source partition up to its seq is derived again;
        the source's retention losses are this table's too (nothing there to absorb)."""
        current = self._current(source.partition)
        self._set(current, source_seq=source.seq, lost=current.lost.union(source.lost))

    def touch(self, partition: int) -> None:
        """Include `partition` in this commit (its seq goes up) without changing it: a derived
        table's rows mix partitions, so each of its commits fences every partition."""
        self._set(self._current(partition))

    def _rewrites(self, current: PartitionLedger, spans: Iterable[Span]) -> tuple[Rewrite, ...]:
        seq = self._next_seq(current.partition)
        return merge_rewrites([*current.rewritten, *((s, e, seq) for s, e in spans)])

    def mark_lost(self, span: OffsetRange) -> None:
        """Offsets that retention removed before lakeport read them."""
        current = self._current(span.partition)
        if current.handled.overlaps([(span.start, span.end)]):
            raise LedgerError(f"{span} is already handled; cannot mark it lost")
        self._set(current, lost=current.lost.union([(span.start, span.end)]))
        self.lost.append(span)

    def rebase(self, ledger: Ledger) -> None:
        """Move this update onto a newer snapshot, if no commit since touched its partitions.

        Commits to other partitions (another shard, a backfill elsewhere) leave this update
        valid; a commit to one of its partitions means the plan is stale.
        """
        changed = sorted(
            p for p in self.after if ledger.partition(p).seq != self.before.partition(p).seq
        )
        if changed:
            raise ConcurrentChange(
                f"table of topic {self.before.topic!r}: another writer committed to partitions"
                f" {changed} since version {self.before.table_version}"
            )
        self.before = ledger

    def _set(self, current: PartitionLedger, **changes: object) -> None:
        self.after[current.partition] = replace(current, **changes)  # type: ignore[arg-type]

    def __bool__(self) -> bool:
        return bool(self.after)

    def transactions(self) -> list[Transaction]:
        """The `txn` actions of this update: every slot of every touched partition, seq + 1."""
        topic = self.before.topic
        now = int(time.time() * 1000)
        actions: list[Transaction] = []
        count = max(self.before.partition_count, max(self.after, default=-1) + 1)
        if count > self.before.partition_count:
            actions.append(Transaction(_app(topic, "partitions"), count, now))
        for p, new in sorted(self.after.items()):
            old = self.before.partition(p)
            if old.handled.minus(new.handled):
                raise LedgerError(f"partition {p}: handled offsets would shrink")
            if new.records < 0 or new.dead < 0 or new.dead > new.records:
                raise LedgerError(f"partition {p}: impossible counts {new.records}/{new.dead}")
            slots: list[tuple[tuple[object, ...], int]] = [
                (("seq",), self._next_seq(p)),
                (("records",), new.records),
                (("dead",), new.dead),
            ]
            for kind, spans in (("covered", new.covered), ("lost", new.lost)):
                slots.append(((kind,), len(spans)))
                for i, (start, end) in enumerate(spans):
                    slots += [((kind, i, "start"), start), ((kind, i, "end"), end)]
            if new.rewritten or old.rewritten:  # tables never rewritten keep their old layout
                slots.append((("rewritten",), len(new.rewritten)))
                for i, (start, end, seq) in enumerate(new.rewritten):
                    slots += [
                        (("rewritten", i, "start"), start),
                        (("rewritten", i, "end"), end),
                        (("rewritten", i, "seq"), seq),
                    ]
            if new.source_seq or old.source_seq:
                if new.source_seq < old.source_seq:
                    raise LedgerError(f"partition {p}: source seq would go backwards")
                slots.append((("source_seq",), new.source_seq))
            actions += [Transaction(_app(topic, p, *key), value, now) for key, value in slots]
        return actions

    def applied(self, table_version: int | None) -> Ledger:
        """The ledger after this update, as of the commit that wrote it.

        Each touched partition's `seq` is the bumped one `transactions()` wrote: a writer that
        kept the old value would write the same `seq` again on its next commit, and a racing
        writer's rebase would then take that partition for untouched and land it twice.
        """
        after = {p: replace(new, seq=self._next_seq(p)) for p, new in self.after.items()}
        return Ledger(self.before.topic, {**self.before.partitions, **after}, table_version)

    def _next_seq(self, p: int) -> int:
        return self.before.partition(p).seq + 1

    def commit_metadata(
        self, operation: str, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        """What this commit did, readable in `DESCRIBE HISTORY` (the txn slots are the truth).

        delta-rs puts these keys at the top level of `commitInfo`; `userMetadata` is where the
        Delta protocol (and Spark's `DESCRIBE HISTORY`) looks for a commit's human summary.
        """
        return {
            "userMetadata": self.summary(operation),
            "lakeport.operation": operation,
            "lakeport.topic": self.before.topic,
            "lakeport.ranges": _ranges_json(self.written),
            "lakeport.lost": _ranges_json(self.lost),
            "lakeport.ledger": _ledger_json(self.applied(None)),
            "lakeport.version": __version__,
            **(extra or {}),
        }

    def summary(self, operation: str) -> str:
        """One line for people: `lakeport forward of topic 'x': p0[0,500) p1[0,480)`."""
        text = f"lakeport {operation} of topic {self.before.topic!r}"
        if self.written:
            text += ": " + " ".join(str(r) for r in sorted(self.written))
        if self.lost:
            text += "; lost to retention: " + " ".join(str(r) for r in sorted(self.lost))
        moved = {p: part.dead for p, part in self.after.items()}
        if not self.written and not self.lost and moved:
            text += ": dead letters re-driven in partitions " + ", ".join(map(str, sorted(moved)))
        return text


def _ranges_json(ranges: Iterable[OffsetRange]) -> str:
    return json.dumps([[r.partition, r.start, r.end] for r in sorted(ranges)])


SNAPSHOT_LOOK_BACK = 10
"""Commits searched, newest first, for the last one that stored its ledger."""


def _ledger_json(ledger: Ledger) -> str:
    """The `lakeport.ledger` commit metadata: every partition's slots, as compact lists."""
    return json.dumps(
        {
            str(p): [
                x.seq,
                x.records,
                x.dead,
                x.source_seq,
                [list(span) for span in x.covered],
                [list(span) for span in x.lost],
                [list(r) for r in x.rewritten],
            ]
            for p, x in sorted(ledger.partitions.items())
        },
        separators=(",", ":"),
    )


def _remote(table: DeltaTable) -> bool:
    """Whether the table is on object storage, where a look-up costs a GET per commit since the
    checkpoint; on a local disk reading every slot (~30 ms at 10,000 commits) is cheaper than
    finding the newest copy in the log's history (~45 ms)."""
    return "://" in table.table_uri and not table.table_uri.startswith("file://")


_KEEPS_TXN = ("RESTORE", "REPLACE", "CREATE")
"""Operations (of any engine) that may set `txn` actions other than by a lakeport commit."""


def _replayed(table: DeltaTable, topic: str, known: Ledger) -> Ledger | None:
    """The ledger at the table's version from `known` (exact at an older version) and the
    `lakeport.ledger` copies of the commits since, or None when they cannot tell.

    In a commit's copy, the partitions the commit touched carry `seq` + 1 and are exact (a
    commit touching a partition is fenced by its `seq`); the others may be stale and are
    skipped. Commits of other engines are fine unless they may rewrite `txn` actions; a
    lakeport commit without a copy (an older lakeport) means reading the slots.
    """
    start, end = known.table_version, table.version()
    if start is None or end <= start or end - start > SNAPSHOT_LOOK_BACK:
        return None
    entries = sorted(table.history(end - start), key=lambda e: int(e.get("version", -1)))
    if [e.get("version") for e in entries] != list(range(start + 1, end + 1)):
        return None  # the log of those versions is gone (cleaned up)
    partitions = dict(known.partitions)
    for entry in entries:
        text = entry.get("lakeport.ledger")
        if not isinstance(text, str) or entry.get("lakeport.topic") != topic:
            operation = str(entry.get("operation", "")).upper()
            if "lakeport.topic" in entry or any(word in operation for word in _KEEPS_TXN):
                return None  # a lakeport commit without a copy (an older version), a restore
            continue
        for p, new in _parse_ledger(text).items():
            if new.seq == partitions.get(p, PartitionLedger(p)).seq + 1:
                partitions[p] = new
    return Ledger(topic, dict(sorted(partitions.items())), end)


def _committed_snapshot(table: DeltaTable, topic: str) -> Ledger | None:
    """The ledger the newest lakeport commit of `topic` among the last few stored, if any.

    It is only a candidate: `read_ledger` takes a partition from it only where the table's
    `seq` still matches (commits by other engines, restores and racing writers are caught so).
    """
    for entry in table.history(SNAPSHOT_LOOK_BACK):
        text = entry.get("lakeport.ledger")
        if entry.get("lakeport.topic") != topic or not isinstance(text, str):
            continue
        return Ledger(topic, _parse_ledger(text), entry.get("version"))
    return None


def _parse_ledger(text: str) -> dict[int, PartitionLedger]:
    """Inverse of `_ledger_json`."""
    return {
        int(p): PartitionLedger(
            partition=int(p),
            covered=Spans.of((a, b) for a, b in covered),
            lost=Spans.of((a, b) for a, b in lost),
            records=records,
            dead=dead,
            seq=seq,
            rewritten=tuple((a, b, q) for a, b, q in rewritten),
            source_seq=source_seq,
        )
        for p, (seq, records, dead, source_seq, covered, lost, rewritten) in json.loads(
            text
        ).items()
    }


def parse_ranges(text: str) -> list[OffsetRange]:
    """Inverse of the `lakeport.ranges` commit metadata."""
    return [OffsetRange(p, s, e) for p, s, e in json.loads(text)]
