"""One stream spread over shards of Kafka partitions, each a writer of its own on one table.

The ledger fences each partition, so writers of disjoint partitions never invalidate each
other's plans: a commit that loses a race in the Delta log to another shard is rebased and
retried (`RunReport.conflicts`), never re-planned or failed. Small micro-batches give every
shard many commits, so the races really happen.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from connectors import LakeportConfig, OffsetRange, Stream, client_settings, run_forward
from dev.sample_events import Awkward, notification_events, produce_sample
from tests.helpers import (
    assert_consistent,
    config_file,
    covered,
    ensure_topic,
    lakeport_cli,
    ledger,
    produce,
    start_runner,
)

SHARDS = ([0, 1], [2, 3], [4, 5])
REPORT = """
import json
def show(report):
    print("REPORT", json.dumps({"records": report.records, "dead": report.dead,
          "commits": report.commits, "replans": report.replans, "conflicts": report.conflicts,
          "partitions": sorted({r.partition for r in report.ranges})}))
"""


def _stream(make_config: Callable[..., LakeportConfig], **keys: object) -> Stream:
    return Stream.from_config(make_config(batch_records=150, **keys), "events")


def _produce_awkward(stream: Stream, count: int, rate: float) -> dict[int, int]:
    """Sample notifications with `rate` of every awkward case (a few percent dead letters)."""
    ensure_topic(stream)
    report = produce_sample(
        client_settings(stream.connection),
        stream.topic,
        notification_events(count, seed=5, awkward=Awkward.all(rate)),
    )
    return report.per_partition


def _start(stream: Stream, body: str) -> subprocess.Popen[str]:
    go = config_file(stream).with_name("go")
    wait = f"""
import time
while not os.path.exists({str(go)!r}):
    time.sleep(0.01)
"""
    return start_runner(config_file(stream), REPORT + wait + body)


def _together(stream: Stream, *bodies: str) -> list[tuple[int, dict | None, str]]:
    """Start every body in its own process, release them at once; (code, report, stderr)."""
    procs = [_start(stream, body) for body in bodies]
    config_file(stream).with_name("go").touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        lines = [json.loads(x[7:]) for x in out.splitlines() if x.startswith("REPORT ")]
        results.append((proc.returncode, lines[0] if lines else None, err))
    return results


def _group_offsets(stream: Stream) -> dict[int, int]:
    consumer = Consumer({**client_settings(stream.connection), "group.id": stream.group_id})
    try:
        found = consumer.committed([TopicPartition(stream.topic, p) for p in range(6)], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def test_a_shard_reads_commits_and_mirrors_only_its_partitions(make_config) -> None:
    stream = _stream(make_config)
    per = produce(stream, 1200, seed=1)

    report = run_forward(stream, partitions=[1, 4])

    assert {r.partition for r in report.ranges} == {1, 4}
    assert report.records == per[1] + per[4]
    assert covered(stream) == {1: [(0, per[1])], 4: [(0, per[4])]}
    assert set(report.lag) == {1, 4}
    offsets = _group_offsets(stream)
    assert {p: o for p, o in offsets.items() if o >= 0} == {1: per[1], 4: per[4]}
    assert_consistent(stream, complete=False)

    rest = run_forward(stream, partitions=[0, 2, 3, 5])
    assert rest.records == 1200 - report.records
    assert_consistent(stream)


def test_three_shards_at_once_with_dead_letters_land_every_offset_once_and_none_fails(
    make_config,
) -> None:
    stream = _stream(make_config)
    per = _produce_awkward(stream, 4500, rate=0.005)  # ~4 % of records are undecodable

    results = _together(stream, *(f"show(run_forward(stream, partitions={s}))" for s in SHARDS))

    assert [code for code, _, _ in results] == [0, 0, 0], [err[-2000:] for *_, err in results]
    reports = [report for _, report, _ in results]
    assert [r["partitions"] for r in reports] == [list(s) for s in SHARDS]
    assert all(r["replans"] == 0 for r in reports)  # a lost race on others' partitions: rebase
    assert sum(r["records"] + r["dead"] for r in reports) == 4500
    assert sum(r["dead"] for r in reports) > 0
    print("conflicts resolved by rebase/retry:", [r["conflicts"] for r in reports])
    assert_consistent(stream)
    assert covered(stream) == {p: [(0, n)] for p, n in per.items()}
    assert sum(p.dead for p in ledger(stream).partitions.values()) == sum(
        r["dead"] for r in reports
    )


def test_a_shard_killed_mid_run_is_completed_by_its_rerun(make_config) -> None:
    stream = _stream(make_config)
    per = produce(stream, 3600, seed=2)
    killed = """
from connectors import writer
on_call(writer, "write_deltalake", 4)  # three micro-batches land, the fourth dies
show(run_forward(stream, partitions=[2, 3]))
"""
    bodies = [f"show(run_forward(stream, partitions={s}))" for s in (SHARDS[0], SHARDS[2])]
    results = _together(stream, bodies[0], killed, bodies[1])

    assert [code for code, _, _ in results] == [0, -9, 0]
    assert_consistent(stream, complete=False)
    assert all(covered(stream)[p] == [(0, per[p])] for p in (0, 1, 4, 5))
    landed = sum(ledger(stream).partition(p).records for p in (2, 3))
    assert 0 < landed < per[2] + per[3]

    rerun = run_forward(stream, partitions=[2, 3])
    assert rerun.records == per[2] + per[3] - landed
    assert_consistent(stream)
    assert covered(stream) == {p: [(0, n)] for p, n in per.items()}


def test_shards_and_a_concurrent_replace_backfill_stay_exact(make_config) -> None:
    stream = _stream(make_config)
    first = produce(stream, 1800, seed=3)
    run_forward(stream)
    more = produce(stream, 1800, seed=4)
    window = [OffsetRange(p, 0, n) for p, n in first.items()]

    results = _together(
        stream,
        *(f"show(run_forward(stream, partitions={s}))" for s in SHARDS),
        f"show(run_window(stream, {window!r}, 'replace'))",
    )

    assert [code for code, _, _ in results] == [0, 0, 0, 0], [e[-2000:] for *_, e in results]
    assert_consistent(stream)
    assert covered(stream) == {p: [(0, first[p] + more.get(p, 0))] for p in first}


def test_ingest_of_a_partition_the_topic_does_not_have_is_one_line(make_config) -> None:
    stream = _stream(make_config)
    produce(stream, 60, seed=1)

    proc = lakeport_cli(config_file(stream), "ingest", "--stream", "events", "--partition", "9")

    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"lakeport: error: topic {stream.topic!r} has no partition 9 (it has partitions 0..5):"
        " check --partition"
    )


def test_cli_shards_by_index_and_count_cover_every_partition_once(make_config) -> None:
    stream = _stream(make_config)
    per = produce(stream, 1200, seed=6)

    lines = []
    for shard in ("0/3", "1/3", "2/3"):
        proc = lakeport_cli(config_file(stream), "ingest", "--stream", "events", "--shard", shard)
        assert proc.returncode == 0, proc.stderr
        lines.append(proc.stdout.splitlines()[1])  # "  ranges: p0[0,n) p3[0,m)"

    assert [sorted({int(r[1]) for r in line.split()[1:]}) for line in lines] == [
        [0, 3],
        [1, 4],
        [2, 5],
    ]
    assert_consistent(stream)
    assert covered(stream) == {p: [(0, n)] for p, n in per.items()}


def test_a_shard_index_outside_its_count_is_one_line(make_config) -> None:
    stream = _stream(make_config)

    proc = lakeport_cli(config_file(stream), "ingest", "--stream", "events", "--shard", "3/3")

    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "lakeport: error: shard 3/3: give a shard as INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/3"
    )
