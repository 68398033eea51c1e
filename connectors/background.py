"""Run an iterator in a background thread, a bounded number of items ahead.

Reading from Kafka (the Python consume loop) holds the GIL, while decoding (DuckDB) and writing
(delta-rs) release it; reading the next micro-batch while the current one is decoded and
committed overlaps the stages. `depth` bounds how many finished batches wait, so memory stays
bounded by the micro-batch size, not by the backlog.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class _Raised:
    error: BaseException


_DONE = object()


def ahead(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Yield `items`, produced by a background thread that runs at most `depth` items ahead.

    The iterator is advanced and closed only by the background thread (a Kafka consumer must
    not be used from two threads at once); closing the result stops it after its current item.
    """
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for item in items:
                if not put(item):
                    break
        except BaseException as error:  # handed to the consuming thread
            put(_Raised(error))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            put(_DONE)

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
    finally:
        stop.set()
        worker.join()
