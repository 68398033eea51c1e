"""Span sets behave exactly like sets of offsets, and stay normalised."""

from hypothesis import given
from hypothesis import strategies as st

from connectors.ranges import Spans

span = st.tuples(st.integers(0, 60), st.integers(0, 60)).map(lambda t: (min(t), max(t)))
spans = st.lists(span, max_size=6)


def offsets(s: Spans) -> set[int]:
    return {o for a, b in s for o in range(a, b)}


def raw(items: list[tuple[int, int]]) -> set[int]:
    return {o for a, b in items for o in range(a, b)}


@given(spans, spans)
def test_union_minus_and_intersect_match_set_semantics(a: list, b: list) -> None:
    x, y = Spans.of(a), Spans.of(b)
    assert offsets(x.union(b)) == raw(a) | raw(b)
    assert offsets(x.minus(b)) == raw(a) - raw(b)
    assert offsets(x.intersect(b)) == raw(a) & raw(b)
    assert x.overlaps(b) == bool(raw(a) & raw(b))
    assert x.size == len(raw(a)) and y.size == len(raw(b))


@given(spans)
def test_spans_are_sorted_disjoint_and_merged(a: list) -> None:
    s = list(Spans.of(a))
    assert all(start < end for start, end in s)
    assert all(s[i][1] < s[i + 1][0] for i in range(len(s) - 1))
