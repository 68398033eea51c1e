"""An independent recomputation of the shipped derived tables, in plain Python.

It reads the raw table, parses each `object` with `json.loads`, and applies the documented
rules by hand: an event table keeps each event id once, at its lowest (partition, offset); a
latest-state table keeps per key the row with the newest ordering value (NULL oldest), then
the highest partition and offset. Nothing here shares code with `connectors.derived`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from deltalake import DeltaTable

from connectors import Stream
from connectors.derived import DerivedTable, audit_derived

_RFC3339 = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z$")
Row = dict[str, Any]


def timestamp(text: str | None) -> datetime | None:
    """RFC 3339 UTC with 0-9 fractional digits, to microseconds (truncated)."""
    if not text:
        return None
    m = _RFC3339.match(text)
    if m is None:
        return None
    *parts, fraction = m.groups()
    micros = int(((fraction or "") + "000000")[:6])
    return datetime(*map(int, parts), micros, tzinfo=UTC)


def newest_first(value: Any) -> tuple[int, Any]:
    """A sort key where NULL is older than any value."""
    return (0, 0) if value is None else (1, value)


@dataclass(frozen=True)
class Oracle:
    """How one shipped derived table is defined, written out by hand."""

    kind: str
    takes: Callable[[Row], bool]
    key: Callable[[Row, dict[str, Any]], tuple[Any, ...]]
    order: Callable[[Row, dict[str, Any]], tuple[Any, ...]]
    column: str
    value: Callable[[dict[str, Any]], Any]
    """A column of the table and the value the winning event's object gives it."""
    required: tuple[str, ...]
    """Object fields the `.avsc` requires: without them the row is a dead letter."""


def _decimal(text: str | None) -> Decimal | None:
    return Decimal(text) if text else None


ORACLES = {
    "orders": Oracle(
        "latest-state",
        lambda r: r["category"] == "ORDER",
        lambda r, o: (o["id"],),
        lambda r, o: (newest_first(timestamp(o.get("updated_at"))), r["created_at"]),
        "status",
        lambda o: o.get("status"),
        ("id", "created_at"),
    ),
    "order_events": Oracle(
        "events",
        lambda r: r["category"] == "ORDER",
        lambda r, o: (r["id"],),
        lambda r, o: (),
        "status",
        lambda o: o.get("status"),
        ("id", "created_at"),
    ),
    "positions": Oracle(
        "latest-state",
        lambda r: r["type"] == "POSITION.UPDATED",
        lambda r, o: (o["account_id"], o["instrument"]["uuid"]),
        lambda r, o: (r["created_at"],),
        "quantity",
        lambda o: _decimal(o.get("quantity")),
        ("account_id",),
    ),
    "cash_balances": Oracle(
        "latest-state",
        lambda r: r["type"] == "CASH_BALANCE.UPDATED",
        lambda r, o: (o["account_group_id"], o["currency"]),
        lambda r, o: (r["created_at"],),
        "balance",
        lambda o: _decimal(o.get("balance")),
        ("account_group_id", "currency"),
    ),
}

ACTUAL_KEY = {
    "orders": ["id"],
    "order_events": ["event_id"],
    "positions": ["account_id", "instrument_uuid"],
    "cash_balances": ["account_group_id", "currency"],
}


def raw_rows(stream: Stream) -> list[Row]:
    table = stream.table.open_existing()
    if table is None:
        return []
    columns = ["kafka_partition", "kafka_offset", "id", "type", "category", "created_at", "object"]
    return table.to_pyarrow_table(columns=columns).to_pylist()


def expected(name: str, rows: list[Row]) -> dict[tuple[Any, ...], tuple[int, int, Any]]:
    """Per key: the winning raw row's (partition, offset) and the oracle's column value."""
    oracle = ORACLES[name]
    best: dict[tuple[Any, ...], tuple[tuple[Any, ...], Row, dict[str, Any]]] = {}
    for row in rows:
        if not oracle.takes(row):
            continue
        obj = json.loads(row["object"])
        if not all(obj.get(f) is not None for f in oracle.required):
            continue  # a dead letter of the derived table
        key = oracle.key(row, obj)
        position = (row["kafka_partition"], row["kafka_offset"])
        if oracle.kind == "events":  # the first copy wins: the lowest position
            rank: tuple[Any, ...] = tuple(-x for x in position)
        else:
            rank = (*oracle.order(row, obj), *position)
        if key not in best or rank > best[key][0]:
            best[key] = (rank, row, obj)
    return {
        key: (row["kafka_partition"], row["kafka_offset"], oracle.value(obj))
        for key, (_, row, obj) in best.items()
    }


def actual(name: str, derived: DerivedTable) -> dict[tuple[Any, ...], tuple[int, int, Any]]:
    table = DeltaTable(derived.table.uri).to_pyarrow_table().to_pylist()
    found = {
        tuple(r[k] for k in ACTUAL_KEY[name]): (
            r["kafka_partition"],
            r["kafka_offset"],
            r[ORACLES[name].column],
        )
        for r in table
    }
    assert len(found) == len(table), f"{name}: a key holds more than one row"
    return found


def assert_equal_to_recomputation(stream: Stream, tables: list[DerivedTable]) -> None:
    """Every derived table equals the hand-written recomputation, and its audit passes."""
    rows = raw_rows(stream)
    for derived in tables:
        want, got = expected(derived.name, rows), actual(derived.name, derived)
        missing = sorted(set(want) - set(got))[:3]
        extra = sorted(set(got) - set(want))[:3]
        wrong = [(k, got[k], want[k]) for k in sorted(set(want) & set(got)) if got[k] != want[k]]
        assert not (missing or extra or wrong), (
            f"{derived.name}: missing {missing}, extra {extra}, different {wrong[:3]}"
            f" ({len(wrong)} in all)"
        )
        result = audit_derived(derived)
        assert result.ok, (derived.name, result.problems)
        assert not result.pending, (derived.name, result.pending)
