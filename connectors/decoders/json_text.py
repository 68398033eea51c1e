"""The exact text of JSON members as they arrived, found by one vectorised scan of a micro-batch.

DuckDB re-serialises a member it extracts (numbers through a double: `0.12345678901234567890123`
becomes `0.12345678901234568`; whitespace and escapes normalised), so a `lakeport.raw` column
built from it is not the text that arrived. This scan finds, for every record of a micro-batch
at once, the byte span of a member's value in the record's own bytes and returns Arrow binary
views into the batch's buffer: no copy of the values and no Python loop per record.

The scan classifies every byte once (quotes, backslashes, brackets, commas, colons), finds the
quotes that open and close strings (a quote after an odd run of backslashes is escaped), and
tracks the nesting depth outside strings with cumulative sums restarted at each record. A
member `$.a.b` is the key `b` at depth 2 inside the value of the key `a` at depth 1; its value
runs from after the colon to the next comma or closing bracket at the same depth, without the
surrounding whitespace. Records that are not valid JSON may yield nonsense spans: the decoder
only uses spans of records that DuckDB parsed.
"""

from __future__ import annotations

import json
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

_QUOTE, _BACKSLASH, _OPEN, _CLOSE, _COMMA, _COLON = 1, 2, 3, 4, 5, 6
_CLASS = np.zeros(256, np.uint8)
_CLASS[ord('"')] = _QUOTE
_CLASS[ord("\\")] = _BACKSLASH
_CLASS[[ord("{"), ord("[")]] = _OPEN
_CLASS[[ord("}"), ord("]")]] = _CLOSE
_CLASS[ord(",")] = _COMMA
_CLASS[ord(":")] = _COLON
_SPACE = np.zeros(256, bool)
_SPACE[[ord(" "), ord("\t"), ord("\n"), ord("\r")]] = True
_INLINE = 12  # an Arrow binary view holds values of up to 12 bytes inline

Ints = npt.NDArray[np.signedinteger[Any]]


class _Scan:
    """The structural characters of a batch of JSON texts (`values` back to back in `data`)."""

    def __init__(self, data: npt.NDArray[np.uint8], offsets: Ints) -> None:
        self.data = data
        lo, hi = int(offsets[0]), int(offsets[-1])
        classes = _CLASS[data[lo:hi]]
        self.pos: Ints = np.flatnonzero(classes).astype(np.int64) + lo
        self.kind = classes[self.pos - lo]
        # element index range of each record
        self.first = np.searchsorted(self.pos, offsets[:-1])
        counts = np.searchsorted(self.pos, offsets[1:]) - self.first

        quote = self.kind == _QUOTE
        real = quote & ~self._escaped(quote)  # quotes that open or close a string
        before = self._per_record(np.cumsum(real) - real, counts)
        self.inside = (before & 1).astype(bool)  # within a string (a closing quote too)
        self.opening = real & ~self.inside
        outside = ~self.inside & (self.kind != _BACKSLASH)
        delta = np.where(outside & (self.kind == _OPEN), 1, 0) - np.where(
            outside & (self.kind == _CLOSE), 1, 0
        )
        self.depth = self._per_record(np.cumsum(delta) - delta, counts)  # depth before each
        self.ends = outside & ((self.kind == _COMMA) | (self.kind == _CLOSE))
        self.quotes: Ints = np.flatnonzero(real)

    def _escaped(self, quote: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """Quotes preceded by an odd run of backslashes (rare: a loop per run length)."""
        at = self.pos[quote]
        escaped = np.zeros(len(at), bool)
        running = np.ones(len(at), bool)
        back = 1
        while running.any():
            prev = at - back
            running &= prev >= 0
            running[running] = self.data[prev[running]] == ord("\\")
            escaped ^= running
            back += 1
        result = np.zeros(len(self.pos), bool)
        result[quote] = escaped
        return result

    def _per_record(self, running: Ints, counts: Ints) -> Ints:
        """A running count over all elements, restarted at each record's first element."""
        if not len(self.pos):
            return running
        base = running[np.minimum(self.first, len(self.pos) - 1)]
        return running - np.repeat(base, counts)

    def member(
        self, path: list[str], record_of: Ints, parent: tuple[Ints, Ints]
    ) -> tuple[Ints, Ints, Ints]:
        """(records, start, end) of the value of `path` in each record that has it."""
        records = np.arange(len(self.first), dtype=np.int64)
        starts, ends = parent
        for depth, key in enumerate(path, start=1):
            records, starts, ends = self._key(key.encode(), depth, record_of, records, starts, ends)
        return records, starts, ends

    def _key(
        self,
        key: bytes,
        depth: int,
        record_of: Ints,
        records: Ints,
        within_start: Ints,
        within_end: Ints,
    ) -> tuple[Ints, Ints, Ints]:
        """Where `"key":` at `depth` inside [within_start, within_end) of `records` has its value."""
        opening = np.flatnonzero(self.opening & (self.depth == depth))
        # the quote that closes each key, and the character after it (a colon for keys)
        nth = np.searchsorted(self.quotes, opening)
        closing = self.quotes[np.minimum(nth + 1, len(self.quotes) - 1)]
        colon = np.minimum(closing + 1, len(self.pos) - 1)
        size = self.pos[closing] - self.pos[opening] - 1
        keep = (closing > opening) & (self.kind[colon] == _COLON) & (size == len(key))
        opening, colon = opening[keep], colon[keep]
        if len(key):
            text = self.data[self.pos[opening][:, None] + 1 + np.arange(len(key))]
            same = (text == np.frombuffer(key, np.uint8)).all(axis=1)
            opening, colon = opening[same], colon[same]
        # inside the parent span of the same record; the first such key per record
        rec = record_of[opening]
        where = np.searchsorted(records, rec)
        known = (where < len(records)) & (records[np.minimum(where, len(records) - 1)] == rec)
        opening, colon, where = opening[known], colon[known], where[known]
        inside = (self.pos[opening] > within_start[where]) & (self.pos[opening] < within_end[where])
        opening, colon, where = opening[inside], colon[inside], where[inside]
        rec = records[where]
        _, first = np.unique(rec, return_index=True)
        colon, rec = colon[first], rec[first]
        # the value: after the colon up to the next comma or closing bracket at this depth
        terminators = np.flatnonzero(self.ends & (self.depth == depth))
        at = np.searchsorted(terminators, colon, side="right")
        found = at < len(terminators)
        colon, rec, at = colon[found], rec[found], at[found]
        start = self.pos[colon] + 1
        end = self.pos[terminators[at]]
        same_record = record_of[terminators[at]] == rec
        start, end, rec = start[same_record], end[same_record], rec[same_record]
        start, end = self._trim(start, end)
        return rec, start, end

    def _trim(self, start: Ints, end: Ints) -> tuple[Ints, Ints]:
        """Without the whitespace around the value."""
        while True:
            more = (start < end) & _SPACE[self.data[np.minimum(start, len(self.data) - 1)]]
            if not more.any():
                break
            start = start + more
        while True:
            more = (end > start) & _SPACE[self.data[np.maximum(end - 1, 0)]]
            if not more.any():
                break
            end = end - more
        return start, end


def member_texts(values: pa.Array[Any], paths: list[list[str]]) -> list[pa.Array[Any]]:
    """Per path (`["object"]` for `$.object`), the value's bytes as they arrived, or null."""
    n = len(values)
    index, content = values.buffers()[1:3]
    if n == 0 or index is None or content is None:
        return [pa.nulls(n, pa.binary()) for _ in paths]
    offsets = np.frombuffer(memoryview(index), np.int32)[values.offset : values.offset + n + 1]
    offsets = offsets.astype(np.int64)
    data = np.frombuffer(memoryview(content), np.uint8)
    scan = _Scan(data, offsets)
    record_of = np.searchsorted(offsets, scan.pos, side="right") - 1
    whole = (offsets[:-1] - 1, offsets[1:])  # each record's own bytes
    result = []
    for path in paths:
        records, start, end = scan.member(path, record_of, whole)
        result.append(_views(content, data, n, records, start, end))
    return result


def verbatim(values: pa.Array[Any], key: str, texts: pa.Array[Any]) -> pa.Array[Any]:
    """Per record: is `texts` (DuckDB's text of the top-level member `key`) exactly what arrived?

    In valid JSON `"key":` is always a key (a quote inside a string is escaped). When the
    member's text follows the first `"key":` verbatim and no `"key":` comes after it, that
    first one is the top-level member (a nested one before it would have the top-level one
    after it), so the text is what arrived. Views into the batch's buffer compare without
    copying the values; the other records are cut out by `member_texts`.
    """
    n = len(values)
    index, content = values.buffers()[1:3]
    if n == 0 or index is None or content is None:
        return pa.array([False] * n, pa.bool_())
    pattern = json.dumps(key, ensure_ascii=False) + ":"
    offsets = np.frombuffer(memoryview(index), np.int32)[values.offset : values.offset + n + 1]
    offsets = offsets.astype(np.int64)
    data = np.frombuffer(memoryview(content), np.uint8)
    found = _numbers(pc.find_substring(cast(pa.BinaryArray, values), pattern), -1)
    size = _numbers(pc.binary_length(cast(pa.StringArray, texts)), 0)
    start = offsets[:-1] + found + len(pattern.encode())
    end = start + size
    rows = np.flatnonzero((found >= 0) & (end <= offsets[1:]))
    head = _views(content, data, n, rows, start[rows], end[rows])
    tail = cast(pa.BinaryArray, _views(content, data, n, rows, end[rows], offsets[1:][rows]))
    same: Any = pc.equal(head, pc.cast(texts, pa.binary_view()))
    later = _numbers(pc.find_substring(tail.cast(pa.binary()), pattern), -1) >= 0  # type: ignore[call-overload]
    equal: npt.NDArray[np.bool_] = pc.fill_null(same, False).to_numpy(zero_copy_only=False)
    return pa.array(equal & ~later, pa.bool_())


def _numbers(array: Any, missing: int) -> Ints:
    """An Arrow integer array as numpy int64, nulls as `missing`."""
    return np.asarray(pc.fill_null(array, missing).to_numpy(zero_copy_only=False), np.int64)


def _views(
    buffer: pa.Buffer, data: npt.NDArray[np.uint8], n: int, records: Ints, start: Ints, end: Ints
) -> pa.Array[Any]:
    """A binary view array of `n` rows: rows `records` see data[start:end], the others null."""
    length = (end - start).astype(np.int32)
    views = np.zeros((n, 4), np.int32)  # length | prefix or inline bytes | buffer | offset
    views[records, 0] = length
    inline = np.zeros((len(records), _INLINE), np.uint8)
    reach = np.minimum(start[:, None] + np.arange(_INLINE), len(data) - 1)
    inline[:] = np.where(np.arange(_INLINE) < length[:, None], data[reach], 0)
    views[records, 1:4] = inline.view(np.int32).reshape(len(records), 3)
    long = length > _INLINE
    views[records[long], 2] = 0  # the one data buffer
    views[records[long], 3] = start[long].astype(np.int32)
    valid = np.zeros(n, bool)
    valid[records] = True
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little").data)
    return pa.Array.from_buffers(
        pa.binary_view(),
        n,
        [bitmap, pa.py_buffer(views.data), buffer],
        null_count=n - len(records),
    )
