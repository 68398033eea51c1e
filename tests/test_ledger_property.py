"""Property: any sequence of runs, backfills, new records and failed commits ends consistent.

Hypothesis draws a short program of steps (produce more records; forward runs, optionally with
a budget; `replace` / `fill` backfills over random offset windows; and any of these with the
k-th Delta write raising, as a crash in the middle of a run would), runs it against a fresh
topic and table, then finishes with forward runs. Whatever happened, the data, the ledger and
what the broker holds must agree: every offset exactly once, records counts equal to the rows.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import Stream, run_forward, run_window, writer
from connectors.delta_store import DeltaStore
from connectors.ranges import OffsetRange
from tests.helpers import assert_consistent, produce, watermarks


class InjectedFailure(RuntimeError):
    pass


produce_step = st.tuples(st.just("produce"), st.integers(20, 240))
forward_step = st.tuples(st.just("forward"), st.none() | st.integers(30, 300))
window_step = st.tuples(
    st.sampled_from(["replace", "fill"]),
    st.lists(st.integers(0, 5), min_size=1, max_size=3, unique=True),
    st.integers(0, 120),  # window start
    st.integers(1, 160),  # window length
)
step = st.one_of(produce_step, forward_step, window_step)
failing = st.none() | st.integers(1, 3)  # fail the k-th Delta write of the step
program = st.lists(st.tuples(step, failing), min_size=2, max_size=4)


def _fresh(stream: Stream) -> Stream:
    """The stream on a new topic and new tables (one per example)."""
    tag = uuid.uuid4().hex[:8]
    root = Path(stream.table.uri).parent / tag
    config = stream.config.model_copy(update={"topic": f"{stream.topic}_{tag}"})
    return dataclasses.replace(
        stream,
        config=config,
        table=DeltaStore(str(root / "events"), stream.table.schema, {}),
        dead_letters=DeltaStore(str(root / "events_dl"), stream.dead_letters.schema, {}),
    )


def _run_step(stream: Stream, kind: str, args: tuple) -> None:
    if kind == "produce":
        produce(stream, args[0], seed=args[0])
    elif kind == "forward":
        run_forward(stream, max_records=args[0])
    else:
        parts, start, length = args
        highs = {p: high for p, (_, high) in watermarks(stream).items()}
        window = [OffsetRange(p, start, start + length) for p in parts if p in highs]
        run_window(stream, window, kind)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=program)
def test_any_program_of_runs_ends_with_data_equal_ledger_equal_broker(
    make_config, monkeypatch, steps
) -> None:
    base = Stream.from_config(make_config(batch_records=60, idle_timeout_seconds=3), "events")
    stream = _fresh(base)
    produce(stream, 150, seed=1)  # the topic exists with some records before any step
    real_write = writer.write_deltalake
    for (kind, *args), fail_at in steps:
        calls = [0]

        def flaky(*a, _fail_at=fail_at, _calls=calls, **kw):
            _calls[0] += 1
            if _fail_at is not None and _calls[0] == _fail_at:
                raise InjectedFailure(f"injected failure of Delta write #{_fail_at}")
            return real_write(*a, **kw)

        monkeypatch.setattr(writer, "write_deltalake", flaky)
        try:
            _run_step(stream, kind, tuple(args))
        except InjectedFailure:
            pass
        finally:
            monkeypatch.setattr(writer, "write_deltalake", real_write)
        # after every step, even a failed one, the ledger agrees with the data
        assert_consistent(stream, complete=False)

    # finish: one forward run lands everything still missing, however fragmented
    run_forward(stream)
    assert_consistent(stream)
