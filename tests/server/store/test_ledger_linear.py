"""The ledger's fast paths against their references, and batches of the worst shapes.

Finding 5: a batch of 10,000 disjoint one-seq gaps took 11.9 s, 3,000 blocks after 30,000
alternating seqs 32 s (quadratic set operations while one writer blocks every gateway).
Timing figures live in bench/server_ledger.py; here only what must hold, under a timeout
the quadratic code misses by far.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hamlet.contract import (
    MAX_FUTURE_SKEW_MS,
    MAX_SEQ,
    MIN_PLAUSIBLE_TIME_MS,
    Gap,
    GapReason,
    SeriesBlock,
    UplinkBatch,
)
from server.classify import Classified, classify
from server.ranges import RangeSet
from server.registry import GatewayRow
from server.store import sqlite_series as ss
from server.store.schema import open_db
from server.store.settle import settle_batch
from tests.server.helpers import batch, block

NOW = 1_764_309_600_000
pairs = st.lists(st.tuples(st.integers(1, 80), st.integers(0, 15)), max_size=25)


@given(pairs, pairs)
def test_count_in_matches_a_set(
    settled: list[tuple[int, int]], probes: list[tuple[int, int]]
) -> None:
    rs = RangeSet([(a, a + d) for a, d in settled])
    members = {x for a, d in settled for x in range(a, a + d + 1)}
    for a, d in probes:
        assert rs.count_in(a, a + d) == sum(1 for x in range(a, a + d + 1) if x in members)


@given(pairs, pairs)
def test_first_claims_matches_claiming_one_by_one(
    claims: list[tuple[int, int]], taken: list[tuple[int, int]]
) -> None:
    from server.ranges import first_claims

    ranges = [(a, a + d) for a, d in claims]
    owned = {x for a, d in taken for x in range(a, a + d + 1)}
    expected = []
    for a, b in ranges:  # the obvious, quadratic reference: earlier claims win
        fresh = {x for x in range(a, b + 1) if x not in owned}
        expected.append(len(fresh))
        owned |= fresh
    assert first_claims(ranges, RangeSet([(a, a + d) for a, d in taken])) == expected


def _outcome(c: Classified) -> tuple[object, ...]:
    points = sorted(
        (p.device, p.metric, p.seq, p.t, repr(p.v), p.q, p.vmin, p.vmax, p.n) for p in c.points
    )
    events = sorted((e.seq, e.device, e.name, e.t) for e in c.events)
    return (
        points,
        events,
        sorted(c.rejected),
        c.duplicates,
        c.new_ranges,
        sorted(c.accounted.items()),
        c.all_new_ranges(),
    )


# Blocks that sit on every edge the fast path checks as a whole: seqs near 0 and near the
# top of the range, times before 2020 and near the future-skew limit, values outside a
# metric's range, beyond MAX_ABS_VALUE or not finite, unknown time qualities.
series_blocks = st.builds(
    lambda dev, metric, seq0, seqs, t0, dt, vals, q: SeriesBlock.model_validate(
        {
            "device": dev,
            "metric": metric,
            "seq": [seq0 + seqs[0], *seqs[1:]],
            "t": [t0, *dt[: len(seqs) - 1]],
            "v": vals[: len(seqs)],
            "q": q[: len(seqs)] if q else None,
        }
    ),
    st.sampled_from(["a", "b"]),
    st.sampled_from(["salinity", "rain", "gw.cpu"]),
    st.sampled_from([0, 0, 0, MAX_SEQ - 20]),
    st.lists(st.integers(-3, 40), min_size=1, max_size=8),
    st.sampled_from(
        [NOW - 3_600_000] * 3 + [MIN_PLAUSIBLE_TIME_MS - 60_000, NOW + MAX_FUTURE_SKEW_MS - 60_000]
    ),
    st.lists(st.integers(-60_000, 600_000), min_size=8, max_size=8),
    st.one_of(
        st.lists(st.floats(-5, 60, allow_nan=False), min_size=8, max_size=8),
        st.lists(st.one_of(st.floats(-5, 60), st.floats()), min_size=8, max_size=8),
    ),
    st.one_of(st.none(), st.lists(st.sampled_from([0, 1, 2, 3, 7]), min_size=8, max_size=8)),
)


@settings(max_examples=400)
@given(
    st.lists(series_blocks, max_size=5),
    st.lists(st.tuples(st.integers(1, 120), st.integers(0, 8)), max_size=4),
    st.lists(st.tuples(st.integers(1, 150), st.integers(0, 10)), max_size=4),
)
def test_fast_and_point_by_point_paths_agree(
    bs: list[SeriesBlock], settled: list[tuple[int, int]], gaps: list[tuple[int, int]]
) -> None:
    b = UplinkBatch(
        gateway="g",
        sent_at=NOW,
        series=bs,
        gaps=[Gap(first=a, last=a + d, reason=GapReason.DROPPED) for a, d in gaps],
    )
    rs = RangeSet([(a, a + d) for a, d in settled])
    assert _outcome(classify(b, rs, NOW)) == _outcome(classify(b, rs, NOW, fast=False))


def _settle(conn: sqlite3.Connection, gw: GatewayRow, b: UplinkBatch) -> Classified:
    ids = ss.SeriesIds()
    conn.execute("BEGIN IMMEDIATE")
    c = settle_batch(conn, ids, gw, b, NOW, day_offset_ms=7 * 3_600_000, keep_rejections=1000)
    conn.execute("COMMIT")
    return c


# Not a timed assert (figures come from the bench): a timeout 20x what these take now,
# which the quadratic code (20 s and 36 s on this machine kind) cannot meet.
@pytest.mark.timeout(30)
def test_worst_shaped_batches_settle_correctly(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "h.sqlite3")
    gw = GatewayRow(num=1, id="g", hamlet="h", revoked=False, created_ms=0)
    t0 = NOW - 86_400_000
    # 10,000 disjoint one-seq gaps beside 10,000 records.
    b = batch(
        "g",
        [block("d", "rain", list(range(1, 20_001, 2)), t0=t0, step_ms=1000)],
        gaps=[(s, s, GapReason.DROPPED) for s in range(2, 20_001, 2)],
    )
    c = _settle(conn, gw, b)
    assert (c.accepted, c.accounted) == (10_000, {"dropped": 10_000})
    assert c.all_new_ranges() == [(1, 20_000)]
    # 30,000 alternating seqs, then 3,000 blocks whose seqs straddle all of them.
    odd = list(range(100_001, 160_001, 2))
    c = _settle(conn, gw, batch("g", [block("e", "rain", odd, t0=t0, step_ms=1000)]))
    assert c.accepted == 30_000
    # Block i: two fresh even seqs, one near each end, so every block spans ~27,000 ranges.
    blocks = [
        block(f"x{i}", "rain", [100_002 + 2 * i, 160_000 - 2 * i], t0=t0) for i in range(3_000)
    ]
    c = _settle(conn, gw, batch("g", blocks))
    assert (c.accepted, c.duplicates, c.rejected) == (6_000, 0, [])
    stored = conn.execute(
        "SELECT first, last FROM gw_ranges WHERE gw = 1 ORDER BY first"
    ).fetchall()
    members = sum(b - a + 1 for a, b in stored)
    assert members == 20_000 + 30_000 + 6_000
    conn.close()


def test_a_100k_record_batch_settles_as_one_range(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "h.sqlite3")
    gw = GatewayRow(num=1, id="g", hamlet="h", revoked=False, created_ms=0)
    b = batch(
        "g",
        [block("d", "rain", list(range(1, 100_001)), t0=NOW - 200_000_000, step_ms=1000)],
    )
    c = _settle(conn, gw, b)
    assert c.accepted == 100_000
    assert conn.execute("SELECT first, last FROM gw_ranges").fetchall() == [(1, 100_000)]
    conn.close()
