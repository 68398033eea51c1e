"""Where a lakeport JSON run spends its time, by phase, from the run's own report.

    python -m benchmarks.phases --bootstrap HOST:PORT --topic TOPIC --events N

Runs one cold `run_forward` on a fresh table and prints `RunReport.timings`: reading (the
reader thread: `consume` plus building Arrow columns), the main thread waiting for the reader,
decoding and committing (dead letters, rows and ledger), plus Python's garbage collection.
Reading overlaps decoding and committing, so the phases add up to more than the wall time.
The topic must already hold the events (e.g. produced by `benchmarks.ingest`).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.ingest import STREAM, write_config
from connectors import Stream, load_config, run_forward

_gc = {"seconds": 0.0, "full": 0}
_gc_began: list[float] = []


def _gc_callback(phase: str, info: dict[str, Any]) -> None:
    """Adds the wall time of every garbage collection to `_gc`."""
    if phase == "start":
        _gc_began[:] = [time.perf_counter()]
    elif _gc_began:
        _gc["seconds"] += time.perf_counter() - _gc_began[0]
        _gc["full"] += info.get("generation") == 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.phases", description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, required=True)
    args = parser.parse_args(argv)

    gc.callbacks.append(_gc_callback)
    directory = Path(tempfile.mkdtemp(prefix="lakeport-phases-"))
    stream = Stream.from_config(
        load_config(write_config(directory, args.bootstrap, args.topic)), STREAM
    )
    began = time.perf_counter()
    report = run_forward(stream)
    total = time.perf_counter() - began
    assert report.records + report.dead == args.events, report
    print(f"run_forward: {report.records:,} rows + {report.dead:,} dead in {total:.2f} s"
          f" = {args.events / total:,.0f} events/s, {report.commits} commits")  # fmt: skip
    rows = [
        ("read (reader thread: consume + Arrow)", report.timings["read_s"]),
        ("main thread waiting for the reader", report.timings["wait_for_reader_s"]),
        ("decode", report.timings["decode_s"]),
        ("commit (dead letters, rows + ledger)", report.timings["commit_s"]),
        ("python: garbage collection (inside the above)", _gc["seconds"]),
    ]
    for name, seconds in rows:
        print(f"  {name:<48} {seconds:7.2f} s {seconds / total:6.1%}")
    print(f"  full (gen 2) collections: {_gc['full']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
