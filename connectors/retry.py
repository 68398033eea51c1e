"""Bounded retries with jittered exponential backoff for transient errors.

Everything lakeport writes is idempotent or fenced by the ledger, so repeating a step after a
`TransientError` is always safe; what must be bounded is the time a user waits before hearing
why. Jitter keeps racing writers from colliding again in lock-step.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from connectors.errors import TransientError

T = TypeVar("T")
log = logging.getLogger("lakeport")


@dataclass(frozen=True)
class Backoff:
    """How long to keep trying: at most `attempts` tries within `deadline_s` seconds."""

    attempts: int = 6
    deadline_s: float = 30.0
    first_s: float = 0.05
    max_s: float = 2.0

    def delays(self) -> Iterator[float]:
        """Full-jitter exponential delays between attempts (one fewer than `attempts`)."""
        for attempt in range(self.attempts - 1):
            yield random.uniform(0, min(self.max_s, self.first_s * 2**attempt))


DEFAULT_BACKOFF = Backoff()


def retrying(
    action: Callable[[], T],
    what: str,
    backoff: Backoff = DEFAULT_BACKOFF,
    before_retry: Callable[[TransientError], None] | None = None,
    retry_on: tuple[type[TransientError], ...] = (TransientError,),
) -> T:
    """Run `action`; on a `TransientError` wait and run it again, within `backoff`'s bounds.

    `retry_on` narrows which transient errors are retried here (others surface at once, to be
    retried by a caller that can do better).
    `before_retry` may refresh state (e.g. reload a table) or raise a different error when a
    retry can no longer help. The last error surfaces unchanged, with how long was tried.
    """
    began = time.monotonic()
    delays = backoff.delays()
    tries = 0
    while True:
        tries += 1
        try:
            return action()
        except retry_on as exc:
            delay = next(delays, None)
            if delay is None or time.monotonic() - began + delay > backoff.deadline_s:
                if tries > 1:
                    exc.add_note(
                        f"gave up after {tries} attempts in {time.monotonic() - began:.1f} s"
                    )
                raise
            log.info("%s: %s; retrying in %.2f s", what, exc, delay)
            time.sleep(delay)
            if before_retry is not None:
                before_retry(exc)
