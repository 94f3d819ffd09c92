"""Range sets against plain Python sets, and the bounded body reader against hostile bytes."""

from __future__ import annotations

import gzip
import itertools
import zlib
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.body import BodyError, read_bounded
from server.ranges import RangeSet, compress, holes, merge

ints = st.lists(st.integers(1, 300), max_size=120)


@given(ints, ints)
def test_rangeset_matches_python_set(a: list[int], b: list[int]) -> None:
    rs = RangeSet(compress(sorted(set(a))))
    assert len(rs) == len(set(a))
    for x in range(302):
        assert (x in rs) == (x in set(a))
    both = rs.union(compress(sorted(set(b))))
    assert len(both) == len(set(a) | set(b))
    for lo in (1, 50, 150):
        for hi in (lo, lo + 10, 400):
            assert rs.count_in(lo, hi) == len({x for x in a if lo <= x <= hi})


@given(ints, st.integers(0, 320), st.integers(1, 10))
def test_holes_are_the_complement(a: list[int], upto: int, limit: int) -> None:
    got = list(holes(compress(sorted(set(a))), upto, limit))
    missing = sorted(set(range(1, upto + 1)) - set(a))
    expected = compress(missing)[:limit]
    assert got == expected


@given(st.lists(st.tuples(st.integers(1, 100), st.integers(0, 20)), max_size=30))
def test_merge_is_union(pairs: list[tuple[int, int]]) -> None:
    ranges = [(a, a + d) for a, d in pairs]
    merged = merge(ranges)
    members = {x for a, b in ranges for x in range(a, b + 1)}
    assert {x for a, b in merged for x in range(a, b + 1)} == members
    for (_, b1), (a2, _) in itertools.pairwise(merged):
        assert a2 > b1 + 1  # disjoint and not adjacent


async def _chunks(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def _read(
    data: bytes, enc: str | None, max_body: int = 1 << 20, max_inflated: int = 1 << 20
) -> bytes:
    return await read_bounded(
        _chunks(data),
        encoding=enc,
        content_length=str(len(data)),
        max_body=max_body,
        max_inflated=max_inflated,
    )


async def test_gzip_roundtrip_and_limits() -> None:
    raw = b'{"x": 1}' * 1000
    assert await _read(gzip.compress(raw), "gzip") == raw
    assert await _read(raw, None) == raw
    with pytest.raises(BodyError) as e:
        await _read(gzip.compress(b"0" * (50 << 20)), "gzip")
    assert e.value.status == 413
    with pytest.raises(BodyError) as e:
        await _read(b"x" * 2000, None, max_body=1000)
    assert e.value.status == 413
    with pytest.raises(BodyError) as e:
        await _read(gzip.compress(raw)[:-20], "gzip")
    assert e.value.status == 400
    assert "truncated" in e.value.message
    with pytest.raises(BodyError) as e:
        await _read(raw, "deflate")
    assert e.value.status == 415


@settings(max_examples=200)
@given(st.binary(max_size=2000), st.sampled_from(["gzip", None, "identity"]))
async def test_any_bytes_give_a_body_or_a_clear_error(data: bytes, enc: str | None) -> None:
    problem: BodyError | None = None
    try:
        out = await _read(data, enc, max_inflated=4096)
    except BodyError as err:
        problem = err
    if problem is not None:
        assert problem.status in (400, 413, 415)
        assert problem.message
    else:
        if enc != "gzip":
            assert out == data
        else:
            assert out == zlib.decompress(data, 16 + zlib.MAX_WBITS)
