"""The per-record decision table, and that no batch the model accepts can crash it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hamlet.contract import Gap, GapReason, SeriesBlock, UplinkBatch
from server.classify import classify
from server.ranges import RangeSet
from tests.server.helpers import batch, block, now_ms

NOW = 1_764_309_600_000


def test_settled_seqs_are_duplicates_and_gaps_fill_only_new() -> None:
    b = batch("g", [block("d", "rain", [1, 2, 3, 4])], gaps=[(3, 8, GapReason.DROPPED)])
    c = classify(b, RangeSet([(1, 2)]), now_ms())
    assert c.duplicates == 2
    assert [p.seq for p in c.points] == [3, 4]
    assert c.accounted == {"dropped": 4}  # 5..8; 3 and 4 were just received
    assert c.all_new_ranges() == [(3, 8)]


def test_bad_quality_code_is_rejected() -> None:
    blk = block("d", "rain", [1], times=[NOW])
    blk.q = [9]
    c = classify(batch("g", [blk]), RangeSet(), NOW)
    assert "unknown time quality 9" in c.rejected[0][1]


def test_zero_and_huge_seq_rejected() -> None:
    c = classify(batch("g", [block("d", "rain", [0, 2**63], times=[NOW, NOW])]), RangeSet(), NOW)
    assert [s for s, _ in c.rejected] == [0, 2**63]
    assert all("out of range" in r for _, r in c.rejected)
    assert c.new_ranges == []


blocks = st.builds(
    lambda dev, n, seq, t, vals, q: SeriesBlock.model_validate(
        {
            "device": dev,
            "metric": "salinity",
            "seq": seq[:n],
            "t": t[:n],
            "v": vals[:n],
            "q": q[:n] if q else None,
        }
    ),
    st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True),
    st.just(4),
    st.lists(st.integers(-5, 2**40), min_size=4, max_size=4),
    st.lists(st.integers(-(2**60), 2**60), min_size=4, max_size=4),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=4, max_size=4),
    st.one_of(st.none(), st.lists(st.integers(-3, 6), min_size=4, max_size=4)),
)


@settings(max_examples=300)
@given(
    st.lists(blocks, max_size=4),
    st.lists(st.tuples(st.integers(1, 50), st.integers(0, 50)), max_size=3),
    st.lists(st.tuples(st.integers(1, 60), st.integers(0, 10)), max_size=3),
)
def test_classify_never_crashes_and_conserves_records(
    bs: list[SeriesBlock], settled: list[tuple[int, int]], gaps: list[tuple[int, int]]
) -> None:
    b = UplinkBatch(
        gateway="g",
        sent_at=NOW,
        series=bs,
        gaps=[Gap(first=a, last=a + d, reason=GapReason.DROPPED) for a, d in gaps],
    )
    rs = RangeSet([(a, a + d) for a, d in settled])
    c = classify(b, rs, NOW)
    assert c.accepted + c.duplicates + len(c.rejected) == b.record_count()
    stored = [p.seq for p in c.points]
    assert len(stored) == len(set(stored))
    assert not any(s in rs for s in stored)
    for _, reason in c.rejected:
        assert reason
    new = RangeSet(c.new_ranges)
    assert len(new) == len(stored) + len({s for s, _ in c.rejected if 1 <= s < 2**63})
