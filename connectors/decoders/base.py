"""What every decoder returns: rows for the table, and dead letters for records it could not read.

Decoders work on a whole micro-batch (an Arrow table of Kafka columns plus the raw `value`) and
flag bad records with an error class and message instead of raising, so one bad record never
stops the stream and is never dropped: it becomes a dead-letter row with its raw bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast

import pyarrow as pa
import pyarrow.compute as pc

from connectors.config import StreamConfig
from connectors.table_schema import DEAD_LETTER_SCHEMA, KAFKA_SCHEMA, StreamSchema
from connectors.version import __version__


@dataclass(frozen=True)
class Decoded:
    """One micro-batch after decoding."""

    rows: pa.Table
    dead: pa.Table


class Decoder(Protocol):
    """Turns a raw micro-batch into table rows and dead letters."""

    @property
    def schema(self) -> pa.Schema: ...

    def decode(self, raw: pa.Table) -> Decoded: ...


class DecoderFactory(Protocol):
    """How a format builds its decoder: from the stream's schema and configuration."""

    def __call__(self, schema: StreamSchema, config: StreamConfig) -> Decoder: ...


def split_dead(
    raw: pa.Table,
    decoded: pa.Table,
    error_class: pa.Array[Any],
    error_message: pa.Array[Any],
    schema: pa.Schema,
) -> Decoded:
    """Assemble rows (Kafka columns + decoded columns) and dead letters from per-record errors.

    `decoded` is row-aligned with `raw`; records with a non-null `error_class` go to the dead
    letters with their raw value, the rest to the table.
    """
    bad = pc.is_valid(error_class)
    kafka = raw.select(KAFKA_SCHEMA.names)
    rows = pa.Table.from_arrays(
        [*kafka.columns, *decoded.columns], names=[*KAFKA_SCHEMA.names, *decoded.column_names]
    )
    if bad.true_count:
        rows = rows.filter(pc.invert(bad))
    return Decoded(
        rows.cast(schema),
        dead_letter_rows(raw.filter(bad), error_class.filter(bad), error_message.filter(bad)),
    )


def per_partition(rows: pa.Table) -> dict[int, int]:
    """How many of `rows` belong to each Kafka partition (for the ledger's counts)."""
    if rows.num_rows == 0:
        return {}
    counts = pc.value_counts(rows.column("kafka_partition"))
    partitions = cast(list[int], counts.field("values").to_pylist())  # never null
    numbers = cast(list[int], counts.field("counts").to_pylist())
    return dict(zip(partitions, numbers, strict=True))


def dead_letter_rows(
    raw: pa.Table, error_class: pa.Array[Any], error_message: pa.Array[Any]
) -> pa.Table:
    """Dead-letter rows: the record's position, raw bytes and the reason it was rejected."""
    version = pa.array([__version__] * raw.num_rows, pa.string())
    return pa.Table.from_arrays(
        [*raw.select([*KAFKA_SCHEMA.names, "value"]).columns, error_class, error_message, version],
        schema=DEAD_LETTER_SCHEMA,
    )
