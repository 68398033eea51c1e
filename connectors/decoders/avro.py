"""Avro values (Confluent wire format or schemaless) to typed Arrow columns, per schema id.

A micro-batch is framed column-wise (magic byte, schema id per value, with numpy over the
value buffer) and grouped by writer schema id. Each group's bodies are read in bulk by Polars'
reader (`avro_columnar`) where it reads that writer schema exactly; otherwise, or when that
block does not read cleanly, they are framed as one in-memory Avro container block for
fastavro's block reader (~1.4x faster than `schemaless_reader` per record). On that path:

- Logical types of top-level fields are stripped from both writer and reader schema: fastavro
  then returns plain ints/bytes/strings instead of building datetime/Decimal/UUID objects
  (that halved its speed), and Arrow turns them into timestamps/dates/decimals column-wise.
- fastavro's schema resolution (`reader_schema=`) halves its speed again, so it is only used
  when the writer schema differs from the reader schema (schema evolution).

Bad records never fail the batch: if a group's bulk read fails (or does not consume exactly the
block), the group is re-read record by record to find the bad ones, which become dead letters.
A Schema Registry that cannot be reached does fail the batch: that is transient, and
dead-lettering good records because of it would lose them from the table.
"""

from __future__ import annotations

import functools
import io
import json
import uuid
from dataclasses import dataclass
from decimal import Context, Decimal
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import fastavro
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.common._httpx_compat import httpx
from confluent_kafka.schema_registry.error import SchemaRegistryError

from connectors.config import StreamConfig
from connectors.decoders.avro_columnar import ColumnarReader, binary_layout, zigzag
from connectors.decoders.base import Decoded, split_dead
from connectors.errors import AccessDenied, ConfigError, RegistryUnavailable
from connectors.retry import retrying
from connectors.table_schema import Column, StreamSchema

_MAGIC = 0
_HEADER_BYTES = 5
_WIDE = Context(prec=80)  # no rounding while scaling decimals of up to 38 digits

_TIMESTAMP_SCALE = {  # logical type -> multiply (>0) or divide (<0) the long to get micros
    "timestamp-millis": 1000,
    "local-timestamp-millis": 1000,
    "timestamp-micros": 1,
    "local-timestamp-micros": 1,
    "timestamp-nanos": -1000,
    "local-timestamp-nanos": -1000,
}


def _logical(avro_type: Any) -> str | None:
    return avro_type.get("logicalType") if isinstance(avro_type, dict) else None


def _base(avro_type: Any) -> Any:
    return avro_type["type"] if isinstance(avro_type, dict) else avro_type


def _strip(avro_type: Any, top: bool) -> Any:
    """The type without logical types at the top level, and without string uuids anywhere.

    Nested logical types stay: fastavro's Python objects for them (datetime, Decimal, date)
    are what `pa.array` expects for struct/list/map children.
    """
    if isinstance(avro_type, list):
        return [_strip(t, top) for t in avro_type]
    if not isinstance(avro_type, dict):
        return avro_type
    out = dict(avro_type)
    kind = out.get("type")
    logical = out.get("logicalType")
    if logical and (top or (logical == "uuid" and kind == "string")):
        del out["logicalType"]
    if kind == "record":
        out["fields"] = [{**f, "type": _strip(f["type"], False)} for f in out["fields"]]
    elif kind == "array":
        out["items"] = _strip(out["items"], False)
    elif kind == "map":
        out["values"] = _strip(out["values"], False)
    elif isinstance(kind, dict | list):
        out["type"] = _strip(kind, top)
    return out


def _strip_record(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "fields": [{**f, "type": _strip(f["type"], True)} for f in schema["fields"]]}


def _raw_type(column: Column) -> pa.DataType:
    """The Arrow type of a top-level column as fastavro returns it once logical types are gone."""
    logical = _logical(column.avro_type)
    if logical in _TIMESTAMP_SCALE:
        return pa.int64()
    if logical == "date":
        return pa.int32()
    if logical == "decimal" or (logical == "uuid" and _base(column.avro_type) == "fixed"):
        return pa.binary()
    return column.arrow_type


def _finish(column: Column, raw: pa.Array[Any]) -> pa.Array[Any]:
    """Raw longs/ints/bytes of a top-level logical type to the column's Arrow type."""
    logical = _logical(column.avro_type)
    if logical in _TIMESTAMP_SCALE:
        scale = _TIMESTAMP_SCALE[logical]
        if scale > 1:
            raw = pc.multiply_checked(raw, scale)
        elif scale < 0:
            raw = pc.divide(raw, -scale)
        return raw.cast(column.arrow_type)
    if logical == "date":
        return raw.cast(pa.date32())
    if logical == "decimal":
        scale = -int(column.avro_type.get("scale", 0))
        values = [
            None
            if b is None
            else Decimal(int.from_bytes(b, "big", signed=True)).scaleb(scale, _WIDE)
            for b in raw.to_pylist()
        ]
        return pa.array(values, column.arrow_type)
    if logical == "uuid" and _base(column.avro_type) == "fixed":
        return pa.array(
            [None if b is None else str(uuid.UUID(bytes=b)) for b in raw.to_pylist()], pa.string()
        )
    return raw


@dataclass(frozen=True)
class _Writer:
    """A writer schema ready to read: parsed, its container header, and whether to resolve."""

    schema_id: int | None
    parsed: Any
    header: bytes  # an Avro container header ending in its 16-byte sync marker
    resolve: bool  # False when the writer schema is the reader schema (the fast path)
    columnar: ColumnarReader | None  # Polars' bulk reader, where it reads this schema exactly

    @property
    def sync(self) -> bytes:
        return self.header[-16:]


@dataclass(frozen=True)
class _Failure:
    error_class: str
    message: str


@functools.cache
def registry_client(url: str) -> SchemaRegistryClient:
    """One registry client per URL and process: writer schemas are cached across runs, and a
    `mock://` registry is the same one for a test's producer and lakeport.

    The client's own retries are off: `connectors.retry` is the one place that waits for a
    registry that does not answer, with bounded backoff.
    """
    return SchemaRegistryClient.new_client({"url": url, "max.retries": 0, "timeout": 10})


class AvroDecoder:
    """Decodes Avro values into the columns of a stream's `.avsc` (the reader schema)."""

    def __init__(
        self,
        schema: StreamSchema,
        config: StreamConfig,
        registry: SchemaRegistryClient | None = None,
    ) -> None:
        self._schema = schema
        self._framing = config.avro_framing
        if self._framing == "confluent" and registry is None:
            if not config.schema_registry_url:
                raise ConfigError(
                    f"stream {config.table!r}: avro_framing 'confluent' needs schema_registry_url"
                )
            registry = registry_client(config.schema_registry_url)
        self._registry = registry
        self._registry_url = _without_credentials(config.schema_registry_url or "")
        self._stream = config.table
        self._reader = fastavro.parse_schema(_strip_record(schema.avro))
        self._reader_form = fastavro.schema.to_parsing_canonical_form(self._reader)
        self._writers: dict[int, _Writer | _Failure] = {}
        self._raw_schema = pa.schema([pa.field(c.name, _raw_type(c)) for c in schema.columns])
        self._payload_schema = pa.schema([c.field for c in schema.columns])
        self._schemaless = self._make_writer(None, schema.avro)

    @property
    def schema(self) -> pa.Schema:
        return self._schema.arrow

    def _make_writer(self, schema_id: int | None, schema: dict[str, Any]) -> _Writer:
        parsed = fastavro.parse_schema(_strip_record(schema))
        header = io.BytesIO()
        fastavro.writer(header, parsed, [])
        same = fastavro.schema.to_parsing_canonical_form(parsed) == self._reader_form
        columnar = ColumnarReader.for_schemas(schema, self._schema)
        return _Writer(schema_id, parsed, header.getvalue(), not same, columnar)

    def _writer(self, schema_id: int) -> _Writer | _Failure:
        """The writer schema of an id, cached; registry outages raise (the batch is retried)."""
        cached = self._writers.get(schema_id)
        if cached is not None:
            return cached
        registered = retrying(
            lambda: self._fetch(schema_id), f"schema id {schema_id} from {self._registry_url}"
        )
        if registered is None:
            # not cached: the id may be registered by the time the next batch comes
            return _Failure("unknown_schema_id", f"schema id {schema_id} is not registered")
        result: _Writer | _Failure
        if (registered.schema_type or "AVRO") != "AVRO":
            result = _Failure(
                "incompatible_schema",
                f"schema id {schema_id} is a {registered.schema_type} schema, not Avro",
            )
        elif registered.references:
            result = _Failure(
                "incompatible_schema",
                f"schema id {schema_id} uses schema references, which are not supported",
            )
        else:
            try:
                result = self._make_writer(schema_id, json.loads(registered.schema_str or ""))
            except (ValueError, KeyError, TypeError, fastavro.schema.SchemaParseException) as exc:
                result = _Failure(
                    "incompatible_schema", f"schema id {schema_id} is not a readable record: {exc}"
                )
        self._writers[schema_id] = result
        return result

    def _fetch(self, schema_id: int) -> Schema | None:
        """The registered writer schema of an id (None: not registered); a registry that does
        not answer is `RegistryUnavailable`, one that refuses the request is the user's to fix."""
        where = f"the schema registry at {self._registry_url} (schema_registry_url of stream"
        where += f" {self._stream!r})"
        try:
            return self._registry.get_schema(schema_id)  # type: ignore[union-attr]
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return None
            if exc.http_status_code in (401, 403):
                raise AccessDenied(
                    f"{where} refused to give schema id {schema_id} (HTTP"
                    f" {exc.http_status_code}): check the registry credentials and permissions"
                ) from None
            if exc.http_status_code >= 500 or exc.http_status_code < 0:
                raise RegistryUnavailable(f"{where} failed: {exc.error_message}") from None
            raise ConfigError(
                f"{where} answered HTTP {exc.http_status_code} for schema id {schema_id}:"
                f" {exc.error_message}; check schema_registry_url"
            ) from None
        except (httpx.TransportError, OSError) as exc:  # refused, unreachable, timed out
            raise RegistryUnavailable(
                f"{where} did not answer ({type(exc).__name__}: {exc}): check"
                " schema_registry_url and that the registry is up"
            ) from None

    def decode(self, raw: pa.Table) -> Decoded:
        """Decode one micro-batch; rows stay aligned with the Kafka columns."""
        values = raw.column("value").combine_chunks()
        n = len(values)
        errors: list[_Failure | None] = [None] * n
        tombstone = _Failure("null_value", "the record has no value (a tombstone)")
        for i in np.flatnonzero(pc.is_null(values).to_numpy(zero_copy_only=False)):
            errors[i] = tombstone
        groups = self._groups(values, errors)
        skip = 0 if self._framing == "schemaless" else _HEADER_BYTES

        tables: list[pa.Table] = []
        positions: list[int] = []
        for writer_id, rows in groups.items():
            writer = self._schemaless if writer_id is None else self._writer(writer_id)
            if isinstance(writer, _Failure):
                for i in rows:
                    errors[i] = writer
                continue
            group = values if len(rows) == n else values.take(rows)  # rows are sorted
            # an explicit stop: pyarrow 26 overflows on the default (sys.maxsize)
            bodies = pc.binary_slice(group, skip, 2**31 - 1)
            table = writer.columnar.read(bodies) if writer.columnar else None
            if table is not None:
                tables.append(table)
                positions.extend(rows.tolist())
                continue
            every = cast(list[bytes], bodies.to_pylist())  # grouped values are not null
            table, ok = self._decode_group(writer, every, rows.tolist(), errors)
            tables.append(table)
            positions.extend(ok)

        payload = self._align(tables, positions, n)
        for c in self._schema.columns:
            if not c.required:
                continue
            for i in np.flatnonzero(pc.is_null(payload.column(c.name)).to_numpy()):
                if errors[i] is None:
                    errors[i] = _Failure("missing_field", f"required field {c.name!r} is null")
        error_class = pa.array([e and e.error_class for e in errors], pa.string())
        error_message = pa.array([e and e.message for e in errors], pa.string())
        return split_dead(raw, payload, error_class, error_message, self.schema)

    def _groups(
        self, values: pa.Array[Any], errors: list[_Failure | None]
    ) -> dict[int | None, npt.NDArray[np.intp]]:
        """Record positions per writer schema id (None: schemaless), column-wise; values that
        are not Confluent-framed get their error."""
        present = pc.is_valid(values).to_numpy(zero_copy_only=False)
        if self._framing == "schemaless":
            return {None: np.flatnonzero(present)}
        offsets, buffer = binary_layout(values)
        data = np.frombuffer(memoryview(buffer), dtype=np.uint8)
        starts, lengths = offsets[:-1], np.diff(offsets)
        framed = present & (lengths >= _HEADER_BYTES)
        framed[framed] = data[starts[framed]] == _MAGIC
        for i in np.flatnonzero(present & ~framed):
            errors[i] = _Failure(
                "not_confluent_framed",
                f"the value ({lengths[i]} bytes) does not start with magic byte 0"
                " and a 4-byte schema id",
            )
        at = starts[framed]
        ids = np.full(len(values), -1, dtype=np.int64)
        ids[framed] = (
            data[at + 1].astype(np.int64) << 24
            | data[at + 2].astype(np.int64) << 16
            | data[at + 3].astype(np.int64) << 8
            | data[at + 4]
        )
        return {int(i): np.flatnonzero(ids == i) for i in np.unique(ids[framed])}

    def _decode_group(
        self,
        writer: _Writer,
        bodies: list[bytes],
        indices: list[int],
        errors: list[_Failure | None],
    ) -> tuple[pa.Table, list[int]]:
        """One schema id's records: bulk first, record by record only if the bulk read fails."""
        rows = self._read_block(writer, bodies)
        if rows is not None:
            try:
                return self._to_arrow(rows), indices
            except (pa.ArrowException, ValueError, TypeError, OverflowError):
                pass  # a value Arrow rejects: find it below
        reader = self._reader if writer.resolve else None
        ok_rows: list[dict[str, Any]] = []
        ok: list[int] = []
        for i, body in zip(indices, bodies, strict=True):
            try:
                ok_rows.append(_read_one(writer.parsed, reader, body))
                ok.append(i)
            except fastavro.read.SchemaResolutionError as exc:
                errors[i] = _Failure("incompatible_schema", _about(writer, exc))
            except Exception as exc:  # EOFError, IndexError, ValueError... from a corrupt body
                errors[i] = _Failure("avro_decode_error", _about(writer, exc))
        try:
            return self._to_arrow(ok_rows), ok
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            pass  # rare: a decoded value Arrow rejects (e.g. a decimal beyond its precision)
        kept: list[dict[str, Any]] = []
        kept_at: list[int] = []
        for i, row in zip(ok, ok_rows, strict=True):
            try:
                self._to_arrow([row])
            except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
                errors[i] = _Failure("bad_value", _about(writer, exc))
            else:
                kept.append(row)
                kept_at.append(i)
        return self._to_arrow(kept), kept_at

    def _read_block(self, writer: _Writer, bodies: list[bytes]) -> list[dict[str, Any]] | None:
        """All bodies as one container block; None unless every byte was read as a record."""
        payload = b"".join(bodies)
        container = b"".join(
            [writer.header, zigzag(len(bodies)), zigzag(len(payload)), payload, writer.sync]
        )
        reader = self._reader if writer.resolve else None
        try:
            block = next(fastavro.block_reader(io.BytesIO(container), reader))
            rows = cast(list[dict[str, Any]], list(block))
        except Exception:  # any corrupt body: the per-record pass names it
            return None
        consumed = cast(io.BytesIO, block.bytes_).tell()  # type: ignore[attr-defined]
        if len(rows) != len(bodies) or consumed != len(payload):
            return None
        return rows

    def _to_arrow(self, rows: list[dict[str, Any]]) -> pa.Table:
        table = pa.Table.from_pylist(rows, schema=self._raw_schema)
        return pa.Table.from_arrays(
            [_finish(c, table.column(c.name).combine_chunks()) for c in self._schema.columns],
            schema=self._payload_schema,
        )

    def _align(self, tables: list[pa.Table], positions: list[int], n: int) -> pa.Table:
        """Decoded groups back in batch order; records that failed get null rows."""
        if not tables:
            return self._payload_schema.empty_table().take(pa.nulls(n, pa.int64()))
        decoded = pa.concat_tables(tables)
        if len(positions) == n and positions == sorted(positions):
            return decoded  # every record decoded, in order: nothing to move
        where = np.full(n, -1, dtype=np.int64)
        where[positions] = np.arange(len(positions))
        return decoded.take(pa.array(where, pa.int64(), mask=where < 0))


def _without_credentials(url: str) -> str:
    """The registry URL for messages: `https://user:secret@host` loses its user part."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))


def _read_one(writer: Any, reader: Any, body: bytes) -> dict[str, Any]:
    """One body, which must be exactly one record (trailing bytes mean a corrupt value)."""
    stream = io.BytesIO(body)
    row = fastavro.schemaless_reader(stream, writer, reader)
    if stream.tell() != len(body):
        raise ValueError(f"{len(body) - stream.tell()} bytes left after the record")
    return row  # type: ignore[return-value]


def _about(writer: _Writer, exc: BaseException) -> str:
    source = "reader schema" if writer.schema_id is None else f"schema id {writer.schema_id}"
    return f"{source}: {type(exc).__name__}: {exc}"[:1000]
