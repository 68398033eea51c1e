"""Writers racing on one table, each in its own process: no duplicate, no hole, ledger == data.

Every commit that touches a partition rewrites that partition's ledger `txn` slots, so of two
writers racing on a partition delta-rs lets exactly one commit; the loser gets ConcurrentChange
and re-plans from the new ledger (up to 5 attempts). Small micro-batches (`batch_records=100`)
give each run many commits, so the races really happen.
"""

from __future__ import annotations

import json
import subprocess
import sys

from deltalake import DeltaTable

from connectors import Stream, run_forward
from connectors.ranges import OffsetRange
from tests.helpers import (
    ROOT,
    assert_consistent,
    config_file,
    covered,
    data_pairs,
    ledger,
    produce,
    produce_awkward,
    start_runner,
)

REPORT = """
import json
def show(report):
    print("REPORT", json.dumps({"records": report.records, "commits": report.commits,
          "replans": report.replans, "ranges": [[r.partition, r.start, r.end] for r in report.ranges]}))
"""


def _stream(make_config) -> Stream:
    return Stream.from_config(make_config(batch_records=100), "events")


def _race(stream: Stream, *bodies: str) -> list[tuple[int, dict | None, str]]:
    """Start every body at once in its own process; (exit code, report, stderr) of each."""
    go = config_file(stream).with_name("go")
    wait = f"""
import time
while not os.path.exists({str(go)!r}):
    time.sleep(0.01)
"""
    procs = [start_runner(config_file(stream), REPORT + wait + body) for body in bodies]
    go.touch()  # all processes are past their imports: start them together
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        reports = [json.loads(line[7:]) for line in out.splitlines() if line.startswith("REPORT ")]
        results.append((proc.returncode, reports[0] if reports else None, err))
    return results


def _landed(results: list[tuple[int, dict | None, str]]) -> int:
    for code, _, err in results:
        # a writer may give up after losing 5 races in a row, but only with ConcurrentChange
        # (the loser's traceback ends with this exception; delta-rs's message spans lines)
        assert code == 0 or "\nconnectors.errors.ConcurrentChange: " in err, err
    return sum(r["records"] for code, r, _ in results if code == 0 and r)


def _replans(results) -> int:
    """Re-plans of all writers, counted from their logs (a writer that gave up has no report)."""
    return sum(err.count("re-planning") for _, _, err in results)


def test_two_forward_runs_at_once_land_every_record_exactly_once(make_config) -> None:
    stream = _stream(make_config)
    per = produce(stream, 3000, seed=1)
    results = _race(stream, "show(run_forward(stream))", "show(run_forward(stream))")
    print("replans:", _replans(results), [(c, r and r["records"]) for c, r, _ in results])

    landed = _landed(results)
    # whatever each run landed, together they landed each record once; a finishing run may
    # stop short only if the other run is the one that landed the rest
    assert landed <= 3000
    run_forward(stream)  # a failed loser's share, if any
    assert_consistent(stream)
    assert covered(stream) == {p: [(0, n)] for p, n in per.items()}
    assert sum(p.records for p in ledger(stream).partitions.values()) == 3000
    if all(code == 0 for code, _, _ in results):
        assert landed == 3000


def test_two_overlapping_replace_backfills_at_once_keep_one_copy_of_each_row(make_config) -> None:
    stream = _stream(make_config)
    per = produce(stream, 2400, seed=1)
    run_forward(stream)
    before = data_pairs(stream)
    led = ledger(stream)
    first = [OffsetRange(p, 0, n * 2 // 3) for p, n in per.items()]
    second = [OffsetRange(p, n // 3, n) for p, n in per.items()]

    results = _race(
        stream,
        f"show(run_window(stream, {first!r}, 'replace'))",
        f"show(run_window(stream, {second!r}, 'replace'))",
    )
    print("replans:", _replans(results), [(c, r and r["records"]) for c, r, _ in results])
    _landed(results)
    assert data_pairs(stream) == before  # no duplicate, no hole
    assert {p: (x.covered, x.records) for p, x in ledger(stream).partitions.items()} == {
        p: (x.covered, x.records) for p, x in led.partitions.items()
    }
    assert_consistent(stream)
    # both backfills really rewrote (the window rows were swapped, not merely kept)
    ops = [h.get("lakeport.operation") for h in DeltaTable(stream.table.uri).history(200)]
    assert ops.count("replace") >= 2


def test_replace_backfill_while_forward_ingestion_appends(make_config) -> None:
    stream = _stream(make_config)
    first = produce(stream, 1800, seed=1)
    run_forward(stream)
    second = produce(stream, 1800, seed=2)
    window = [OffsetRange(p, 0, n) for p, n in first.items()]

    results = _race(
        stream,
        "show(run_forward(stream))",
        f"show(run_window(stream, {window!r}, 'replace'))",
    )
    print("replans:", _replans(results), [(c, r and r["records"]) for c, r, _ in results])
    _landed(results)
    run_forward(stream)  # completes the forward share if the forward run gave up
    assert_consistent(stream)
    total = {p: first[p] + second.get(p, 0) for p in first}
    assert covered(stream) == {p: [(0, n)] for p, n in total.items()}
    assert sum(p.records for p in ledger(stream).partitions.values()) == 3600
    assert len(data_pairs(stream)) == 3600


def test_three_cli_ingests_at_once_on_a_topic_with_dead_letters_all_succeed_exactly_once(
    make_config,
) -> None:
    """Dead letters race too: every process writes its batches' dead letters before its rows;
    a lost dead-letter race is retried (an idempotent window replace), a lost main commit
    re-plans. All three exit 0 and every offset is in the table or the dead letters once."""
    stream = Stream.from_config(make_config(batch_records=300), "events")
    produced = sum(produce_awkward(stream, 6000, seed=3).values())
    path = config_file(stream)
    command = [sys.executable, "-m", "connectors.cli", "--config", str(path), "ingest"]
    procs = [
        subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    results = [proc.communicate(timeout=300) for proc in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, f"{out}\n{err}"
        assert "Traceback" not in err
    assert_consistent(stream)
    rows = sum(int(out.split(": ")[1].split()[0]) for out, _ in results)
    dead = sum(int(out.split(" rows, ")[1].split()[0]) for out, _ in results)
    assert rows + dead == produced == 6000
    assert 150 < dead < 350  # about 4 % do not decode: the race really involved dead letters
    assert len(data_pairs(stream)) == 6000
    assert sum(p.dead for p in ledger(stream).partitions.values()) == dead
