"""Avro schemas (`schemas/*.avsc`) as the one schema language, and their Arrow/Delta table layout.

For Avro topics the `.avsc` is the reader schema. For JSON streams it lists the columns to
extract: each field may carry `"lakeport.path"` (a JSON path, default `$.<name>`),
`"lakeport.raw": true` (keep the JSON text of that path) or `"lakeport.sql"` (a DuckDB
expression over columns extracted before it). A field whose Avro type is not nullable is
required: a record without it goes to the dead letters.

Every table starts with the Kafka columns, so (kafka_partition, kafka_offset) identifies a row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa

from connectors.errors import SchemaError

UTC_MICROS = pa.timestamp("us", tz="UTC")

KAFKA_HEADER = pa.struct([("key", pa.string()), ("value", pa.binary())])
KAFKA_FIELDS: list[pa.Field[Any]] = [
    pa.field("kafka_topic", pa.string(), nullable=False),
    pa.field("kafka_partition", pa.int32(), nullable=False),
    pa.field("kafka_offset", pa.int64(), nullable=False),
    pa.field("kafka_timestamp", UTC_MICROS),
    pa.field("kafka_key", pa.binary()),
    pa.field("kafka_headers", pa.list_(KAFKA_HEADER)),
]
KAFKA_SCHEMA = pa.schema(KAFKA_FIELDS)

DEAD_LETTER_SCHEMA = pa.schema(
    [
        *KAFKA_FIELDS,
        pa.field("value", pa.binary()),
        pa.field("error_class", pa.string(), nullable=False),
        pa.field("error_message", pa.string(), nullable=False),
        pa.field("lakeport_version", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True)
class Column:
    """One payload column of a table and how to get it from a record."""

    name: str
    avro_type: Any
    arrow_type: pa.DataType
    required: bool
    path: str
    raw: bool = False
    sql: str | None = None

    @property
    def field(self) -> pa.Field[Any]:
        return pa.field(self.name, self.arrow_type, nullable=True)


@dataclass(frozen=True)
class StreamSchema:
    """A parsed `.avsc`: the Avro schema itself and the table columns it maps to."""

    name: str
    avro: dict[str, Any]
    columns: tuple[Column, ...]

    @property
    def arrow(self) -> pa.Schema:
        """The table layout: Kafka columns first, then the payload columns."""
        return pa.schema([*KAFKA_FIELDS, *(c.field for c in self.columns)])


def load_schema(path: Path) -> StreamSchema:
    """Parse and validate an `.avsc` file (fastavro checks it is a valid Avro schema)."""
    try:
        avro = json.loads(path.read_text())
        fastavro.parse_schema(avro)
    except (OSError, ValueError, fastavro.schema.SchemaParseException) as exc:
        raise SchemaError(f"{path}: not a valid Avro schema: {exc}") from None
    if avro.get("type") != "record":
        raise SchemaError(f"{path}: the top level must be an Avro record")
    columns = []
    for f in avro["fields"]:
        nullable, inner = _unwrap_nullable(f["type"])
        try:
            arrow_type = avro_to_arrow(inner)
        except SchemaError as exc:
            raise SchemaError(f"{path}: field {f['name']!r}: {exc}") from None
        columns.append(
            Column(
                name=f["name"],
                avro_type=inner,
                arrow_type=arrow_type,
                required=not nullable,
                path=f.get("lakeport.path", f"$.{f['name']}"),
                raw=bool(f.get("lakeport.raw", False)),
                sql=f.get("lakeport.sql"),
            )
        )
    reserved = {f.name for f in KAFKA_FIELDS}
    clash = reserved.intersection(c.name for c in columns)
    if clash:
        raise SchemaError(f"{path}: field names {sorted(clash)} are reserved for Kafka columns")
    return StreamSchema(avro["name"], avro, tuple(columns))


def _unwrap_nullable(avro_type: Any) -> tuple[bool, Any]:
    if isinstance(avro_type, list):
        members = [t for t in avro_type if t != "null"]
        if len(members) != 1:
            raise SchemaError(
                f'union {avro_type} is not supported: only ["null", T] unions map to a column'
            )
        return len(members) < len(avro_type), members[0]
    return False, avro_type


_PRIMITIVES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.string(),
    "fixed": pa.binary(),
}


def avro_to_arrow(avro_type: Any) -> pa.DataType:
    """The Arrow type Delta stores for an Avro type (Delta keeps timestamps in microseconds)."""
    if isinstance(avro_type, str):
        if avro_type not in _PRIMITIVES:
            raise SchemaError(f"named type references ({avro_type!r}) are not supported")
        return _PRIMITIVES[avro_type]
    if isinstance(avro_type, list):
        _, inner = _unwrap_nullable(avro_type)
        return avro_to_arrow(inner)
    kind = avro_type["type"]
    logical = avro_type.get("logicalType")
    if logical == "decimal":
        precision, scale = avro_type["precision"], avro_type.get("scale", 0)
        if precision > 38:
            raise SchemaError(f"decimal precision {precision} exceeds 38")
        return pa.decimal128(precision, scale)
    if logical == "date":
        return pa.date32()
    if logical in ("timestamp-millis", "timestamp-micros", "timestamp-nanos"):
        return UTC_MICROS
    if logical in ("local-timestamp-millis", "local-timestamp-micros"):
        return pa.timestamp("us")
    if logical == "uuid":
        return pa.string()
    if kind == "record":
        return pa.struct(
            [pa.field(f["name"], avro_to_arrow(f["type"])) for f in avro_type["fields"]]
        )
    if kind == "array":
        return pa.list_(avro_to_arrow(avro_type["items"]))
    if kind == "map":
        return pa.map_(pa.string(), avro_to_arrow(avro_type["values"]))
    if kind == "enum":
        return pa.string()
    return avro_to_arrow(kind)
