"""The demo's Dagster step: materialize the current window of every stream, in process.

Run by `make demo` after the local broker is up and sample events are produced; the same
definitions are what `dagster dev -w workspace.yaml` shows.
"""

import sys
from datetime import UTC, datetime

from dagster import (
    AssetsDefinition,
    DagsterInstance,
    TimeWindowPartitionsDefinition,
    materialize,
)

from pipelines.code_location import defs


def main() -> int:
    """Materialize every stream asset for the window containing now (forward ingestion)."""
    instance = DagsterInstance.get()
    ok = True
    for assets_def in defs.assets or []:
        assert isinstance(assets_def, AssetsDefinition)
        assert isinstance(assets_def.partitions_def, TimeWindowPartitionsDefinition)
        key = assets_def.key
        partition = assets_def.partitions_def.get_partition_key_for_timestamp(
            datetime.now(UTC).timestamp()
        )
        result = materialize(
            [assets_def],
            resources=defs.resources,
            partition_key=partition,
            instance=instance,
        )
        for event in result.get_asset_materialization_events():
            meta = event.materialization.metadata
            print(
                f"{key.to_user_string()} [{partition}]: {meta['records'].value} records,"
                f" {meta['dead_letters'].value} dead letters in {meta['duration_s'].value} s"
                f" ({meta['events_per_s'].value} events/s), Delta version"
                f" {meta['delta_version'].value}"
            )
        ok &= result.success
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
