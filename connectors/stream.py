"""A configured stream, resolved: its connection, schema, tables and decoder in one value.

Everything that works on a stream (a run, a backfill, `status`, `audit`, re-drive, the
connection check, Dagster's resource) starts from a `Stream`; none of them needs the others.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.config import ConnectionConfig, LakeportConfig, StreamConfig
from connectors.decoders import Decoder, decoder_for
from connectors.delta_store import DeltaStore
from connectors.reader import ReadLimits
from connectors.table_schema import DEAD_LETTER_SCHEMA, StreamSchema, load_schema
from connectors.writer import TableWriter


@dataclass(frozen=True)
class Stream:
    """One Kafka topic landed in one Delta table, plus its dead-letter table."""

    name: str
    config: StreamConfig
    connection: ConnectionConfig
    schema: StreamSchema
    table: DeltaStore
    dead_letters: DeltaStore

    @classmethod
    def from_config(cls, config: LakeportConfig, name: str) -> Stream:
        stream = config.stream(name)
        schema = load_schema(config.schema_path(stream))
        options = config.storage_options()
        return cls(
            name=name,
            config=stream,
            connection=config.connections[stream.connection],
            schema=schema,
            table=DeltaStore(config.table_uri(stream), schema.arrow, options),
            dead_letters=DeltaStore(config.dead_letter_uri(stream), DEAD_LETTER_SCHEMA, options),
        )

    @property
    def topic(self) -> str:
        return self.config.topic

    @property
    def group_id(self) -> str:
        return self.config.group_id or f"lakeport.{self.name}"

    def decoder(self) -> Decoder:
        return decoder_for(self.schema, self.config)

    def writer(self) -> TableWriter:
        """The commit path of this stream's tables, on their current snapshot."""
        return TableWriter(self.table, self.topic, self.dead_letters, label=self.name)

    def limits(self) -> ReadLimits:
        return ReadLimits(
            batch_records=self.config.batch_records,
            batch_bytes=self.config.batch_bytes,
            idle_timeout=self.config.idle_timeout_seconds,
        )
