"""Sets of sequence numbers kept as sorted, merged, inclusive ranges.

A gateway's sequence numbers arrive almost always in long runs, so the server keeps the
*settled* ones (stored, rejected or declared given up) as a handful of ranges per gateway
instead of one row per record: dedup and "what is missing" stay cheap at any volume.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate

Range = tuple[int, int]


def compress(sorted_unique: Sequence[int]) -> list[Range]:
    """Sorted distinct integers -> inclusive ranges."""
    out: list[Range] = []
    if not sorted_unique:
        return out
    first = prev = sorted_unique[0]
    for x in sorted_unique[1:]:
        if x != prev + 1:
            out.append((first, prev))
            first = x
        prev = x
    out.append((first, prev))
    return out


def merge(ranges: Iterable[Range]) -> list[Range]:
    """Union of ranges, sorted, with overlapping and adjacent ones joined."""
    out: list[Range] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


class RangeSet:
    """An immutable view over merged ranges: membership and counts in O(log n)."""

    __slots__ = ("_cum", "_ends", "_ranges", "_starts")

    def __init__(self, ranges: Iterable[Range] = ()) -> None:
        self._ranges = merge(ranges)
        self._starts = [a for a, _ in self._ranges]
        self._ends = [b for _, b in self._ranges]
        # _cum[i]: members in the first i ranges, so any count is two look-ups.
        self._cum = [0, *accumulate(b - a + 1 for a, b in self._ranges)]

    @property
    def ranges(self) -> list[Range]:
        return list(self._ranges)

    def __contains__(self, x: object) -> bool:
        if not isinstance(x, int):
            return False
        i = bisect_right(self._starts, x) - 1
        return i >= 0 and x <= self._ends[i]

    def __len__(self) -> int:
        return self._cum[-1]

    def count_in(self, first: int, last: int) -> int:
        """How many members lie in [first, last]."""
        i = bisect_left(self._ends, first)  # first range ending at or after ``first``
        j = bisect_right(self._starts, last) - 1  # last range starting at or before ``last``
        if i > j:
            return 0
        n = self._cum[j + 1] - self._cum[i]
        n -= max(0, first - self._starts[i])
        n -= max(0, self._ends[j] - last)
        return n

    def union(self, other: Iterable[Range]) -> RangeSet:
        return RangeSet([*self._ranges, *other])


def first_claims(claims: Sequence[Range], taken: RangeSet) -> list[int]:
    """For ranges claimed in order, how many members each claim is the first to cover
    outside ``taken`` (an earlier claim wins where claims overlap).

    One sweep over the claims' end points with a heap of the open claims: O(c log c +
    c log t), whatever the claims' overlap (claiming them one by one into a growing set
    was quadratic).
    """
    fresh = [0] * len(claims)
    points = sorted({a for a, _ in claims} | {b + 1 for _, b in claims})
    starts: dict[int, list[int]] = {}
    for idx, (a, _) in enumerate(claims):
        starts.setdefault(a, []).append(idx)
    open_: list[int] = []  # claim indices, smallest (earliest declared) first
    for k, x in enumerate(points[:-1]):
        for idx in starts.get(x, ()):
            heapq.heappush(open_, idx)
        while open_ and claims[open_[0]][1] < x:
            heapq.heappop(open_)  # ended before this segment
        if open_:
            end = points[k + 1] - 1
            fresh[open_[0]] += (end - x + 1) - taken.count_in(x, end)
    return fresh


def holes(ranges: Iterable[Range], upto: int, limit: int) -> Iterator[Range]:
    """Ranges in 1..upto not covered by ``ranges`` (sorted, merged), at most ``limit``."""
    nxt = 1
    given = 0
    for a, b in ranges:
        if given >= limit or nxt > upto:
            return
        if a > nxt:
            yield (nxt, min(a - 1, upto))
            given += 1
        nxt = max(nxt, b + 1)
    if given < limit and nxt <= upto:
        yield (nxt, upto)
