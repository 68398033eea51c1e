"""A run killed with SIGKILL at the worst moments costs work, never a duplicate or a hole.

Each crash runs `run_forward` (or a backfill) in a real subprocess whose engine functions are
wrapped, without changing engine code, so that the process SIGKILLs itself at one point:

(a) after reading a micro-batch, before its Delta write: the k-th call of
    `connectors.writer.write_deltalake` kills the process before it does anything;
(b) after the data files are written, before the commit: delta-rs writes the Parquet files and
    commits in one native call, so the wrapper first writes the batch's rows as Parquet files
    into the table folder itself, exactly where and how delta-rs names them
    (`part-00000-<uuid>-c000.snappy.parquet`), then kills the process: the table folder holds
    data files that no commit references, as after a crash inside the native write;
(c) after the commit, before the consumer-group offsets are mirrored: the first call of
    `connectors.ingest.mirror_group_offsets` kills the process.

Then a normal run (in-process or the `lakeport` CLI) must end with every offset exactly once,
the ledger agreeing with the data and the broker, and `audit(stream).ok`.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from deltalake import DeltaTable

from connectors import Stream, run_forward
from connectors.coverage import audit
from connectors.kafka_client import client_settings
from connectors.ranges import OffsetRange
from tests.helpers import (
    assert_consistent,
    config_file,
    covered,
    data_pairs,
    lakeport_cli,
    ledger,
    produce,
    produce_awkward,
    run_runner,
    store_pairs,
)

KILLED = -signal.SIGKILL

ORPHAN_WRITER = """
import uuid
import pyarrow as pa
import pyarrow.parquet as pq
from connectors import writer

def write_files_only(table, data, **kwargs):
    rows = data if isinstance(data, pa.Table) else pa.table(data)
    path = f"{stream.table.uri}/part-00000-{uuid.uuid4()}-c000.snappy.parquet"
    pq.write_table(rows, path, compression="snappy")
    print("orphan", path, rows.num_rows, flush=True)
"""


def _stream(make_config) -> Stream:
    return Stream.from_config(make_config(batch_records=150), "events")


def _group_offsets(stream: Stream, partitions: list[int]) -> dict[int, int]:
    consumer = Consumer({**client_settings(stream.connection), "group.id": stream.group_id})
    try:
        found = consumer.committed(
            [TopicPartition(stream.topic, p) for p in partitions], timeout=10
        )
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def _parquet_files(stream: Stream) -> set[str]:
    return {f for f in os.listdir(stream.table.uri) if f.endswith(".parquet")}


def test_sigkill_after_reading_before_delta_write_loses_only_that_batch(make_config) -> None:
    stream = _stream(make_config)
    per = produce(stream, 900, seed=1)
    crash = run_runner(
        config_file(stream),
        """
        from connectors import writer
        on_call(writer, "write_deltalake", 3)  # batches 1 and 2 land, batch 3 dies
        run_forward(stream)
        print("survived")
        """,
    )
    assert crash.returncode == KILLED, crash.stderr
    assert "survived" not in crash.stdout

    # exactly two micro-batches landed, each with its ledger update; nothing else
    assert DeltaTable(stream.table.uri).version() == 2
    assert len(data_pairs(stream)) == 300
    assert sum(p.records for p in ledger(stream).partitions.values()) == 300
    assert_consistent(stream, complete=False)

    report = run_forward(stream)
    assert report.records == 600
    assert_consistent(stream)
    assert covered(stream) == {p: [(0, n)] for p, n in per.items()}


def test_sigkill_after_data_files_written_before_commit_leaves_only_orphans(
    make_config,
) -> None:
    stream = _stream(make_config)
    per = produce(stream, 900, seed=1)
    crash = run_runner(
        config_file(stream),
        ORPHAN_WRITER
        + """
on_call(writer, "write_deltalake", 2, before=write_files_only)
run_forward(stream)
print("survived")
""",
    )
    assert crash.returncode == KILLED, crash.stderr
    orphans = [line.split()[1] for line in crash.stdout.splitlines() if line.startswith("orphan")]
    assert len(orphans) == 1 and Path(orphans[0]).is_file()
    assert DeltaTable(stream.table.uri).version() == 1  # the first batch only
    assert len(data_pairs(stream)) == 150
    assert_consistent(stream, complete=False)

    # recover through the CLI, as an operator would
    result = lakeport_cli(config_file(stream), "ingest", "--stream", "events")
    assert result.returncode == 0, result.stderr
    assert_consistent(stream)  # the orphan's rows are not read: no duplicates
    assert covered(stream) == {p: [(0, n)] for p, n in per.items()}
    table = DeltaTable(stream.table.uri)
    referenced = {Path(f).name for f in table.file_uris()}
    assert Path(orphans[0]).name in _parquet_files(stream) - referenced
    audit = lakeport_cli(config_file(stream), "audit", "--stream", "events")
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_sigkill_after_commit_before_group_offsets_are_mirrored(make_config) -> None:
    stream = _stream(make_config)
    per = produce(stream, 900, seed=1)
    crash = run_runner(
        config_file(stream),
        """
        from connectors import ingest
        on_call(ingest, "mirror_group_offsets", 1)
        run_forward(stream)
        print("survived")
        """,
    )
    assert crash.returncode == KILLED, crash.stderr
    # every batch is in the table, the group never heard of it
    assert_consistent(stream)
    assert all(o < 0 for o in _group_offsets(stream, sorted(per)).values())
    version = DeltaTable(stream.table.uri).version()

    report = run_forward(stream)  # the table, not the group, says where to continue
    assert report.records == 0 and report.commits == 0
    assert DeltaTable(stream.table.uri).version() == version
    assert _group_offsets(stream, sorted(per)) == per
    more = produce(stream, 300, seed=2)
    assert run_forward(stream).records == 300
    assert_consistent(stream)
    assert covered(stream) == {p: [(0, n + more.get(p, 0))] for p, n in per.items()}


@pytest.mark.parametrize("point", ["before_write", "files_written"])
def test_sigkill_during_replace_backfill_keeps_the_old_window_intact(make_config, point) -> None:
    stream = _stream(make_config)
    per = produce(stream, 900, seed=1)
    run_forward(stream)
    before = data_pairs(stream)
    before_ledger = ledger(stream).partitions
    window = [OffsetRange(p, 0, n) for p, n in per.items()]
    hook = "" if point == "before_write" else ", before=write_files_only"
    crash = run_runner(
        config_file(stream),
        ORPHAN_WRITER
        + f"""
on_call(writer, "write_deltalake", 1{hook})  # a replace is one staged commit
run_window(stream, {window!r}, "replace")
print("survived")
""",
    )
    assert crash.returncode == KILLED, crash.stderr
    assert data_pairs(stream) == before
    after = ledger(stream).partitions
    assert {p: (x.covered, x.records) for p, x in after.items()} == {
        p: (x.covered, x.records) for p, x in before_ledger.items()
    }
    assert_consistent(stream)

    partitions = [arg for p in sorted(per) for arg in ("--partition", str(p))]
    result = lakeport_cli(
        config_file(stream), "backfill", "--stream", "events", "--mode", "replace",
        *partitions, "--from-offset", "0", "--to-offset", str(max(per.values())),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert data_pairs(stream) == before
    assert_consistent(stream)


def _awkward_stream(make_config) -> tuple[Stream, dict[int, int]]:
    """900 records, 5 % undecodable, so every micro-batch of 150 has dead letters."""
    stream = _stream(make_config)
    return stream, produce_awkward(stream, 900, seed=5, rate=0.05)


def _dead_pairs(stream: Stream) -> set[tuple[int, int]]:
    return set(store_pairs(stream.dead_letters))


def test_sigkill_between_dead_letter_write_and_main_commit_leaves_them_outside_the_ledger(
    make_config,
) -> None:
    stream, per = _awkward_stream(make_config)
    crash = run_runner(
        config_file(stream),
        """
        from connectors import writer
        on_call(writer.TableWriter, "commit", 2)  # batch 2's dead letters are written: die
        run_forward(stream)
        print("survived")
        """,
    )
    assert crash.returncode == KILLED, crash.stderr
    assert DeltaTable(stream.table.uri).version() == 1  # batch 1 only
    led = ledger(stream)
    orphans = {
        (p, o)
        for p, o in _dead_pairs(stream)
        if not led.partition(p).covered.overlaps([(o, o + 1)])
    }
    assert orphans  # batch 2's dead letters landed, its rows and ledger update did not
    assert audit(stream).ok  # the ledger counts only what it covers

    result = lakeport_cli(config_file(stream), "ingest", "--stream", "events")
    assert result.returncode == 0, result.stderr
    assert_consistent(stream)  # re-read batch 2 replaced its dead letters: none twice
    assert covered(stream) == {p: [(0, n)] for p, n in per.items()}
    assert orphans <= _dead_pairs(stream)


def test_sigkill_after_dead_letters_and_main_commit_loses_nothing(make_config) -> None:
    stream, per = _awkward_stream(make_config)
    crash = run_runner(
        config_file(stream),
        """
        from connectors import writer
        real = writer.TableWriter.commit_batch
        on_call(writer.TableWriter, "commit_batch", 2, before=real)  # both written: die
        run_forward(stream)
        print("survived")
        """,
    )
    assert crash.returncode == KILLED, crash.stderr
    assert DeltaTable(stream.table.uri).version() == 2
    assert_consistent(stream, complete=False)
    dead = sum(p.dead for p in ledger(stream).partitions.values())
    assert dead > 0 and dead == len(_dead_pairs(stream))

    result = lakeport_cli(config_file(stream), "ingest", "--stream", "events")
    assert result.returncode == 0, result.stderr
    assert_consistent(stream)
    assert covered(stream) == {p: [(0, n)] for p, n in per.items()}
