"""Where a lakeport JSON run spends its time, by phase, without a profiler's overhead.

    python -m benchmarks.phases --bootstrap HOST:PORT --topic TOPIC --events N

Wraps (in this process only) the consumer's `consume`, the reader's Arrow build
(`pa.array` / `pa.Table.from_arrays` in `connectors.reader`), the decoder, the dead-letter
write, `DeltaStore.commit` and `read_ledger`, then runs one cold `run_forward` on a fresh
table. The topic must already hold the events (e.g. produced by `benchmarks.ingest`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.ingest import STREAM, write_config

SPENT: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, adding its wall time to SPENT[name]."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[name] += time.perf_counter() - began
            CALLS[name] += 1

    return wrapper


_gc_began: list[float] = []


def _gc_callback(phase: str, info: dict[str, Any]) -> None:
    """Adds the wall time of every garbage collection to SPENT["python: GC"]."""
    if phase == "start":
        _gc_began[:] = [time.perf_counter()]
    elif _gc_began:
        SPENT["python: GC (inside the phases above)"] += time.perf_counter() - _gc_began[0]
        CALLS["python: GC (inside the phases above)"] += 1
        if info.get("generation") == 2:
            CALLS["python: full (gen 2) collections"] += 1


def instrument() -> None:
    """Patch lakeport's modules in this process so each phase is timed."""
    import gc

    gc.callbacks.append(_gc_callback)

    from connectors import delta_store, ingest, json_decoder, kafka_client, ledger, reader

    consumer = kafka_client.LakeportConsumer
    consumer.consume = timed("kafka: consume()", consumer.consume)  # type: ignore[method-assign]
    reader._chunk = timed("reader: columns + Arrow per chunk", reader._chunk)
    reader._read_batch = timed("reader: _read_batch total", reader._read_batch)
    ledger.read_ledger = timed("ledger: read_ledger", ledger.read_ledger)
    dec = json_decoder.JsonDecoder
    dec.decode = timed("decode: JsonDecoder.decode", dec.decode)  # type: ignore[method-assign]
    store = delta_store.DeltaStore
    store.commit = timed("delta: commit (rows + ledger)", store.commit)  # type: ignore[method-assign]
    store.replace_window = timed("delta: dead letters", store.replace_window)  # type: ignore[method-assign]
    ingest._commit_batch = timed("commit_batch total", ingest._commit_batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.phases", description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, required=True)
    args = parser.parse_args(argv)

    instrument()
    from connectors.config import load_config
    from connectors.ingest import Stream, run_forward

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
    read_total = SPENT["reader: _read_batch total"]
    loop = read_total - SPENT["kafka: consume()"] - SPENT["reader: Arrow build (pa.array)"]
    rows = [
        ("kafka: consume()", SPENT["kafka: consume()"]),
        ("reader: Python loop over messages", loop),
        ("reader: Arrow build (pa.array)", SPENT["reader: Arrow build (pa.array)"]),
        ("decode: JsonDecoder.decode", SPENT["decode: JsonDecoder.decode"]),
        ("delta: commit (rows + ledger)", SPENT["delta: commit (rows + ledger)"]),
        ("delta: dead letters", SPENT["delta: dead letters"]),
        ("ledger: read_ledger", SPENT["ledger: read_ledger"]),
    ]
    accounted = sum(s for _, s in rows)
    rows.append(("other (plan, consumer open/close, mirror, ...)", total - accounted))
    gc_name = "python: GC (inside the phases above)"
    rows.append((gc_name, SPENT[gc_name]))
    for name, s in rows:
        calls = CALLS.get(name)
        shown = f" ({calls} calls)" if calls else ""
        print(f"  {name:<48} {s:7.2f} s {s / total:6.1%}{shown}")
    print(f"  full (gen 2) collections: {CALLS['python: full (gen 2) collections']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
