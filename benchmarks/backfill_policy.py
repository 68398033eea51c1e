"""Why stream assets back-fill as one run per range: a measured comparison.

    python -m benchmarks.backfill_policy --bootstrap 127.0.0.1:19092 --hours 6

Produces `--hours` hours of sample Upvest events (about 6,000 per hour) once, then back-fills
the same hourly partitions into fresh tables two ways, in process with `dagster.materialize`:
one run for the whole range (`BackfillPolicy.single_run()`, what lakeport declares) and one
run per partition (what a multi-run policy would launch), and prints time and Delta commits.
"""

import argparse
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from dagster import AssetsDefinition, materialize
from deltalake import DeltaTable

from benchmarks.ingest import create_topic, write_config
from dev.sample_events import DEFAULT_START, notification_events, produce_sample
from pipelines.definitions import build_definitions

EVENTS_PER_HOUR = 6_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--hours", type=int, default=6)
    args = parser.parse_args()

    topic = f"backfill-{uuid.uuid4().hex[:8]}"
    create_topic(args.bootstrap, topic)
    produce_sample(
        {"bootstrap.servers": args.bootstrap},
        topic,
        notification_events(EVENTS_PER_HOUR * (args.hours + 1)),
    )
    keys = [
        (DEFAULT_START + timedelta(hours=h)).strftime("%Y-%m-%d-%H:00") for h in range(args.hours)
    ]

    results = {}
    for policy in ("single run per range", "one run per partition"):
        with tempfile.TemporaryDirectory() as tmp:
            path = write_config(Path(tmp), args.bootstrap, topic)
            hourly = '    time_partitions: "hourly"\n    time_partitions_start: "2026-01-05"\n'
            path.write_text(path.read_text() + hourly)
            defs = build_definitions(path)
            asset = next(iter(defs.assets or []))
            assert isinstance(asset, AssetsDefinition)
            began = time.perf_counter()
            if policy.startswith("single"):
                tags = {
                    "dagster/asset_partition_range_start": keys[0],
                    "dagster/asset_partition_range_end": keys[-1],
                }
                assert materialize([asset], resources=defs.resources, tags=tags).success
            else:
                for key in keys:
                    assert materialize([asset], resources=defs.resources, partition_key=key).success
            seconds = time.perf_counter() - began
            table = DeltaTable(str(Path(tmp) / "lakehouse" / "events"))
            results[policy] = (seconds, table.version(), table.count())

    print(f"back-fill of {args.hours} hourly partitions ({EVENTS_PER_HOUR:,} events per hour)")
    for policy, (seconds, version, rows) in results.items():
        print(f"  {policy:24s} {seconds:6.1f} s  {version:4d} Delta versions  {rows:,} rows")


if __name__ == "__main__":
    main()
