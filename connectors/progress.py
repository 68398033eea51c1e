"""How far a run is: the engine reports after each micro-batch, the CLI draws it on a terminal.

A backlog of millions of records or a long backfill takes minutes; a user at a terminal sees
offsets done out of the plan's total, rows landed, the rate and the time left, on one line that
redraws itself. Where stderr is not a terminal (a log file, CI) a plain line every 10 s says
the same without flooding.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import TextIO


@dataclass(frozen=True)
class Progress:
    """A run's position after a micro-batch."""

    stream: str
    mode: str
    done: int
    """Offsets of the plan read so far (committed, or staged for a replace)."""
    total: int
    """Offsets the plan reads."""
    records: int
    """Rows and dead letters among them."""
    seconds: float

    @property
    def rate(self) -> float:
        """Offsets per second so far."""
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta(self) -> timedelta | None:
        """Time left at the rate so far (None before the first batch)."""
        if not self.rate:
            return None
        return timedelta(seconds=round(max(self.total - self.done, 0) / self.rate))

    def __str__(self) -> str:
        share = 100 * self.done / self.total if self.total else 100.0
        eta = "-" if self.eta is None else str(self.eta)
        return (
            f"{self.stream} [{self.mode}]: {self.done:,} of {self.total:,} offsets ({share:.0f} %),"
            f" {self.records:,} records, {self.rate:,.0f}/s, ETA {eta}"
        )


ProgressHook = Callable[[Progress], None]


class EveryFewSeconds:
    """A `ProgressHook` that hands a line to `emit` at most every `every` seconds (a logger's
    `info`, say: a Dagster run's log shows a long ingestion's progress so)."""

    def __init__(self, emit: Callable[[str], object], every: float = 10.0) -> None:
        self._emit = emit
        self._every = every
        self._last = time.monotonic()

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._emit(str(progress))


class TerminalProgress:
    """A `ProgressHook` that draws one live line on a terminal, or a line every 10 s elsewhere."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stderr
        live = self._out.isatty()
        self._hook = EveryFewSeconds(self._draw if live else self._line, 0.25 if live else 10.0)
        self._drawn = False

    def __call__(self, progress: Progress) -> None:
        self._hook(progress)

    def _draw(self, line: str) -> None:
        self._out.write(f"\r{line}\x1b[K")
        self._out.flush()
        self._drawn = True

    def _line(self, line: str) -> None:
        self._out.write(f"{line}\n")
        self._out.flush()

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._drawn:  # the summary (or the error line) starts on a line of its own
            self._out.write("\r\x1b[K")
            self._out.flush()
