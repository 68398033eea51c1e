"""What a run tells its user: how far it is while it runs (offsets of the plan, records, rate,
ETA) and one summary line per partition when it is done."""

from __future__ import annotations

import io
from datetime import timedelta

from connectors import OffsetRange, Progress, Stream, TerminalProgress, run_forward, run_window
from tests.helpers import config_file, lakeport_cli, produce


def _stream(make_config, **keys: object) -> Stream:
    return Stream.from_config(make_config(**keys), "events")


def test_a_forward_run_reports_progress_after_every_micro_batch_up_to_its_whole_plan(
    make_config,
) -> None:
    stream = _stream(make_config, batch_records=200)
    per = produce(stream, 1500, seed=3)
    seen: list[Progress] = []

    report = run_forward(stream, progress=seen.append)

    assert len(seen) == report.commits >= 1500 // 200
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert seen[-1].done == seen[-1].total == sum(per.values())
    assert seen[-1].records == report.records + report.dead == 1500
    assert seen[-1].eta == timedelta(0)


def test_a_replace_backfill_reports_progress_while_it_stages(make_config) -> None:
    stream = _stream(make_config, batch_records=200)
    per = produce(stream, 1200, seed=4)
    run_forward(stream)
    seen: list[Progress] = []

    report = run_window(
        stream, [OffsetRange(p, 0, n) for p, n in per.items()], "replace", seen.append
    )

    assert report.commits == 1 and len(seen) >= 1200 // 200
    assert seen[-1].done == seen[-1].total == 1200
    assert {p.mode for p in seen} == {"replace"}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_progress_is_one_line_redrawn_with_rate_and_eta_and_cleared_at_the_end(
    monkeypatch,
) -> None:
    clock = iter(range(0, 100))
    monkeypatch.setattr("connectors.progress.time.monotonic", lambda: float(next(clock)))
    out = _Terminal()
    with TerminalProgress(out) as draw:
        draw(Progress("notifications", "forward", 250_000, 1_000_000, 249_000, 2.5))
        draw(Progress("notifications", "forward", 500_000, 1_000_000, 499_000, 5.0))

    text = out.getvalue()
    assert "\n" not in text
    assert text.count("\r") == 3  # two redraws, then the line is cleared for the summary
    assert (
        "notifications [forward]: 500,000 of 1,000,000 offsets (50 %), 499,000 records,"
        " 100,000/s, ETA 0:00:05" in text
    )
    assert text.endswith("\r\x1b[K")


def test_off_a_terminal_progress_is_a_plain_line_at_most_every_ten_seconds(monkeypatch) -> None:
    clock = iter([0.0, 3.0, 11.0, 15.0, 22.0])
    monkeypatch.setattr("connectors.progress.time.monotonic", lambda: next(clock))
    out = io.StringIO()
    with TerminalProgress(out) as draw:
        for done in (100, 200, 300, 400):
            draw(Progress("prices", "fill", done, 400, done, done / 10))

    assert out.getvalue().splitlines() == [
        "prices [fill]: 200 of 400 offsets (50 %), 200 records, 10/s, ETA 0:00:20",
        "prices [fill]: 400 of 400 offsets (100 %), 400 records, 10/s, ETA 0:00:00",
    ]


def test_the_cli_summary_lists_one_span_per_partition_however_many_batches_landed_it(
    make_config,
) -> None:
    stream = _stream(make_config, batch_records=100)
    per = produce(stream, 1200, seed=5)

    proc = lakeport_cli(config_file(stream), "ingest", "--stream", "events")

    assert proc.returncode == 0, proc.stderr
    summary = proc.stdout.splitlines()
    assert summary[0].startswith("events [forward]: 1200 rows, 0 dead letters,")
    assert summary[1] == "  ranges: " + " ".join(f"p{p}[0,{n})" for p, n in sorted(per.items()))
