"""The demo's Dagster step: each stream's `<asset>_ingest` job, run on the demo's instance.

Run by `make demo` after the local broker is up and sample events are produced. The job lands
everything new, reports the time windows it completed as partitions of the stream's asset and
evaluates its checks; `make ui` then shows the same runs, partitions and checks in the UI.
"""

import sys

from dagster import AssetCheckEvaluation, DagsterEventType, DagsterInstance

from pipelines.code_location import defs

INFO_ONLY = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def main() -> int:
    """Run every stream's ingestion job and print what it landed, completed and checked."""
    instance = DagsterInstance.get()
    ok = True
    for job in defs.jobs or []:
        if not job.name.endswith("_ingest"):
            continue
        result = defs.resolve_job_def(job.name).execute_in_process(
            instance=instance, run_config=INFO_ONLY
        )
        windows = sorted(
            e.partition or "" for e in result.get_asset_materialization_events() if e.partition
        )
        checks = [
            e.event_specific_data
            for e in result.all_events
            if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
            and isinstance(e.event_specific_data, AssetCheckEvaluation)
        ]
        passed = len([c for c in checks if isinstance(c, AssetCheckEvaluation) and c.passed])
        print(
            f"{job.name} (run {result.run_id[:8]}): {len(windows)} windows complete"
            + (f" ({windows[0]} .. {windows[-1]})" if windows else "")
            + f", checks {passed}/{len(checks)} passed"
        )
        ok &= result.success
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
