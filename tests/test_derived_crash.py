"""A derive run killed with SIGKILL at each commit point costs work, never a skip or a double apply.

Each crash runs `derive` in a real subprocess whose engine functions are wrapped, without
changing engine code, so that the process SIGKILLs itself at one point of one batch (the
derived tables here commit in batches of 400 raw offsets):

- before a MERGE runs (the first batch, or a window derived again after a raw backfill);
- after a batch's dead letters are written, before its commit;
- right after a batch's commit, before the next batch.

Then a normal run must leave every derived table equal to the independent recomputation, with
an audit that passes.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest
from deltalake import DeltaTable

from connectors import Stream, load_config, run_forward, run_window
from connectors.config import LakeportConfig
from connectors.derived import derive, derived_tables
from connectors.derived.run import plan
from connectors.ledger import Ledger, read_ledger
from connectors.ranges import OffsetRange
from tests.derived_oracle import assert_equal_to_recomputation
from tests.helpers import config_file, run_runner
from tests.test_derived import DERIVED, event, life_cycles, produce_at

KILLED = -signal.SIGKILL
SMALL_BATCHES = {name: {**spec, "batch_records": 400} for name, spec in DERIVED.items()}

CRASHES = {  # where: (the wrapper, batches the derived ledger holds afterwards)
    "before the first MERGE": ("on_call(deltalake.DeltaTable, 'merge', 1)", 0),
    "after the dead letters, before the second commit": (
        "on_call(writer.TableWriter, 'commit', 2)",
        1,
    ),
    "after the second commit, before the next batch": (
        "on_call(writer.TableWriter, 'commit', 2, before=writer.TableWriter.commit)",
        2,
    ),
}


def _derive_dying(stream: Stream, crash: str, table: str) -> Any:
    body = f"""
        import deltalake
        from connectors import writer
        from connectors.config import load_config
        from connectors.derived import derive, find_derived
        table = find_derived(load_config({str(config_file(stream))!r}), {table!r})
        {crash}
        print(derive(table), flush=True)
    """
    return run_runner(config_file(stream), body)


@pytest.fixture
def stream(make_config: Callable[..., LakeportConfig]) -> Stream:
    return Stream.from_config(make_config(derived=SMALL_BATCHES), "events")


def _broken_orders(stream: Stream) -> None:
    """A few ORDER events whose object has no id: dead letters of the orders tables."""
    bad = {"status": "NEW", "created_at": "2026-03-02T09:00:00Z"}
    produce_at(
        stream, [(p, event("ORDER.NEW", bad, "2026-03-02T09:00:00Z", f"bad{p}")) for p in range(6)]
    )


@pytest.mark.parametrize("where", list(CRASHES))
def test_a_derive_run_killed_at_a_commit_point_is_finished_by_the_next_run(
    stream: Stream, where: str
) -> None:
    _broken_orders(stream)
    life_cycles(stream, 3000, seed=11)
    run_forward(stream)
    crash, done = CRASHES[where]
    raw = read_ledger(DeltaTable(stream.table.uri), stream.topic)
    batches = plan(raw, Ledger(stream.topic), [], 400)
    assert len(batches) > 3
    held = sum(len(r) for batch in batches[:done] for r in batch.new)

    for name in ("orders", "positions"):
        killed = _derive_dying(stream, crash, name)
        assert killed.returncode == KILLED, killed.stderr[-2000:]
    tables = derived_tables(load_config(config_file(stream)), "events")
    for table in tables[0], tables[2]:
        ledger = read_ledger(DeltaTable(table.table.uri), stream.topic)
        assert sum(part.covered.size for part in ledger.partitions.values()) == held

    for table in tables:
        derive(table)
    assert_equal_to_recomputation(stream, tables)


def test_a_derive_run_killed_while_deriving_a_backfilled_window_again(stream: Stream) -> None:
    _broken_orders(stream)
    counts = life_cycles(stream, 2400, seed=12)
    run_forward(stream)
    tables = derived_tables(load_config(config_file(stream)), "events")
    for table in tables:
        derive(table)
    run_window(stream, [OffsetRange(p, 50, n) for p, n in sorted(counts.items())], "replace")

    killed = _derive_dying(stream, "on_call(deltalake.DeltaTable, 'merge', 1)", "orders")
    assert killed.returncode == KILLED, killed.stderr[-2000:]
    report = derive(tables[0])
    assert report.rederived, "the interrupted re-derivation is done again"
    for table in tables[1:]:
        derive(table)
    assert_equal_to_recomputation(stream, tables)
