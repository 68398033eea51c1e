"""Peak memory and speed of one lakeport run over a large backlog, per micro-batch size.

    python -m benchmarks.backlog --bootstrap 127.0.0.1:19092 --events 5000000 --batch-records 50000

Produces `--events` sample notifications to a new topic (unless `--topic` names an existing
one), then lands them with one `run_forward` into a fresh table and prints events/s and the
process's peak RSS: memory must stay bounded by the micro-batch size, not by the backlog.
"""

import argparse
import multiprocessing
import resource
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.ingest import create_topic, write_config
from connectors import Stream, run_forward
from connectors.config import load_config
from dev.sample_events import notification_events, produce_sample


def _produce(bootstrap: str, topic: str, events: int) -> None:
    produce_sample({"bootstrap.servers": bootstrap}, topic, notification_events(events))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic")
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--batch-records", type=int, default=50_000)
    args = parser.parse_args()

    topic = args.topic
    if topic is None:
        topic = f"backlog-{uuid.uuid4().hex[:8]}"
        create_topic(args.bootstrap, topic)
        # In a child process, so the producer's buffers do not count in this one's peak RSS.
        child = multiprocessing.get_context("spawn").Process(
            target=_produce, args=(args.bootstrap, topic, args.events)
        )
        child.start()
        child.join()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_config(Path(tmp), args.bootstrap, topic)
        path.write_text(path.read_text() + f"    batch_records: {args.batch_records}\n")
        stream = Stream.from_config(load_config(path), "events")
        began = time.perf_counter()
        report = run_forward(stream)
        seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{report.records:,} events, batch_records {args.batch_records:,}: {report.records / seconds:,.0f}"
        f" events/s, {report.commits} commits, peak RSS {peak:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
