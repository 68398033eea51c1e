"""Decoders: a raw micro-batch in, table rows and dead letters out; one module per value format.

A stream's `format:` names its decoder here. A new format is one module with a class that is
built from (schema, stream config) and decodes a whole micro-batch (`decoders.base.Decoder`),
plus its line in `DECODERS`.
"""

from connectors.config import StreamConfig
from connectors.decoders.base import Decoded, Decoder, DecoderFactory, per_partition
from connectors.decoders.json import JsonDecoder
from connectors.table_schema import StreamSchema


def _avro(schema: StreamSchema, config: StreamConfig) -> Decoder:
    # Imported on first use: the schema registry client, fastavro and Polars take ~0.3 s to
    # load, which JSON streams (and every CLI call) need not pay.
    from connectors.decoders.avro import AvroDecoder

    return AvroDecoder(schema, config)


DECODERS: dict[str, DecoderFactory] = {"json": JsonDecoder, "avro": _avro}

__all__ = ["DECODERS", "Decoded", "Decoder", "decoder_for", "per_partition"]


def decoder_for(schema: StreamSchema, config: StreamConfig) -> Decoder:
    """The decoder of the stream's format."""
    return DECODERS[config.format](schema, config)
