"""The read-ahead used to overlap reading with decoding and committing."""

import threading
import time
from collections.abc import Iterator

import pytest

from connectors.background import ahead


def test_items_arrive_in_order_from_another_thread() -> None:
    threads: set[str] = set()

    def source() -> Iterator[int]:
        for i in range(50):
            threads.add(threading.current_thread().name)
            yield i

    assert list(ahead(source())) == list(range(50))
    assert threads == {"lakeport-reader"}


def test_an_error_in_the_source_reaches_the_consumer_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield 1
        raise ValueError("broker went away")

    seen = []
    with pytest.raises(ValueError, match="broker went away"):
        for item in ahead(source()):
            seen.append(item)
    assert seen == [1]


def test_closing_early_stops_the_source_in_its_own_thread_and_runs_its_cleanup() -> None:
    produced: list[int] = []
    closed_in: list[str] = []

    def source() -> Iterator[int]:
        try:
            for i in range(1000):
                produced.append(i)
                yield i
        finally:
            closed_in.append(threading.current_thread().name)

    items = ahead(source(), depth=1)
    assert next(items) == 0
    time.sleep(0.05)
    items.close()
    assert closed_in == ["lakeport-reader"]
    assert len(produced) <= 3  # at most one item ahead plus the one being handed over


def test_at_most_depth_plus_one_items_exist_at_once() -> None:
    made: list[int] = []

    def source() -> Iterator[int]:
        for i in range(20):
            made.append(i)
            yield i

    for done, item in enumerate(ahead(source(), depth=1)):
        time.sleep(0.01)  # the reader could run far ahead if nothing held it back
        alive = len(made) - done  # made so far, minus those the caller has finished with
        assert alive <= 2, (item, alive)
    assert made == list(range(20))
