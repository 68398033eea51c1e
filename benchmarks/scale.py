"""Scale-out: one stream's backlog over 1, 2 and 3 workers, and what limits one table's commits.

    python -m benchmarks.scale [--events 1000000] [--workers 1,2,3] [--s3]

Workers are shards of the topic's partitions (round-robin over the 6), each its own process
running `run_forward(partitions=shard)` into the same table, released at once, as Dagster's
multiprocess executor (or one Kubernetes pod per step) runs them. Printed side by side:
events/s, speed-up over one worker, commits, and the races the writers lost in the Delta log
and resolved by rebasing (`conflicts`) or by re-planning (`replans`).

The commit-rate part commits one-row micro-batches through `TableWriter` for `--seconds`, with
1 and 3 writers on disjoint partitions: the ceiling of one table's log on local disk, and with
`--s3` on an S3 endpoint (moto's server, conditional PUT as delta-rs commits on S3).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.ingest import PARTITIONS, SEED, STREAM, produce_json, write_config

S3_OPTIONS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",
}


def shards(workers: int) -> list[list[int]]:
    """The topic's partitions dealt round-robin to `workers` shards."""
    return [list(range(PARTITIONS))[i::workers] for i in range(workers)]


def _shard_run(config: str, partitions: list[int], go: Any, out: Any) -> None:
    """One worker: wait for the start signal, land its partitions, report."""
    from connectors import Stream, load_config, run_forward

    stream = Stream.from_config(load_config(config), STREAM)
    go.wait()
    report = run_forward(stream, partitions=partitions)
    out.put(
        {
            "partitions": partitions,
            "records": report.records,
            "commits": report.commits,
            "conflicts": report.conflicts,
            "replans": report.replans,
            "seconds": report.seconds,
        }
    )


def run_workers(bootstrap: str, topic: str, workers: int, directory: Path) -> dict[str, Any]:
    """Land the whole topic with `workers` shard processes at once; their summary."""
    config = str(write_config(directory, bootstrap, topic))
    context = multiprocessing.get_context("spawn")
    go, out = context.Event(), context.Queue()
    procs = [context.Process(target=_shard_run, args=(config, s, go, out)) for s in shards(workers)]
    for proc in procs:
        proc.start()
    time.sleep(3)  # every worker is past its imports
    began = time.perf_counter()
    go.set()
    reports = [out.get(timeout=1800) for _ in procs]
    seconds = time.perf_counter() - began
    for proc in procs:
        proc.join()
    return {
        "workers": workers,
        "seconds": seconds,
        "records": sum(r["records"] for r in reports),
        "commits": sum(r["commits"] for r in reports),
        "conflicts": sum(r["conflicts"] for r in reports),
        "replans": sum(r["replans"] for r in reports),
    }


def _commit_loop(
    uri: str, options: dict[str, str], partitions: list[int], seconds: float, go: Any, out: Any
) -> None:
    """Commit one-row micro-batches of `partitions` until `seconds` pass; count them."""
    import pyarrow as pa

    from connectors import DeltaStore, OffsetRange, TableWriter, append_rows

    schema = pa.schema([("kafka_partition", pa.int32()), ("kafka_offset", pa.int64())])
    writer = TableWriter(DeltaStore(uri, schema, options), "commit-rate")
    next_offset = dict.fromkeys(partitions, 0)
    go.wait()
    began, made = time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        p = partitions[made % len(partitions)]
        o = next_offset[p]
        next_offset[p] += 1
        update = writer.update()
        update.add(OffsetRange(p, o, o + 1), 1)
        row = pa.table({"kafka_partition": pa.array([p], pa.int32()), "kafka_offset": [o]})
        writer.commit(update, append_rows(row), "forward")
        made += 1
    out.put(
        {"commits": made, "conflicts": writer.conflicts, "seconds": time.perf_counter() - began}
    )


def commit_rate(uri: str, options: dict[str, str], writers: int, seconds: float) -> dict[str, Any]:
    """Commits per second on one table with `writers` writers of disjoint partitions."""
    context = multiprocessing.get_context("spawn")
    go, out = context.Event(), context.Queue()
    procs = [
        context.Process(
            target=_commit_loop, args=(f"{uri}-{writers}", options, s, seconds, go, out)
        )
        for s in shards(writers)
    ]
    for proc in procs:
        proc.start()
    time.sleep(3)
    go.set()
    reports = [out.get(timeout=seconds + 600) for _ in procs]
    for proc in procs:
        proc.join()
    commits = sum(r["commits"] for r in reports)
    return {
        "writers": writers,
        "commits": commits,
        "per_second": commits / max(r["seconds"] for r in reports),
        "conflicts": sum(r["conflicts"] for r in reports),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _moto() -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """A moto S3 server on a free port with a bucket `bench`; its storage options."""
    import urllib.request

    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(urllib.request.Request(f"{endpoint}/bench", method="PUT"))
            break
        except OSError:
            time.sleep(0.1)
    return server, {**S3_OPTIONS, "AWS_ENDPOINT_URL": endpoint}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workers", default="1,2,3")
    parser.add_argument("--seconds", type=float, default=20.0, help="of each commit-rate run")
    parser.add_argument("--s3", action="store_true", help="also measure commits on S3 (moto)")
    args = parser.parse_args(argv)

    broker = None
    with tempfile.TemporaryDirectory(prefix="lakeport-scale-") as tmp:
        workdir = Path(tmp)
        if not args.bootstrap:
            from dev.local_broker import LocalBroker

            broker = LocalBroker(home=workdir / "broker")
            broker.start()
            args.bootstrap = broker.bootstrap_servers
        try:
            topic = f"scale-{uuid.uuid4().hex[:8]}"
            print(f"producing {args.events:,} events ...", flush=True)
            produce_json(args.bootstrap, topic, args.events, SEED)
            results = []
            for workers in (int(w) for w in args.workers.split(",")):
                print(f"{workers} worker(s) ...", flush=True)
                results.append(run_workers(args.bootstrap, topic, workers, workdir / f"w{workers}"))
            rates = [
                ("local disk", commit_rate(str(workdir / "rate"), {}, w, args.seconds))
                for w in (1, 3)
            ]
            if args.s3:
                server, options = _moto()
                try:
                    rates += [
                        ("S3 (moto)", commit_rate("s3://bench/rate", options, w, args.seconds))
                        for w in (1, 3)
                    ]
                finally:
                    server.terminate()
        finally:
            if broker is not None:
                broker.stop()
    one = results[0]["records"] / results[0]["seconds"]
    print(
        f"\nmachine: {os.cpu_count()} cores; {args.events:,} events, 6 partitions, default settings"
    )
    print(
        f"{'workers':>7} {'events/s':>10} {'speed-up':>9} {'commits':>8} {'conflicts':>10} {'replans':>8}"
    )
    for r in results:
        eps = r["records"] / r["seconds"]
        print(
            f"{r['workers']:>7} {eps:>10,.0f} {eps / one:>8.2f}x {r['commits']:>8} {r['conflicts']:>10} {r['replans']:>8}"
        )
    print(f"\none-row commits for {args.seconds:.0f} s per run:")
    for storage, r in rates:
        print(
            f"  {storage:<10} {r['writers']} writer(s): {r['per_second']:,.1f} commits/s, {r['conflicts']} conflicts resolved"
        )
    print(json.dumps({"workers": results, "commit_rate": [{"storage": s, **r} for s, r in rates]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
