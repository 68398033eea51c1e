"""A derived table resolved: its definition, its columns, and how raw rows become its rows.

A derived table is declared under a stream in `lakeport.yaml` (`DerivedConfig`): the raw rows
it takes (`where`, a DuckDB condition over the raw table's columns), the JSON column it reads
(Upvest's `object`) and an `.avsc` of that JSON in the same column language as the stream's
own schema (paths, exact decimals, timestamps, required fields). Its rows are the raw row's
Kafka columns (where the state came from), the envelope columns it keeps (`event_id`,
`event_type`, `event_created_at`) and the decoded columns.

Both kinds are "one row per key, the best row wins", which is what makes them incremental:

- `events`: the key is the event id (Upvest delivers at least once, so one event can sit at
  two offsets); the first copy (lowest partition, then offset) wins, so later copies change
  nothing;
- `latest-state`: the key is the entity's (an order's `id`, a position's `account_id` +
  `instrument_uuid`); the newest by `order_by` wins (NULL oldest), then the higher partition
  and offset, so an older event arriving late never overwrites newer state.

`ranking` is that order, and the same definition drives DuckDB (picking a batch's best rows)
and the MERGE that compares them with the table (`beats`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from connectors.config import DerivedConfig, LakeportConfig
from connectors.decoders import Decoded
from connectors.decoders.json import JsonDecoder
from connectors.delta_store import DeltaStore
from connectors.errors import ConfigError
from connectors.stream import Stream
from connectors.table_schema import DEAD_LETTER_SCHEMA, KAFKA_FIELDS, StreamSchema, load_schema
from connectors.writer import TableWriter

POSITION = ["kafka_partition", "kafka_offset"]
KAFKA_COLUMNS = [*POSITION, "kafka_timestamp"]
"""The raw row's Kafka columns a derived row keeps: where (and when) its state came from."""


def quote(name: str) -> str:
    """An identifier for DuckDB and DataFusion SQL alike."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class DerivedTable:
    """One derived table of a stream, and its dead letters (rows whose JSON does not fit)."""

    name: str
    config: DerivedConfig
    source: Stream
    schema: StreamSchema
    table: DeltaStore
    dead_letters: DeltaStore

    @classmethod
    def from_config(cls, config: LakeportConfig, stream: str, name: str) -> DerivedTable:
        source = Stream.from_config(config, stream)
        derived = source.config.derived.get(name)
        if derived is None:
            known = ", ".join(sorted(source.config.derived)) or "none"
            raise ConfigError(
                f"stream {stream!r} has no derived table {name!r} (derived tables: {known})"
            )
        schema = load_schema(config.schema_path(derived))
        options = config.storage_options()
        arrow = _arrow(source, derived, schema)
        return cls(
            name=name,
            config=derived,
            source=source,
            schema=schema,
            table=DeltaStore(config.table_uri(name), arrow, options),
            dead_letters=DeltaStore(
                config.table_uri(f"{name}_dead_letters"), DEAD_LETTER_SCHEMA, options
            ),
        )

    @property
    def topic(self) -> str:
        return self.source.topic

    @property
    def arrow(self) -> pa.Schema:
        return self.table.schema

    @property
    def key(self) -> list[str]:
        """The columns with one row per distinct value."""
        if self.config.kind == "events":
            return [f"event_{self.config.event_id}"]
        return list(self.config.key)

    @property
    def join_columns(self) -> list[str]:
        """The MERGE's join: the key, plus `cluster_by` so delta-rs skips files outside its range."""
        extra = self.config.cluster_by
        return self.key + ([extra] if extra and extra not in self.key else [])

    @property
    def ranking(self) -> list[tuple[str, bool]]:
        """(column, higher wins) in order of precedence: which of a key's rows is kept."""
        if self.config.kind == "events":
            return [(c, False) for c in POSITION]
        return [(c, True) for c in (*self.config.order_by, *POSITION)]

    def order_sql(self) -> str:
        """`ORDER BY` putting a key's winning row first (NULL loses)."""
        return ", ".join(
            f"{quote(c)} DESC NULLS LAST" if higher else f"{quote(c)} ASC NULLS LAST"
            for c, higher in self.ranking
        )

    def beats(self, a: str, b: str) -> str:
        """SQL (DuckDB and DataFusion): row `a` wins over row `b` of the same key."""
        sql = "false"
        for column, higher in reversed(self.ranking):
            x, y = f"{a}.{quote(column)}", f"{b}.{quote(column)}"
            op = ">" if higher else "<"
            null_loses = f"(({x} IS NOT NULL) AND ({y} IS NULL))"
            sql = f"({null_loses} OR ({x} {op} {y}) OR (({x} IS NOT DISTINCT FROM {y}) AND {sql}))"
        return sql

    def as_stream(self) -> Stream:
        """The source stream seen through this table: the same topic and broker, this table's
        ledger, rows and dead letters (window coverage, status and checks take a `Stream`)."""
        return replace(self.source, table=self.table, dead_letters=self.dead_letters)

    def writer(self) -> TableWriter:
        """The commit path of this table: its ledger is in the raw topic's namespace."""
        return TableWriter(self.table, self.topic, self.dead_letters, label=self.name)

    def projection(self) -> Projection:
        return Projection(self)


def _arrow(source: Stream, derived: DerivedConfig, schema: StreamSchema) -> pa.Schema:
    raw = source.schema.arrow
    kafka = [raw.field(c) for c in KAFKA_COLUMNS]
    events = [pa.field(f"event_{n}", raw.field(n).type) for n in derived.event_columns]
    return pa.schema([*kafka, *events, *(c.field for c in schema.columns)])


class Projection:
    """Raw rows → a derived table's rows and dead letters: the rows `where` selects, decoded.

    The JSON column is decoded by the stream decoders' JSON path (one DuckDB query per batch),
    so the column language is the `.avsc`'s; a row whose JSON lacks a required field or holds
    a value of the wrong type becomes a dead letter of the derived table with the JSON text.
    """

    def __init__(self, derived: DerivedTable) -> None:
        self._derived = derived
        self._decoder = JsonDecoder(derived.schema)
        self._con = duckdb.connect(config={"threads": 2})
        self._con.execute("SET TimeZone = 'UTC'")
        config = derived.config
        self._events = [f"event_{n}" for n in config.event_columns]
        kafka = ", ".join(quote(f.name) for f in KAFKA_FIELDS)
        events = ", ".join(f"{quote(n)} AS {quote('event_' + n)}" for n in config.event_columns)
        self._sql = (
            f"SELECT {kafka}, {events}, encode({quote(config.json_column)}) AS value"
            f" FROM raw WHERE ({config.where})"
        )

    def scan(self, raw: ds.Dataset, where: ds.Expression | None) -> Iterator[pa.Table]:
        """The derived rows of `raw`'s rows matching `where`, about `batch_records` raw rows at a
        time (a scan of the whole history stays within a batch's memory)."""
        scanner = raw.scanner(filter=where)
        pending: list[pa.RecordBatch] = []
        size = 0
        for batch in scanner.to_batches():
            pending.append(batch)
            size += batch.num_rows
            if size >= self._derived.config.batch_records:
                yield self(pa.Table.from_batches(pending, scanner.projected_schema)).rows
                pending, size = [], 0
        if pending:
            yield self(pa.Table.from_batches(pending, scanner.projected_schema)).rows

    def __call__(self, raw: pa.Table | pa.RecordBatchReader) -> Decoded:
        """Decode the selected rows of `raw` (rows of the source table)."""
        self._con.register("raw", raw)
        try:
            selected: pa.Table = self._con.sql(self._sql).to_arrow_table()
        finally:
            self._con.unregister("raw")
        decoded = self._decoder.decode(selected.select([*(f.name for f in KAFKA_FIELDS), "value"]))
        columns = [*KAFKA_COLUMNS, *(c.name for c in self._derived.schema.columns)]
        envelope = selected.select([*POSITION, *self._events])
        rows = decoded.rows.select(columns).join(envelope, keys=POSITION, join_type="inner")
        return Decoded(
            rows.select(self._derived.arrow.names).cast(self._derived.arrow), decoded.dead
        )


def derived_tables(config: LakeportConfig, stream: str | None = None) -> list[DerivedTable]:
    """Every derived table of `stream` (of every stream if None), in configuration order."""
    names = [stream] if stream else list(config.streams)
    return [
        DerivedTable.from_config(config, s, name)
        for s in names
        for name in config.stream(s).derived
    ]


def find_derived(config: LakeportConfig, name: str) -> DerivedTable:
    """The derived table called `name`, whichever stream declares it."""
    for stream, cfg in config.streams.items():
        if name in cfg.derived:
            return DerivedTable.from_config(config, stream, name)
    known = [t for cfg in config.streams.values() for t in cfg.derived]
    raise ConfigError(f"unknown derived table {name!r}; configured: {', '.join(known) or 'none'}")
