"""Deterministic, realistic sample Upvest Kafka records, and a producer to load them.

Why this exists: lakeport's connectors, pipelines and benchmarks need Upvest-shaped streams
(order life cycles over many users, 6 partitions, the documented awkward cases) without
access to Upvest.  Everything is derived from ``random.Random(seed)``, so the same seed gives
the same bytes on every machine, and the hot path is plain string templates so that millions
of events can be generated for benchmarks (stdlib only).

Design notes:
- Notification values follow /work/shared/upvest-events.md: envelope ``id, created_at,
  type, object, webhook_id``; compact JSON, raw UTF-8 (no ``\\u`` escapes); decimals as strings.
- Keys are the user id (UTF-8 bytes): one user's events share a partition and stay in order.
  With ``keys="event"`` each record is keyed by its event id instead, so one order's life
  cycle is shuffled across partitions (what tenant- or entity-keyed topics look like to a
  consumer that needs per-order state).
- Awkward cases come from a second RNG, so the clean events of a stream are the same
  whatever ``Awkward`` says: awkward records are inserted between them (duplicates, unknown
  types, not JSON, not UTF-8) or replace them with a mutated copy (the other kinds).
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from itertools import islice
from random import Random
from typing import Any, Literal

from connectors import LakeportError, rdkafka_logger

__all__ = [
    "Awkward",
    "ProduceReport",
    "SampleRecord",
    "notification_events",
    "price_events",
    "produce_sample",
]

DEFAULT_START = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC)
"""Fixed default start so that output never depends on the wall clock."""

KINDS = (
    "ok",
    "duplicate",
    "unknown_type",
    "unknown_fields",
    "missing_optional",
    "empty_decimals",
    "long_decimals",
    "not_json",
    "not_utf8",
    "late",
)
"""Every ``SampleRecord.kind`` value; ``ok`` is a clean event."""


@dataclass(frozen=True)
class Awkward:
    """Which awkward cases to mix in; rates are fractions of events (their sum must be <= 1)."""

    duplicates: float = 0.0
    """The same event (same id, same bytes, same key) produced again at a later offset."""
    unknown_types: float = 0.0
    """Event types lakeport has never seen, e.g. ``SPACESHIP.LAUNCHED`` or ``ORDER.REROUTED``."""
    unknown_fields: float = 0.0
    """Extra top-level and object fields, as additive API releases bring them."""
    missing_optional: float = 0.0
    """``webhook_id`` absent; optional object fields absent or null."""
    empty_decimals: float = 0.0
    """``""`` for unset optional decimals (``limit_price``, ``stop_price``, ``fee``...)."""
    long_decimals: float = 0.0
    """Decimals with up to 27 fractional digits, e.g. ``-2.523454387912345678901234567``."""
    not_json: float = 0.0
    """Value bytes that are not JSON (truncated events, HTML error pages, Avro framing)."""
    not_utf8: float = 0.0
    """Value bytes that are not valid UTF-8 (latin-1 / cp1252 / UTF-16 encoded JSON)."""
    late: float = 0.0
    """A clean event held back and produced up to 400 records later, after newer events about
    the same order, position or balance (e.g. ``ORDER.PROCESSING`` after ``ORDER.FILLED``)."""

    def __post_init__(self) -> None:
        """Reject rates that cannot be fractions, so a typo fails loudly instead of silently."""
        for f in fields(self):
            rate = getattr(self, f.name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"Awkward.{f.name} must be within [0, 1], got {rate!r}")
        if self.total > 1.0:
            raise ValueError(f"Awkward rates add up to {self.total}, more than 1")

    @classmethod
    def all(cls, rate: float = 0.01) -> Awkward:
        """Every awkward case at ``rate``: the usual way to build a hostile test stream."""
        return cls(**{f.name: rate for f in fields(cls)})

    @property
    def total(self) -> float:
        """Sum of all rates: the fraction of records that are not clean."""
        return float(sum(getattr(self, f.name) for f in fields(self)))


Awkward.NONE = Awkward()  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SampleRecord:
    """One Kafka record to produce; ``kind`` says which case it is, for tests only."""

    key: bytes | None
    value: bytes
    timestamp_ms: int
    kind: str


_new = object.__new__
_set = object.__setattr__


def _record(key: bytes | None, value: bytes, timestamp_ms: int, kind: str) -> SampleRecord:
    """Build a ``SampleRecord`` twice as fast as its frozen ``__init__`` (hot path).

    Equal to ``SampleRecord(key, value, timestamp_ms, kind)``; a test checks that.
    """
    rec = _new(SampleRecord)
    _set(rec, "__dict__", {"key": key, "value": value, "timestamp_ms": timestamp_ms, "kind": kind})
    return rec


@dataclass(frozen=True)
class ProduceReport:
    """What ``produce_sample`` delivered, counted from delivery reports (not from produce calls)."""

    topic: str
    records: int
    bytes: int
    per_partition: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------
# Static reference data (fixed, independent of the seed)

# (ISIN, name, price in EUR cents) -- real ISINs with valid check digits.
_INSTRUMENTS_RAW: tuple[tuple[str, int], ...] = (
    ("US0378331005", 21450),  # Apple
    ("US5949181045", 39820),  # Microsoft
    ("US0231351067", 17520),  # Amazon
    ("US02079K3059", 16140),  # Alphabet A
    ("US88160R1014", 23010),  # Tesla
    ("US67066G1040", 12785),  # NVIDIA
    ("US30303M1027", 52240),  # Meta
    ("US4781601046", 14890),  # Johnson & Johnson
    ("DE0007164600", 23655),  # SAP
    ("DE0007236101", 18402),  # Siemens
    ("DE0008404005", 27830),  # Allianz
    ("DE0005557508", 2895),  # Deutsche Telekom
    ("DE0007100000", 5812),  # Mercedes-Benz
    ("DE0005190003", 7744),  # BMW
    ("DE0008430026", 46920),  # Munich Re
    ("DE000BASF111", 4521),  # BASF
    ("DE000BAY0017", 2234),  # Bayer
    ("NL0010273215", 66780),  # ASML
    ("FR0000121014", 63550),  # LVMH
    ("FR0000120271", 5466),  # TotalEnergies
    ("CH0038863350", 8412),  # Nestle
    ("DK0062498333", 9120),  # Novo Nordisk B
    ("IE00B4L5Y983", 9874),  # iShares Core MSCI World
    ("IE00BK5BQT80", 12366),  # Vanguard FTSE All-World Acc
    ("IE00B5BMR087", 55210),  # iShares Core S&P 500
)

_FIRST_NAMES = (
    "Anna", "Lukas", "Sophie", "Jonas", "Marie", "Leon", "Émilie", "José", "Zoë", "Mateusz",
    "Søren", "Ayşe", "Björn", "Chloé", "Giulia", "Noah", "Lea", "Finn", "Ines", "Tomáš",
)  # fmt: skip
_LAST_NAMES = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
    "García", "Rossi", "Dubois", "Kowalski", "Jensen", "Yilmaz", "Novák", "O'Brien",
    "Hoffmann", "Schäfer", "Koch", "Richter",
)  # fmt: skip
_CITIES = (
    ("Berlin", "10115"), ("München", "80331"), ("Hamburg", "20095"), ("Köln", "50667"),
    ("Frankfurt am Main", "60311"), ("Düsseldorf", "40213"), ("Leipzig", "04109"),
)  # fmt: skip
_STREETS = ("Hauptstraße", "Schillerstraße", "Gartenweg", "Bahnhofstraße", "Lindenallee")

_PRECISIONS = (0, 2, 3, 6, 9)
_NOMINAL_EUR = (25, 50, 100, 100, 250, 500, 1000)  # savings-plan style cash amounts
_SECONDS = tuple(f"{s:02d}" for s in range(60))
_WEEKDAY_SETTLE = (2, 2, 2, 4, 4, 3, 2)  # calendar days to T+2 business days, Mon..Sun


_UUID_MASK = 0xFFFFFFFFFFFF0FFF3FFFFFFFFFFFFFFF  # clear version and variant bits
_UUID_V4 = 0x00000000000040008000000000000000  # version 4, RFC 4122 variant


def _uuid4(rng: Random) -> str:
    """Same string as ``str(uuid.UUID(int=rng.getrandbits(128), version=4))``, 3x faster."""
    h = f"{(rng.getrandbits(128) & _UUID_MASK) | _UUID_V4:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _cents(c: int) -> str:
    """Integer cents to a two-digit decimal string (sign kept)."""
    if c < 0:
        return "-" + _cents(-c)
    return f"{c // 100}.{c % 100:02d}"


def _micro(q: int, digits: int = 6) -> str:
    """Integer millionths to a decimal string, trailing zeros stripped as Upvest does."""
    whole, frac = divmod(q, 10**digits)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


class _Clock:
    """Monotonic nanosecond clock formatting RFC 3339 with Upvest's mixed fractional digits."""

    __slots__ = ("_date", "_day", "_minute", "_prefix", "_settle", "ns")

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        delta = start - datetime(1970, 1, 1, tzinfo=UTC)
        self.ns = (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
        self._minute = -1
        self._prefix = ""
        self._day = -1
        self._date = ""
        self._settle = ""

    @property
    def ms(self) -> int:
        return self.ns // 1_000_000

    def stamp(self, precision: int, ns: int | None = None) -> str:
        """RFC 3339 UTC with 0, 2, 3, 6 or 9 fractional digits, always ``Z``."""
        sec, frac = divmod(self.ns if ns is None else ns, 1_000_000_000)
        minute, second = divmod(sec, 60)
        if minute != self._minute:  # strftime only once a minute: it is the slow part
            self._minute = minute
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:", time.gmtime(minute * 60))
        base = self._prefix + _SECONDS[second]
        if precision == 3:
            return f"{base}.{frac // 1_000_000:03d}Z"
        if precision == 6:
            return f"{base}.{frac // 1000:06d}Z"
        if precision == 9:
            return f"{base}.{frac:09d}Z"
        if precision == 0:
            return base + "Z"
        return f"{base}.{frac // 10_000_000:02d}Z"

    def _roll_day(self) -> None:
        day = self.ns // 86_400_000_000_000
        if day != self._day:
            self._day = day
            d = datetime(1970, 1, 1) + timedelta(days=day)
            self._date = d.strftime("%Y-%m-%d")
            self._settle = (d + timedelta(days=_WEEKDAY_SETTLE[d.weekday()])).strftime("%Y-%m-%d")

    def date(self) -> str:
        """Today's date ``YYYY-MM-DD`` (booking date)."""
        self._roll_day()
        return self._date

    def settle_date(self) -> str:
        """T+2 business days (weekends skipped, holidays ignored)."""
        self._roll_day()
        return self._settle


class _User:
    __slots__ = (
        "account_group_id",
        "account_id",
        "account_number",
        "birth",
        "cash",
        "city",
        "first",
        "id",
        "key",
        "last",
        "number",
        "phone",
        "positions",
        "street",
    )  # fmt: skip

    def __init__(self, rng: Random, account_number: int) -> None:
        self.id = _uuid4(rng)
        self.key = self.id.encode()
        self.account_group_id = _uuid4(rng)
        self.account_id = _uuid4(rng)
        self.account_number = account_number
        self.cash = rng.randrange(50_000, 2_500_000)  # cents
        self.positions: dict[int, int] = {}  # instrument index -> millionths of a share
        self.first = rng.choice(_FIRST_NAMES)
        self.last = rng.choice(_LAST_NAMES)
        self.city = rng.choice(_CITIES)
        year, month, day = rng.randrange(1945, 2006), rng.randrange(1, 13), rng.randrange(1, 29)
        self.birth = f"{year}-{month:02d}-{day:02d}"
        self.street = rng.choice(_STREETS)
        self.number = rng.randrange(1, 180)
        self.phone = f"+49{rng.randrange(150, 180)}{rng.randrange(1_000_000, 9_999_999)}"


# A flow yields (type, key, object-json) triples one at a time; its code runs lazily, at
# emission time, so balances and positions reflect all events emitted before.
_Event = tuple[str, bytes, str]
_Flow = Iterator[_Event]


class _NotificationGenerator:
    """Interleaves many concurrent per-user flows into one stream of clean events."""

    CONCURRENT_FLOWS = 64
    INITIAL_USERS = 3000

    def __init__(self, seed: int, start: datetime, key_by_event: bool = False) -> None:
        self.key_by_event = key_by_event
        self.rng = Random(seed)
        rng = self.rng
        self.clock = _Clock(start)
        self.webhook_id = _uuid4(rng)
        self.next_account_number = 100_000_000 + rng.randrange(1_000_000)
        self.users = [self._new_user() for _ in range(self.INITIAL_USERS)]
        inst_rng = Random(0x15177)  # instruments are fixed reference data, not seed-dependent
        self.instruments = [(isin, _uuid4(inst_rng), price) for isin, price in _INSTRUMENTS_RAW]
        self.now = self.clock.stamp(0)
        self.flows: list[_Flow] = [self._new_flow() for _ in range(self.CONCURRENT_FLOWS)]

    def _new_user(self) -> _User:
        self.next_account_number += 1
        return _User(self.rng, self.next_account_number)

    def _new_flow(self) -> _Flow:
        r = self.rng.random()
        if r < 0.88:
            return self._order_flow(self.rng.choice(self.users))
        if r < 0.94:
            return self._cancel_flow(self.rng.choice(self.users))
        if r < 0.97:
            return self._onboarding_flow()
        if r < 0.985:
            return self._user_changed_flow(self.rng.choice(self.users))
        return self._account_updated_flow(self.rng.choice(self.users))

    def records(self) -> Iterator[SampleRecord]:
        """Yield clean events forever, as ``kind="ok"`` records."""
        rng = self.rng
        random = rng.random
        clock = self.clock
        flows = self.flows
        n_flows = len(flows)
        webhook = self.webhook_id
        stamp = clock.stamp
        precisions = _PRECISIONS
        record = _record
        getrandbits = rng.getrandbits
        mask, v4 = _UUID_MASK, _UUID_V4
        by_event = self.key_by_event
        while True:
            # gaps of a few ms to a few seconds, mostly short (cubed uniform)
            u = random()
            clock.ns += int(u * u * u * 2_500_000_000 + u * 999_999) + 1_000_000
            self.now = created = stamp(precisions[int(random() * 5)])
            i = int(random() * n_flows)
            try:
                typ, key, obj = next(flows[i])
            except StopIteration:
                flows[i] = self._new_flow()
                typ, key, obj = next(flows[i])
            h = f"{(getrandbits(128) & mask) | v4:032x}"  # inlined _uuid4
            eid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
            yield record(
                eid.encode() if by_event else key,
                f'{{"id":"{eid}","created_at":"{created}","type":"{typ}",'
                f'"object":{obj},"webhook_id":"{webhook}"}}'.encode(),
                clock.ns // 1_000_000,
                "ok",
            )

    # ---- flows ------------------------------------------------------------------------------

    def _order_renderer(
        self,
        user: _User,
        oid: str,
        created: str,
        side: str,
        cash: str,
        isin: str,
        order_type: str,
        qty: str,
        limit: str,
        stop: str,
        ref: str,
        flow: str,
    ) -> Callable[..., str]:
        """Pre-build the constant parts of one order so each event only fills status/time."""
        head = f'{{"id":"{oid}","created_at":"{created}","updated_at":"'
        mid = (
            f'","user_id":"{user.id}","account_id":"{user.account_id}","cash_amount":"{cash}",'
            f'"currency":"EUR","side":"{side}","instrument_id":"{isin}","instrument_id_type":"ISIN",'
            f'"order_type":"{order_type}","quantity":"{qty}","limit_price":{limit},'
            f'"stop_price":{stop},"status":"'
        )
        tail = (
            f'],"client_reference":"{ref}","initiation_flow":"DIRECT","execution_flow":"{flow}"}}'
        )

        def render(status: str, executions: str = "") -> str:
            # updated_at: the object changed when the event was created
            return f'{head}{self.now}{mid}{status}","fee":"0","executions":[{executions}{tail}'

        return render

    def _order_flow(self, user: _User) -> _Flow:
        rng = self.rng
        clock = self.clock
        key = user.key
        idx = int(rng.random() * len(self.instruments))
        isin, inst_uuid, base = self.instruments[idx]
        held = user.positions.get(idx, 0)
        side = "SELL" if held and rng.random() < 0.3 else "BUY"
        price = base + int((rng.random() - 0.5) * base * 0.1)  # cents, +-5 %
        order_type = "MARKET"
        limit = stop = "null"
        cash_c = 0
        if side == "SELL":
            qty_m = held if rng.random() < 0.4 else max(1, int(held * (0.1 + 0.8 * rng.random())))
        elif rng.random() < 0.75:  # nominal order: cash amount, fractional quantity
            cash_c = _NOMINAL_EUR[int(rng.random() * len(_NOMINAL_EUR))] * 100
            qty_m = cash_c * 1_000_000 // price
        else:  # unit order: whole shares, possibly LIMIT or STOP
            qty_m = (1 + int(rng.random() * 24)) * 1_000_000
            t = rng.random()
            if t < 0.25:
                order_type, limit = "LIMIT", f'"{_cents(price + price // 100)}"'
            elif t < 0.35:
                order_type, stop = "STOP", f'"{_cents(price - price // 50)}"'
        qty_m = max(qty_m, 1)
        cash_c = cash_c or qty_m * price // 1_000_000
        qty = _micro(qty_m)
        cash = _cents(cash_c)
        oid = _uuid4(rng)
        eid = _uuid4(rng)
        ref = f"app-{rng.getrandbits(40):010x}"
        flow = "STRAIGHT_THROUGH" if rng.random() < 0.9 else "BLOCK"
        created = clock.stamp(3)

        order = self._order_renderer(
            user, oid, created, side, cash, isin, order_type, qty, limit, stop, ref, flow
        )

        yield "ORDER.NEW", key, order("NEW")
        yield "ORDER.PROCESSING", key, order("PROCESSING")

        tx_time = clock.stamp(9)
        tax_c = 0 if side == "BUY" else int(rng.random() * cash_c / 40)
        taxes = (
            "" if side == "BUY" else f'{{"amount":"{_cents(tax_c)}","type":"CAPITAL_GAINS_TAX"}}'
        )

        def execution(status: str, settled: str = "") -> str:
            return (
                f'{{"id":"{eid}","order_id":"{oid}","side":"{side}","status":"{status}",'
                f'"cash_amount":"{cash}","currency":"EUR","price":"{_cents(price)}",'
                f'"share_quantity":"{qty}","taxes":[{taxes}],"transaction_time":"{tx_time}"{settled}}}'
            )

        filled_exec = execution("FILLED")
        yield "EXECUTION.FILLED", key, filled_exec
        yield "ORDER.FILLED", key, order("FILLED", f'{{"id":"{eid}","status":"FILLED"}}')

        # position: full state after the change
        if side == "BUY":
            user.positions[idx] = held = user.positions.get(idx, 0) + qty_m
        else:
            user.positions[idx] = held = max(0, user.positions.get(idx, 0) - qty_m)
        pending = _micro(qty_m)
        yield (
            "POSITION.UPDATED",
            key,
            (
                f'{{"account_id":"{user.account_id}","instrument":{{"uuid":"{inst_uuid}",'
                f'"isin":"{isin}"}},"quantity":"{_micro(held)}","locked_for_trading":"0",'
                f'"pending_settlement":"{pending}","available_for_trading":"{_micro(held)}"}}'
            ),
        )

        delta_c = -cash_c if side == "BUY" else cash_c - tax_c
        user.cash += delta_c
        bal = _cents(user.cash)
        yield (
            "CASH_BALANCE.UPDATED",
            key,
            (
                f'{{"account_group_id":"{user.account_group_id}","currency":"EUR","balance":"{bal}",'
                f'"locked_for_trading":"0.00","pending_settlement":"{_cents(delta_c)}",'
                f'"available_for_withdrawal":"{bal}","available_for_trading":"{bal}"}}'
            ),
        )

        yield (
            "CASH_TRANSACTION.EXECUTED",
            key,
            (
                f'{{"id":"{_uuid4(rng)}","account_group_id":"{user.account_group_id}",'
                f'"account_id":"{user.account_id}","type":"ORDER_EXECUTION","delta":{{"amount":'
                f'"{_cents(delta_c)}","currency":"EUR"}},"booking_date":"{clock.date()}",'
                f'"value_date":"{clock.settle_date()}","instrument":{{"uuid":"{inst_uuid}",'
                f'"isin":"{isin}"}},"references":[{{"id":"{oid}","type":"ORDER"}}],"taxes":[]}}'
            ),
        )

        yield (
            "EXECUTION.SETTLED",
            key,
            execution("SETTLED", f',"settlement_date":"{clock.settle_date()}"'),
        )

    def _cancel_flow(self, user: _User) -> _Flow:
        rng = self.rng
        idx = int(rng.random() * len(self.instruments))
        isin, _, base = self.instruments[idx]
        qty_m = rng.randrange(1, 40) * 1_000_000
        limit_c = base - base // rng.randrange(8, 30)
        cash = _cents(qty_m * limit_c // 1_000_000)
        oid = _uuid4(rng)
        ref = f"app-{rng.getrandbits(40):010x}"
        created = self.clock.stamp(3)
        order = self._order_renderer(
            user, oid, created, "BUY", cash, isin, "LIMIT", _micro(qty_m),
            f'"{_cents(limit_c)}"', "null", ref, "STRAIGHT_THROUGH",
        )  # fmt: skip
        yield "ORDER.NEW", user.key, order("NEW")
        yield "ORDER.PROCESSING", user.key, order("PROCESSING")
        yield "ORDER.CANCELLED", user.key, order("CANCELLED")

    def _user_obj(self, user: _User, created: str, status: str) -> str:
        city, postcode = user.city
        email = f"{user.first}.{user.last}".lower().replace("'", "")
        obj = {
            "id": user.id,
            "created_at": created,
            "updated_at": self.now,
            "first_name": user.first,
            "last_name": user.last,
            "salutation": "SALUTATION_FEMALE" if user.number % 2 else "SALUTATION_MALE",
            "birth_date": user.birth,
            "birth_city": city,
            "birth_country": "DE",
            "nationalities": ["DE"],
            "address": {
                "address_line1": f"{user.street} {user.number}",
                "address_line2": None,
                "postcode": postcode,
                "city": city,
                "country": "DE",
            },
            "email": f"{email}{user.number}@example.com",
            "phone_number": user.phone,
            "status": status,
        }
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))

    def _account_obj(self, user: _User, created: str, status: str, name: str) -> str:
        updated = self.now
        return (
            f'{{"id":"{user.account_id}","created_at":"{created}","updated_at":"{updated}",'
            f'"account_group_id":"{user.account_group_id}","type":"TRADING",'
            f'"users":[{{"id":"{user.id}","type":"OWNER"}}],'
            f'"account_number":{user.account_number},"name":"{name}","status":"{status}"}}'
        )

    def _onboarding_flow(self) -> _Flow:
        user = self._new_user()
        created = self.clock.stamp(6)
        yield "USER.CREATED", user.key, self._user_obj(user, created, "PENDING")
        yield "USER.ACTIVATED", user.key, self._user_obj(user, created, "ACTIVE")
        self.users.append(user)  # from now on it can trade
        acc_created = self.clock.stamp(6)
        yield "ACCOUNT.CREATED", user.key, self._account_obj(user, acc_created, "PENDING", "Depot")
        yield "ACCOUNT.ACTIVATED", user.key, self._account_obj(user, acc_created, "ACTIVE", "Depot")

    def _user_changed_flow(self, user: _User) -> _Flow:
        user.city = self.rng.choice(_CITIES)
        user.number = self.rng.randrange(1, 180)
        yield "USER.DATA_CHANGED", user.key, self._user_obj(user, "2025-11-03T09:12:44Z", "ACTIVE")

    def _account_updated_flow(self, user: _User) -> _Flow:
        name = self.rng.choice(("Depot", "Sparplan", "Altersvorsorge", "Kinderdepot"))
        yield (
            "ACCOUNT.UPDATED",
            user.key,
            self._account_obj(user, "2025-11-03T09:15:02.118Z", "ACTIVE", name),
        )


# --------------------------------------------------------------------------------------------
# Awkward cases


def _lengthen(value: str, rng: Random) -> str:
    """A decimal string with 20-27 fractional digits (sign and integer part kept)."""
    if not value:
        return value
    whole, _, frac = value.partition(".")
    extra = f"{rng.getrandbits(89) % 10**27:027d}"
    digits = (frac + extra)[: rng.randrange(20, 28)]
    return f"{whole}.{digits}"


_DECIMAL_KEYS = frozenset({
    "cash_amount", "quantity", "price", "share_quantity", "amount", "balance",
    "locked_for_trading", "pending_settlement", "available_for_trading",
    "available_for_withdrawal", "limit_price", "stop_price", "fee",
})  # fmt: skip
_OPTIONAL_KEYS = (
    "client_reference", "limit_price", "stop_price", "fee", "taxes", "executions",
    "locked_for_trading", "settlement_date", "instrument", "references", "phone_number",
    "address_line2", "name", "updated_at",
)  # fmt: skip


def _walk_decimals(node: Any, fn: Callable[[str], str]) -> None:
    """Apply ``fn`` to every decimal-string field in a parsed object, in place."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in _DECIMAL_KEYS and isinstance(v, str):
                node[k] = fn(v)
            elif isinstance(v, dict | list):
                _walk_decimals(v, fn)
    elif isinstance(node, list):
        for v in node:
            _walk_decimals(v, fn)


def _dumps(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _mutate(kind: str, text: bytes, rng: Random) -> str | None:
    """Apply one mutating awkward case to a clean event (rare, so parsing is affordable).

    Returns None when the case does not apply (no decimals to empty or lengthen).
    """
    doc = json.loads(text)
    obj = doc["object"]
    if kind == "unknown_fields":
        doc["trace_context"] = {"span_id": f"{rng.getrandbits(64):016x}", "sampled": True}
        obj[rng.choice(("risk_score", "tax_wrapper_id", "venue", "x_flags"))] = rng.choice(
            ("0.87", _uuid4(rng), "XETR", ["EARLY_ACCESS"], None, {"level": 3})
        )
        obj["metadata"] = {"schema_revision": rng.randrange(2, 40)}
    elif kind == "missing_optional":
        del doc["webhook_id"]
        for k in _OPTIONAL_KEYS:
            if k in obj and rng.random() < 0.5:
                if rng.random() < 0.5:
                    del obj[k]
                else:
                    obj[k] = None
    elif kind == "empty_decimals":
        for k in ("limit_price", "stop_price", "fee", "locked_for_trading"):
            if k in obj and obj[k] in (None, "0", "0.00"):
                obj[k] = ""
        if obj.get("taxes"):
            obj["taxes"][0]["amount"] = ""
        if "" not in obj.values() and not obj.get("taxes"):
            return None
    elif kind == "long_decimals":
        before = len(text)
        _walk_decimals(obj, lambda v: _lengthen(v, rng))
        out = _dumps(doc)
        return out if len(out) > before else None
    else:  # pragma: no cover - programming error
        raise AssertionError(kind)
    return _dumps(doc)


_UNKNOWN_TYPES = (
    "SPACESHIP.LAUNCHED",
    "CRYPTO_WALLET.CREATED",
    "ORDER.REROUTED",
    "SAVINGS_PLAN.EXECUTED",
    "POSITION.RECONCILED",
)


def _unknown_type_event(rng: Random, clock: _Clock, webhook: str) -> str:
    """An event of a type nobody told lakeport about, with a made-up object."""
    typ = rng.choice(_UNKNOWN_TYPES)
    obj: dict[str, object] = {
        "id": _uuid4(rng),
        "created_at": clock.stamp(3),
        "status": rng.choice(("NEW", "IN_ORBIT", "ACTIVE", "PENDING_REVIEW")),
        "payload": {"thrust": f"{rng.randrange(1, 10**6)}.{rng.randrange(100):02d}",
                    "crew": [rng.choice(_FIRST_NAMES) for _ in range(rng.randrange(0, 4))]},
        "tags": [],
    }  # fmt: skip
    doc = {"id": _uuid4(rng), "created_at": clock.stamp(9), "type": typ, "object": obj,
           "webhook_id": webhook}  # fmt: skip
    return _dumps(doc)


def _not_json(rng: Random, recent: list[SampleRecord]) -> bytes:
    """Bytes a broken or foreign producer might write: never parseable as JSON."""
    choice = rng.randrange(5)
    if choice == 0 and recent:
        src = recent[int(rng.random() * len(recent))].value
        return src[: rng.randrange(1, len(src) - 1)]  # truncated event
    if choice == 1:
        return (
            b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
            b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
        )
    if choice == 2:  # Confluent wire format: magic byte, schema id, Avro body
        return b"\x00" + rng.getrandbits(32).to_bytes(4, "big") + b"\x02H" + _uuid4(rng).encode()
    if choice == 3:
        return b'{"id": "' + _uuid4(rng).encode() + b'", "type": ORDER.NEW, }'
    return b""


def _not_utf8(rng: Random, clock: _Clock, webhook: str) -> bytes:
    """A plausible event in a legacy encoding: valid JSON text, invalid UTF-8 bytes."""
    first = rng.choice(("Jürgen", "Zoë", "Émilie", "Søren", "Chloé"))
    last = rng.choice(("Müller", "Schäfer", "Dubois-Lefèvre", "Ørsted"))
    doc = {"id": _uuid4(rng), "created_at": clock.stamp(3), "type": "USER.DATA_CHANGED",
           "object": {"id": _uuid4(rng), "first_name": first, "last_name": last,
                      "status": "ACTIVE", "note": "Gebühr 1,50 €"},
           "webhook_id": webhook}  # fmt: skip
    text = _dumps(doc)
    choice = rng.randrange(3)
    if choice == 0:
        return text.replace("€", "EUR").encode("latin-1")
    if choice == 1:
        return text.encode("cp1252")
    return text.encode("utf-16")  # starts with the BOM b"\xff\xfe"


# --------------------------------------------------------------------------------------------
# Public generators


def notification_events(
    count: int,
    *,
    seed: int = 7,
    awkward: Awkward = Awkward(),  # frozen, so a shared default is safe
    start: datetime | None = None,
    keys: Literal["user", "event"] = "user",
) -> Iterator[SampleRecord]:
    """Yield ``count`` Upvest Notifications records: same seed, same bytes.

    Clean events are order life cycles (NEW, PROCESSING, EXECUTION.FILLED, ORDER.FILLED,
    POSITION.UPDATED, CASH_BALANCE.UPDATED, CASH_TRANSACTION.EXECUTED, EXECUTION.SETTLED)
    plus cancelled orders, onboarding (USER.*, ACCOUNT.*) and data changes, interleaved over
    a few thousand users and keyed by user id (``keys="event"``: by event id, which shuffles
    a life cycle across partitions).  ``awkward`` mixes in the hostile cases.
    ``start`` (naive means UTC) is the time of the stream's beginning.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    gen = _NotificationGenerator(seed, start or DEFAULT_START, key_by_event=keys == "event")
    clean = gen.records()
    if awkward.total == 0.0:
        yield from islice(clean, count)
        return

    arng = Random(f"awkward:{seed}")
    arandom = arng.random
    bands: list[tuple[float, str]] = []
    acc = 0.0
    for kind, rate in (
        ("duplicate", awkward.duplicates),
        ("unknown_type", awkward.unknown_types),
        ("not_json", awkward.not_json),
        ("not_utf8", awkward.not_utf8),
        ("unknown_fields", awkward.unknown_fields),
        ("missing_optional", awkward.missing_optional),
        ("empty_decimals", awkward.empty_decimals),
        ("long_decimals", awkward.long_decimals),
        ("late", awkward.late),
    ):
        if rate > 0:
            acc += rate
            bands.append((acc, kind))
    limit = acc
    ring = 512  # recent records: the source of duplicates and truncated values
    recent: list[SampleRecord] = []
    pending: list[str] = []  # mutations waiting for an event they apply to
    seen = 0
    last_ts = gen.clock.ms
    clock = gen.clock
    webhook = gen.webhook_id
    users = gen.users
    make = _record
    held: list[tuple[int, int, SampleRecord]] = []  # late events: (due index, order, record)

    def some_key(null_share: float = 0.0) -> bytes | None:
        if null_share and arandom() < null_share:
            return None
        return users[int(arandom() * len(users))].key

    for i in range(count):
        if held and (held[0][0] <= i or len(held) >= count - i):  # due, or the stream ends
            late = heapq.heappop(held)[2]  # produced now: today's Kafka timestamp
            yield make(late.key, late.value, last_ts, "late")
            continue
        u = arandom()
        if u >= limit:
            rec = next(clean)
        else:  # an awkward record: insert one, or mutate the next clean event
            kind = next(k for edge, k in bands if u < edge)
            if kind == "duplicate" and recent:
                src = recent[int(arandom() * len(recent))]
                yield make(src.key, src.value, last_ts, "duplicate")
                continue
            if kind in ("duplicate", "unknown_type"):  # nothing to duplicate yet: unknown type
                value = _unknown_type_event(arng, clock, webhook).encode()
                yield make(some_key(), value, last_ts, "unknown_type")
                continue
            if kind == "not_json":
                yield make(some_key(0.3), _not_json(arng, recent), last_ts, "not_json")
                continue
            if kind == "not_utf8":
                yield make(some_key(0.3), _not_utf8(arng, clock, webhook), last_ts, "not_utf8")
                continue
            if kind == "late" and len(held) + 2 < count - i:  # room to release it in time
                heapq.heappush(held, (i + 1 + int(arandom() * 400), i, next(clean)))
            elif kind != "late":
                pending.append(kind)
            rec = next(clean)
        for j, kind in enumerate(pending):  # usually empty; else the event's first fitting case
            text = _mutate(kind, rec.value, arng)
            if text is not None:
                del pending[j]
                rec = make(rec.key, text.encode(), rec.timestamp_ms, kind)
                break
        last_ts = rec.timestamp_ms
        if seen < ring:
            recent.append(rec)
        else:
            recent[seen % ring] = rec
        seen += 1
        yield rec


def price_events(
    count: int, *, seed: int = 7, start: datetime | None = None
) -> Iterator[SampleRecord]:
    """Yield ``count`` Prices-topic records keyed by ISIN (the real schema is unknown).

    Each instrument's mid price follows a small random walk; bid < last <= ask in cents.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    rng = Random(seed)
    random = rng.random
    clock = _Clock(start or DEFAULT_START)
    inst_rng = Random(0x15177)  # same instrument uuids as the notifications
    instruments = [(isin, _uuid4(inst_rng), isin.encode()) for isin, _ in _INSTRUMENTS_RAW]
    mids = [price * 10 for _, price in _INSTRUMENTS_RAW]  # tenths of a cent: finer walk
    n = len(instruments)
    make = _record
    for _ in range(count):
        clock.ns += rng.getrandbits(26) + 100_000  # 0.1 ms .. ~67 ms apart
        i = int(random() * n)
        mid = mids[i] = max(100, mids[i] + int((random() - 0.5) * mids[i] * 0.002))
        isin, inst_uuid, key = instruments[i]
        c = mid // 10
        spread = 1 + c // 2000
        trade_ns = clock.ns - rng.getrandbits(24)
        t = clock.stamp(6)
        value = (
            f'{{"instrument_id":"{isin}","instrument_uuid":"{inst_uuid}",'
            f'"bid":"{_cents(c - spread)}","ask":"{_cents(c + spread)}",'
            f'"last_trade":{{"price":"{_cents(c)}","quantity":"{rng.randrange(1, 500)}",'
            f'"time":"{clock.stamp(6, trade_ns)}"}},"currency":"EUR","time":"{t}"}}'
        )
        yield make(key, value.encode(), clock.ns // 1_000_000, "ok")


# --------------------------------------------------------------------------------------------
# Producer


class SampleProduceError(LakeportError):
    """Producing the sample failed: topic mismatch or undelivered records."""


def _ensure_topic(producer_config: dict[str, str], topic: str, partitions: int) -> None:
    """Create ``topic`` with ``partitions`` partitions, or check an existing one matches."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    settings: dict[str, Any] = {"logger": rdkafka_logger, **producer_config}
    admin = AdminClient(settings)
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions)], request_timeout=30)
    try:
        futures[topic].result(timeout=60)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
            raise SampleProduceError(f"could not create topic {topic!r}: {exc}") from None
    deadline = time.monotonic() + 30
    while True:  # a new topic takes a moment to appear in every broker's metadata
        tmd = admin.list_topics(topic=topic, timeout=30).topics.get(topic)
        if (tmd is not None and tmd.error is None) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if tmd is None or tmd.error is not None:
        raise SampleProduceError(f"topic {topic!r} unavailable: {tmd.error if tmd else 'missing'}")
    if len(tmd.partitions) != partitions:
        raise SampleProduceError(
            f"topic {topic!r} exists with {len(tmd.partitions)} partitions, expected {partitions}"
        )


def produce_sample(
    producer_config: dict[str, str],
    topic: str,
    records: Iterable[SampleRecord],
    *,
    partitions: int = 6,
    create_topic: bool = True,
) -> ProduceReport:
    """Produce ``records`` to ``topic`` and wait until every one is acknowledged.

    Tuned for throughput (linger 20 ms, 1 MiB batches, lz4) with idempotence on, so that
    retries never duplicate or reorder records: any duplicate in the topic is one the sample
    put there on purpose.  ``producer_config`` wins over these defaults and is never logged.
    Raises ``SampleProduceError`` on a partition-count mismatch or a failed delivery.
    """
    from confluent_kafka import Producer

    if create_topic:
        _ensure_topic(producer_config, topic, partitions)

    config: dict[str, object] = {
        "logger": rdkafka_logger,  # librdkafka's own lines go to -v, not to the terminal
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "batch.num.messages": 100_000,
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 512 * 1024,
        "compression.type": "lz4",
        "enable.idempotence": True,
        "acks": "all",
    }
    config.update(producer_config)
    producer = Producer(config)

    per_partition: dict[int, int] = {}
    delivered_bytes = 0
    failures = 0
    first_error: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        nonlocal delivered_bytes, failures
        if err is not None:
            failures += 1
            if not first_error:
                first_error.append(str(err))
            return
        p = msg.partition()
        per_partition[p] = per_partition.get(p, 0) + 1
        delivered_bytes += len(msg)

    produce = producer.produce
    poll = producer.poll
    sent = 0
    t0 = time.perf_counter()
    for rec in records:
        while True:
            try:
                produce(topic, value=rec.value, key=rec.key, timestamp=rec.timestamp_ms,
                        on_delivery=on_delivery)  # fmt: skip
                break
            except BufferError:
                poll(0.1)
        sent += 1
        poll(0)  # serve delivery callbacks as they come
    remaining = producer.flush(120)
    seconds = time.perf_counter() - t0
    if remaining:
        raise SampleProduceError(f"{remaining} of {sent} records still undelivered after flush")
    if failures:
        raise SampleProduceError(
            f"{failures} of {sent} records failed delivery to {topic!r}; first: {first_error[0]}"
        )
    return ProduceReport(
        topic=topic,
        records=sum(per_partition.values()),
        bytes=delivered_bytes,
        per_partition=dict(sorted(per_partition.items())),
        seconds=seconds,
    )
