"""Run an iterator in a background thread, a bounded number of items ahead.

Reading from Kafka (the Python consume loop) holds the GIL, while decoding (DuckDB) and writing
(delta-rs) release it; reading the next micro-batch while the current one is decoded and
committed overlaps the stages. `depth` bounds how many batches exist at once, so memory stays
bounded by the micro-batch size, not by the backlog.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class _Raised:
    error: BaseException


_DONE = object()


def ahead(items: Iterator[T], depth: int = 1) -> Generator[T, None, None]:
    """Yield `items`, produced by a background thread that runs at most `depth` items ahead.

    At most `depth + 1` items exist at once: the one the caller works on and those made ahead
    (a finished one waiting counts, so does one being made). The iterator is advanced and
    closed only by the background thread (a Kafka consumer must not be used from two threads
    at once); closing the result stops it after its current item.
    """
    slots: queue.Queue[object] = queue.Queue()
    permits = threading.Semaphore(depth + 1)
    stop = threading.Event()

    def acquire() -> bool:
        while not stop.is_set():
            if permits.acquire(timeout=0.1):
                return True
        return False

    def pump() -> None:
        try:
            while acquire():
                item = next(items, _DONE)
                if item is _DONE:
                    break
                slots.put(item)
        except BaseException as error:  # handed to the consuming thread
            slots.put(_Raised(error))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            slots.put(_DONE)

    worker = threading.Thread(target=pump, name="lakeport-reader", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item  # type: ignore[misc]
            permits.release()  # the caller is done with it: one more may be made
    finally:
        stop.set()
        worker.join()
