"""How a lakeport stream appears in Dagster: the asset spec of its table, overridable.

As with dagster-sling's and dagster-dlt's translators, subclass `LakeportTranslator` and
override `get_asset_spec` (calling `super()` and `.replace_attributes` / `.merge_attributes`)
to change keys, groups, tags, owners, metadata, freshness or the automation condition.
"""

from dataclasses import dataclass
from datetime import timedelta

from dagster import AssetSpec, FreshnessPolicy, MetadataValue, TableColumn, TableSchema

from connectors import StreamConfig, StreamSchema


@dataclass(frozen=True)
class LakeportStreamProps:
    """What the translator knows about one configured stream."""

    name: str
    config: StreamConfig
    schema: StreamSchema
    table_uri: str


def window_length(stream: StreamConfig) -> timedelta:
    return timedelta(hours=1) if stream.time_partitions == "hourly" else timedelta(days=1)


class LakeportTranslator:
    """The default mapping: one asset per stream, keyed by its table name, group `lakeport`."""

    def get_asset_spec(self, props: LakeportStreamProps) -> AssetSpec:
        stream = props.config
        return AssetSpec(
            key=stream.table,
            group_name="lakeport",
            kinds={"kafka", "delta"},
            description=stream.description
            or f"Kafka topic {stream.topic!r} landed as a Delta table.",
            owners=stream.owners,
            tags=stream.tags,
            metadata={
                "dagster/column_schema": TableSchema(
                    columns=[TableColumn(f.name, str(f.type)) for f in props.schema.arrow]
                ),
                "dagster/table_name": stream.table,
                "dagster/uri": MetadataValue.path(props.table_uri),
                "kafka_topic": stream.topic,
                "lakeport_stream": props.name,
            },
            # A window materializes once it is closed and covered: the newest one is at most a
            # window plus the stream's freshness allowance old.
            freshness_policy=FreshnessPolicy.time_window(
                fail_window=window_length(stream) + timedelta(minutes=stream.freshness_minutes)
            ),
        )
