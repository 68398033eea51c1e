"""The declarative configuration: one YAML file lists connections, the lakehouse and streams.

Validated on load so that a typo fails before any broker is contacted, with an error that
names the offending key. `${VAR}` and `${VAR:-default}` are interpolated from the
environment, so secrets never have to live in the file.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import duckdb
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from connectors.errors import ConfigError, SchemaError
from connectors.table_schema import KAFKA_FIELDS, load_schema

DEFAULT_CONFIG = "lakeport.yaml"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME = r"^[A-Za-z][A-Za-z0-9_]*$"
# Names of settings that hold credentials (sasl_password, aws_secret_access_key, account_key...).
_SECRET_WORDS = ("password", "secret", "token", "key")
log = logging.getLogger("lakeport")

_TLS_SWITCH = (
    "TLS verification can only be switched off with insecure_skip_tls_verification: true"
    " (which warns on every connection)"
)
_RANGE_READ = (
    "lakeport's range consumer sets it itself: reading exact offset ranges exactly once needs"
    " its value"
)
# librdkafka settings a connection's `options` may not set: the typed keys set them (so TLS
# cannot be switched off, nor the declared security_protocol downgraded, without a trace) or
# exactly-once range reading depends on them.
_RESERVED_OPTIONS: dict[str, str] = {
    "bootstrap.servers": "set bootstrap_servers",
    "metadata.broker.list": "set bootstrap_servers",
    "security.protocol": "set security_protocol",
    "sasl.mechanism": "set sasl_mechanism",
    "sasl.mechanisms": "set sasl_mechanism",
    "sasl.username": "set sasl_username",
    "ssl.ca.location": "set ssl_ca_location",
    "enable.ssl.certificate.verification": _TLS_SWITCH,
    "ssl.endpoint.identification.algorithm": _TLS_SWITCH,
    "group.id": "set the stream's group_id",
    "enable.auto.commit": _RANGE_READ,
    "enable.auto.offset.store": _RANGE_READ,
    "auto.offset.reset": _RANGE_READ,
    "isolation.level": _RANGE_READ,
    "enable.partition.eof": _RANGE_READ,
}


def _scalar_text(value: Any) -> Any:
    """YAML scalars as the strings librdkafka and object stores expect (`true`, `200`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


Setting = Annotated[str, BeforeValidator(_scalar_text)]
SecretSetting = Annotated[SecretStr, BeforeValidator(_scalar_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConnectionConfig(_Strict):
    """How to reach one Kafka cluster, e.g. Upvest's SASL_SSL endpoint."""

    bootstrap_servers: str = Field(min_length=1)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    insecure_skip_tls_verification: bool = False
    options: dict[str, Setting] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sasl_is_complete(self) -> ConnectionConfig:
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism is None:
                raise ValueError("sasl_mechanism is required for a SASL security_protocol")
            if self.sasl_mechanism != "OAUTHBEARER" and not (
                self.sasl_username and self.sasl_password
            ):
                raise ValueError("sasl_username and sasl_password are required for SASL")
        for key in self.options:
            if "password" in key or "secret" in key:
                raise ValueError(f"options.{key}: put secrets in sasl_password, not in options")
            if key in _RESERVED_OPTIONS:
                raise ValueError(f"options.{key}: not allowed in options; {_RESERVED_OPTIONS[key]}")
        return self


class LakehouseConfig(_Strict):
    """Where tables live: a local folder or an object-store URI, with its storage options."""

    root: str = "./lakehouse"
    storage_options: dict[str, SecretSetting] = Field(default_factory=dict)


class DerivedConfig(_Strict):
    """A table derived from a stream's raw table (see `connectors.derived`).

    `events`: the raw rows matching `where`, one row per distinct event (`event_id`), with the
    columns of `schema_file` read from the JSON in `json_column`. `latest-state`: the same
    rows reduced to one per `key`, the newest by `order_by` (then partition and offset).
    """

    kind: Literal["events", "latest-state"]
    where: str = Field(min_length=1)
    schema_file: str = Field(min_length=1)
    json_column: str = "object"
    event_id: str = "id"
    event_columns: list[str] = Field(default_factory=lambda: ["id", "type", "created_at"])
    key: list[str] = Field(default_factory=list)
    order_by: list[str] = Field(default_factory=list)
    cluster_by: str | None = None
    batch_records: int = Field(default=200_000, gt=0)
    description: str | None = None
    owners: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _kind_fits(self) -> DerivedConfig:
        if self.kind == "latest-state" and not self.key:
            raise ValueError("key: a latest-state table needs the columns that identify an entity")
        if self.kind == "events" and (self.key or self.order_by):
            raise ValueError(
                "key/order_by: an events table has one row per event_id; use kind: latest-state"
                " for one row per entity"
            )
        if self.event_id not in self.event_columns:
            raise ValueError(f"event_columns: must include event_id ({self.event_id!r})")
        return self


class StreamConfig(_Strict):
    """One Kafka topic landed in one Delta table (plus its dead-letter table)."""

    connection: str
    topic: str = Field(min_length=1)
    table: Annotated[str, Field(pattern=_NAME)]
    format: Literal["json", "avro"] = "json"
    schema_file: str = Field(min_length=1)
    avro_framing: Literal["confluent", "schemaless"] = "confluent"
    schema_registry_url: str | None = None
    group_id: str | None = None
    on_retention_loss: Literal["fail", "record-and-continue"] = "fail"
    on_decode_error: Literal["dead-letter", "fail"] = "dead-letter"
    workers: int = Field(default=1, ge=1, le=64)
    """Dagster runs the stream's ingestion as this many steps, one shard of partitions each."""
    # A micro-batch is one commit; its size bounds memory. At 25,000 Upvest events (~15 MB of
    # values) a run peaks near 600 MiB at ~8 % less throughput than at 50,000 (~750 MiB).
    batch_records: int = Field(default=25_000, gt=0)
    batch_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    max_records_per_run: int | None = Field(default=None, gt=0)
    max_seconds_per_run: float | None = Field(default=None, gt=0)
    idle_timeout_seconds: float = Field(default=30.0, gt=0)
    replan_timeout_seconds: float = Field(default=300.0, gt=0)
    time_partitions: Literal["hourly", "daily"] = "hourly"
    time_partitions_start: str | None = None  # ISO date or time; default: the first record
    schedule: str = "*/5 * * * *"
    max_lag_records: int = Field(default=100_000, ge=0)
    freshness_minutes: float = Field(default=30, gt=0)
    description: str | None = None
    owners: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    derived: dict[Annotated[str, Field(pattern=_NAME)], DerivedConfig] = Field(default_factory=dict)


class LakeportConfig(_Strict):
    """The whole file."""

    lakehouse: LakehouseConfig = Field(default_factory=LakehouseConfig)
    connections: dict[str, ConnectionConfig]
    streams: dict[Annotated[str, Field(pattern=_NAME)], StreamConfig]
    base_dir: Path = Path(".")

    @model_validator(mode="after")
    def _references_resolve(self) -> LakeportConfig:
        tables: dict[str, str] = {}
        for name, stream in self.streams.items():
            if stream.connection not in self.connections:
                known = ", ".join(sorted(self.connections)) or "none"
                raise ValueError(
                    f"streams.{name}.connection: unknown connection {stream.connection!r}"
                    f" (known: {known})"
                )
            if stream.table in tables:
                raise ValueError(
                    f"streams.{name}.table: table {stream.table!r} is already used by"
                    f" stream {tables[stream.table]!r}"
                )
            tables[stream.table] = name
            if not self.schema_path(stream).is_file():
                raise ValueError(
                    f"streams.{name}.schema_file: {self.schema_path(stream)} does not exist"
                )
        taken = {*tables, *(f"{t}_dead_letters" for t in tables)}
        for name, stream in self.streams.items():
            for table, derived in stream.derived.items():
                where = f"streams.{name}.derived.{table}"
                if table in taken or f"{table}_dead_letters" in taken:
                    raise ValueError(f"{where}: table name {table!r} is already used")
                taken |= {table, f"{table}_dead_letters"}
                check_derived(where, self.schema_path(stream), self.schema_path(derived), derived)
        return self

    def stream(self, name: str) -> StreamConfig:
        """The named stream, or an error listing the configured ones."""
        try:
            return self.streams[name]
        except KeyError:
            raise ConfigError(
                f"unknown stream {name!r}; configured streams: {', '.join(sorted(self.streams))}"
            ) from None

    def schema_path(self, stream: StreamConfig | DerivedConfig) -> Path:
        """Schema files are looked up relative to the config file's `schemas/` folder."""
        path = Path(stream.schema_file)
        return path if path.is_absolute() else self.base_dir / "schemas" / path

    def table_uri(self, stream: StreamConfig | str) -> str:
        """Where a stream's table (or the table named so, e.g. a derived one) lives."""
        name = stream if isinstance(stream, str) else stream.table
        return _join_uri(self.lakehouse.root, name, self.base_dir)

    def dead_letter_uri(self, stream: StreamConfig) -> str:
        return _join_uri(self.lakehouse.root, f"{stream.table}_dead_letters", self.base_dir)

    def storage_options(self) -> dict[str, str]:
        return {k: v.get_secret_value() for k, v in self.lakehouse.storage_options.items()}


def check_derived(where: str, raw_schema: Path, schema: Path, derived: DerivedConfig) -> None:
    """The columns a derived table names exist, with the types they need (errors name the key)."""
    if not schema.is_file():
        raise ValueError(f"{where}.schema_file: {schema} does not exist")
    try:
        raw, own = load_schema(raw_schema), load_schema(schema)
    except SchemaError as exc:
        raise ValueError(str(exc)) from None
    raw_columns = {c.name: c for c in raw.columns}
    try:
        con = duckdb.connect()
        con.register("raw", raw.arrow.empty_table())
        con.execute(f"SELECT count(*) FROM raw WHERE ({derived.where})")
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(
            f"{where}.where: not a condition over the stream's columns: {first}"
        ) from None
    for key, names in (
        ("json_column", [derived.json_column]),
        ("event_columns", derived.event_columns),
    ):
        unknown = [n for n in names if n not in raw_columns]
        if unknown:
            raise ValueError(
                f"{where}.{key}: {unknown} not among the stream's columns ({', '.join(raw_columns)})"
            )
    required = {c.name for c in own.columns if c.required} | {
        f"event_{n}" for n in derived.event_columns if raw_columns[n].required
    }
    events = {f"event_{n}" for n in derived.event_columns}
    columns = {c.name for c in own.columns} | events
    clash = columns.intersection(f.name for f in KAFKA_FIELDS) | events.intersection(
        c.name for c in own.columns
    )
    if clash:
        raise ValueError(
            f"{where}.schema_file: columns {sorted(clash)} clash with the Kafka or event columns"
        )
    columns |= {f.name for f in KAFKA_FIELDS}
    for key, names in (
        ("key", derived.key),
        ("order_by", derived.order_by),
        ("cluster_by", [derived.cluster_by] if derived.cluster_by else []),
    ):
        unknown = [n for n in names if n not in columns]
        if unknown:
            raise ValueError(f"{where}.{key}: unknown columns {unknown} (known: {sorted(columns)})")
    for key, names in (
        ("key", derived.key),
        ("cluster_by", [derived.cluster_by] if derived.cluster_by else []),
        ("event_id", [f"event_{derived.event_id}"]),
    ):
        optional = [n for n in names if n not in required]
        if optional:
            raise ValueError(
                f"{where}.{key}: columns {optional} must be required (not nullable) in the"
                " schema: a row without them could not be placed"
            )


def _join_uri(root: str, name: str, base_dir: Path) -> str:
    if "://" in root:
        return f"{root.rstrip('/')}/{name}"
    path = Path(root)
    return str((path if path.is_absolute() else base_dir / path).resolve() / name)


def interpolate_env(value: Any, env: dict[str, str], where: str = "") -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string of a parsed YAML document."""
    if isinstance(value, dict):
        return {k: interpolate_env(v, env, f"{where}{k}.") for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_env(v, env, f"{where}{i}.") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{where.rstrip('.')}: environment variable {name} is not set")

    return _ENV_REF.sub(substitute, value)


def config_path(explicit: str | Path | None = None) -> Path:
    """`--config`, then `LAKEPORT_CONFIG`, then `lakeport.yaml` in the working directory."""
    return Path(explicit or os.environ.get("LAKEPORT_CONFIG") or DEFAULT_CONFIG)


def load_config(
    path: str | Path | None = None, env: dict[str, str] | None = None
) -> LakeportConfig:
    """Read, interpolate and validate the configuration file."""
    file = config_path(path)
    try:
        raw = yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{file}: configuration file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML{_yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a mapping at the top level")
    _warn_literal_secrets(file, raw)
    data = interpolate_env(raw, dict(os.environ) if env is None else env)
    data["base_dir"] = file.resolve().parent
    try:
        return LakeportConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{file}: " + "; ".join(_describe(e) for e in exc.errors())) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what, without the offending line: that line may hold a password."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return ""
    mark = exc.problem_mark
    context = f" ({exc.context})" if exc.context else ""
    return f" at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}{context}"


def _warn_literal_secrets(file: Path, raw: dict[str, Any]) -> None:
    """A password or storage key written into the file (not a `${VAR}`) deserves a warning."""
    places: list[tuple[str, Any]] = []
    connections = raw.get("connections")
    if isinstance(connections, dict):
        places += [
            (f"connections.{name}.sasl_password", conn.get("sasl_password"))
            for name, conn in connections.items()
            if isinstance(conn, dict)
        ]
    lakehouse = raw.get("lakehouse")
    options = lakehouse.get("storage_options") if isinstance(lakehouse, dict) else None
    if isinstance(options, dict):
        places += [
            (f"lakehouse.storage_options.{key}", value)
            for key, value in options.items()
            if any(word in str(key).lower() for word in _SECRET_WORDS)
        ]
    for where, value in places:
        if isinstance(value, str) and value and not _ENV_REF.search(value):
            log.warning(
                "%s: %s is written in the file in clear text: anyone who can read the file"
                " can use it; write ${VARIABLE} there and set the variable in the environment",
                file,
                where,
            )


def _describe(error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    return f"{key}: {message}" if key else message
