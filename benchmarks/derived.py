"""What a latest-state table costs to keep up: absorbing a micro-batch against recomputing.

    python -m benchmarks.derived --keys 100000 1000000 --batch 50000
    python -m benchmarks.derived --keys 20000 --batch 5000          # a smoke run

For each state size K and each table it builds, in a temporary lakehouse and without Kafka, a
raw `notifications` table through lakeport's own commit path (the stream's JSON decoder, one
`TableWriter` commit per 100k events with its ledger update) holding one event per key, derives
the state table (K rows), appends a micro-batch of `--batch` events, and times:

- **absorb**: `derive` of the micro-batch into the K-row table (MERGE of the batch's best
  row per key, one commit), with delta-rs's MERGE metrics (files scanned, rewritten);
- **recompute**: deriving the same table from scratch into an empty table (every raw row).

Two tables, two update patterns:

- `orders` (key `id`, `cluster_by: created_at`): half the batch places new orders, half fills
  the most recent ones, as a stream of order life cycles does; the MERGE skips files whose
  `created_at` range lies before the batch's, so its cost follows the batch;
- `positions` (key `account_id` + `instrument_uuid`, no stable clustering column): the batch
  updates positions picked uniformly at random, the worst case for copy-on-write: nearly every
  file holds a touched key and is rewritten, so the cost follows the table. Measured so that
  the README can say where the proportional cost ends.

Figures depend on the machine: take them on a quiet one.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from connectors import DerivedTable, OffsetRange, Stream, derive, load_config

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
PARTITIONS = 6
T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
CONFIG = """\
lakehouse:
  root: {root}
connections:
  none:
    bootstrap_servers: 127.0.0.1:1
streams:
  notifications:
    connection: none
    topic: Notifications
    table: notifications
    schema_file: {schemas}/upvest_notification.avsc
    derived:
      orders:
        kind: latest-state
        where: "category = 'ORDER'"
        schema_file: {schemas}/upvest_order.avsc
        key: [id]
        order_by: [updated_at, event_created_at]
        cluster_by: created_at
      positions:
        kind: latest-state
        where: "type = 'POSITION.UPDATED'"
        schema_file: {schemas}/upvest_position.avsc
        key: [account_id, instrument_uuid]
        order_by: [event_created_at]
"""


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _order(i: int, status: str, updated: datetime) -> str:
    created = T0 + timedelta(milliseconds=i)
    return (
        f'{{"id":"order-{i:09d}","created_at":"{_stamp(created)}","updated_at":"{_stamp(updated)}",'
        f'"account_id":"acc-{i % 50_000:06d}","status":"{status}","side":"BUY",'
        f'"order_type":"MARKET","instrument_id":"US0378331005","currency":"EUR",'
        f'"cash_amount":"100.00","quantity":"0.4662","fee":"0","executions":[]}}'
    )


def _position(i: int, quantity: int) -> str:
    return (
        f'{{"account_id":"acc-{i // 25:07d}","instrument":{{"uuid":"inst-{i % 25:02d}",'
        f'"isin":"US0378331005"}},"quantity":"{quantity}","locked_for_trading":"0",'
        f'"pending_settlement":"0","available_for_trading":"{quantity}"}}'
    )


def history(table: str, keys: int) -> Iterator[tuple[str, str, datetime]]:
    """One event per key: (type, object JSON, event time)."""
    for i in range(keys):
        at = T0 + timedelta(milliseconds=i)
        if table == "orders":
            yield "ORDER.NEW", _order(i, "NEW", at), at
        else:
            yield "POSITION.UPDATED", _position(i, 1), at


def batch(
    table: str, keys: int, size: int, rng: random.Random
) -> Iterator[tuple[str, str, datetime]]:
    """The micro-batch: new and recent orders, or positions picked uniformly at random."""
    start = T0 + timedelta(milliseconds=keys + 1000)
    for j in range(size):
        at = start + timedelta(milliseconds=j)
        if table == "orders" and j % 2 == 0:
            yield "ORDER.NEW", _order(keys + j, "NEW", at), at
        elif table == "orders":
            yield "ORDER.FILLED", _order(keys - 1 - j // 2, "FILLED", at), at
        else:
            yield "POSITION.UPDATED", _position(rng.randrange(keys), 2 + j), at


def land(
    stream: Stream, events: Iterator[tuple[str, str, datetime]], next_offset: list[int]
) -> None:
    """Append events to the raw table as ingestion would: decoded, one commit per 100k."""
    writer, decoder = stream.writer(), stream.decoder()
    kafka = stream.schema.arrow.names[:6]
    raw_schema = pa.schema(
        [*(stream.schema.arrow.field(n) for n in kafka), pa.field("value", pa.binary())]
    )
    chunk: list[tuple[str, str, datetime]] = []
    for item in [*events, None]:
        if item is not None:
            chunk.append(item)
            if len(chunk) < 100_000:
                continue
        if not chunk:
            break
        rows: dict[str, list[object]] = {n: [] for n in raw_schema.names}
        spans: dict[int, list[int]] = {}
        for k, (typ, obj, at) in enumerate(chunk):
            p = k % PARTITIONS
            offset = next_offset[p]
            next_offset[p] += 1
            spans.setdefault(p, [offset, offset])[1] = offset + 1
            value = f'{{"id":"ev-{p}-{offset}","created_at":"{_stamp(at)}","type":"{typ}","object":{obj}}}'
            record: tuple[object, ...] = ("Notifications", p, offset, at, None, [], value.encode())
            for name, field in zip(raw_schema.names, record, strict=True):
                rows[name].append(field)
        decoded = decoder.decode(pa.table(rows, schema=raw_schema))
        assert decoded.dead.num_rows == 0, decoded.dead.slice(0, 1).to_pylist()
        update = writer.update()
        ranges = [OffsetRange(p, s, e) for p, (s, e) in sorted(spans.items())]
        for r in ranges:
            update.add(r, len(r))
        writer.commit_batch(update, decoded.rows, decoded.dead, ranges, "forward")
        chunk = []


@dataclass
class Result:
    table: str
    keys: int
    rows: int
    absorb_s: float
    files_before: int
    files_rewritten: int
    recompute_s: float


def run(table: str, keys: int, size: int, root: Path) -> Result:
    path = root / "lakeport.yaml"
    path.write_text(CONFIG.format(root=root / "lakehouse", schemas=SCHEMAS))
    config = load_config(path)
    stream = Stream.from_config(config, "notifications")
    derived = DerivedTable.from_config(config, "notifications", table)
    offsets = [0] * PARTITIONS
    land(stream, history(table, keys), offsets)
    derive(derived)
    files_before = len(derived.table.open().file_uris())

    land(stream, batch(table, keys, size, random.Random(7)), offsets)
    began = time.perf_counter()
    report = derive(derived)
    absorb = time.perf_counter() - began
    rows = derived.table.open().to_pyarrow_dataset().count_rows()

    scratch = dataclasses.replace(  # the same definition, into an empty table
        derived,
        table=dataclasses.replace(derived.table, uri=str(root / "scratch")),
        dead_letters=dataclasses.replace(derived.dead_letters, uri=str(root / "scratch_dead")),
    )
    began = time.perf_counter()
    derive(scratch)
    recompute = time.perf_counter() - began
    assert scratch.table.open().to_pyarrow_dataset().count_rows() == rows
    return Result(table, keys, rows, absorb, files_before, report.files_rewritten, recompute)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--tables", nargs="+", default=["orders", "positions"])
    args = parser.parse_args()
    print(
        f"{'table':<10} {'keys':>9} {'rows after':>10} {'absorb s':>9} {'files rewritten':>16}"
        f" {'recompute s':>12} {'ratio':>6}"
    )
    for table in args.tables:
        for keys in args.keys:
            with tempfile.TemporaryDirectory() as tmp:
                r = run(table, keys, args.batch, Path(tmp))
            print(
                f"{r.table:<10} {r.keys:>9,} {r.rows:>10,} {r.absorb_s:>9.2f}"
                f" {f'{r.files_rewritten} of {r.files_before}':>16} {r.recompute_s:>12.2f}"
                f" {r.recompute_s / r.absorb_s:>5.1f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
