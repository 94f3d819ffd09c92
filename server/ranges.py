"""Sets of sequence numbers kept as sorted, merged, inclusive ranges.

A gateway's sequence numbers arrive almost always in long runs, so the server keeps the
*settled* ones (stored, rejected or declared given up) as a handful of ranges per gateway
instead of one row per record: dedup and "what is missing" stay cheap at any volume.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence

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
    """An immutable-ish view for membership tests over merged ranges."""

    __slots__ = ("_ends", "_ranges", "_starts")

    def __init__(self, ranges: Iterable[Range] = ()) -> None:
        self._ranges = merge(ranges)
        self._starts = [a for a, _ in self._ranges]
        self._ends = [b for _, b in self._ranges]

    @property
    def ranges(self) -> list[Range]:
        return list(self._ranges)

    def __contains__(self, x: object) -> bool:
        if not isinstance(x, int):
            return False
        i = bisect_right(self._starts, x) - 1
        return i >= 0 and x <= self._ends[i]

    def __len__(self) -> int:
        return sum(b - a + 1 for a, b in self._ranges)

    def count_in(self, first: int, last: int) -> int:
        """How many members lie in [first, last]."""
        n = 0
        i = max(bisect_right(self._starts, first) - 1, 0)
        while i < len(self._ranges):
            a, b = self._ranges[i]
            if a > last:
                break
            lo, hi = max(a, first), min(b, last)
            if hi >= lo:
                n += hi - lo + 1
            i += 1
        return n

    def union(self, other: Iterable[Range]) -> RangeSet:
        return RangeSet([*self._ranges, *other])


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
