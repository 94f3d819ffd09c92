"""The uplink encoder always produces what the contract accepts, and nothing is lost in it."""

from __future__ import annotations

import gzip
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.buffer import PendingGap, StoredRecord
from gateway.clock import PENDING
from gateway.uplink.encode import encode_batch
from hamlet.contract import GapReason, RecordKind, TimeQuality, UplinkBatch

idents = st.from_regex(r"[a-z][a-z0-9_.\-]{0,10}", fullmatch=True)
finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
tqs = st.sampled_from([0, 1, 2, 3, PENDING])


@st.composite
def record_lists(draw: st.DrawFn) -> list[StoredRecord]:
    n = draw(st.integers(1, 60))
    seqs = sorted(draw(st.sets(st.integers(1, 10**12), min_size=n, max_size=n)))
    out = []
    for seq in seqs:
        kind = draw(st.sampled_from(list(RecordKind)))
        t = draw(st.integers(0, 4_000_000_000_000))
        if kind in (RecordKind.EVENT, RecordKind.ALERT):
            attrs = draw(
                st.dictionaries(idents, st.one_of(finite, st.booleans(), idents), max_size=4)
            )
            out.append(
                StoredRecord(
                    seq,
                    kind,
                    draw(idents),
                    draw(idents),
                    None,
                    t,
                    draw(tqs),
                    attrs=json.dumps(attrs),
                )
            )
        elif kind == RecordKind.AGGREGATE:
            a, b, c = sorted([draw(finite), draw(finite), draw(finite)])
            out.append(
                StoredRecord(
                    seq,
                    kind,
                    draw(idents),
                    draw(idents),
                    b,
                    t,
                    draw(tqs),
                    a,
                    c,
                    draw(st.integers(1, 10_000)),
                )
            )
        else:
            out.append(
                StoredRecord(seq, kind, draw(idents), draw(idents), draw(finite), t, draw(tqs))
            )
    return out


@settings(max_examples=50, deadline=None)
@given(recs=record_lists(), gap_start=st.integers(1, 10**6))
def test_encoded_batch_is_valid_and_complete(recs: list[StoredRecord], gap_start: int) -> None:
    gaps = [PendingGap(gap_start, gap_start + 5, GapReason.AGGREGATED)]
    enc = encode_batch("gw-1", 1_764_300_000_000, recs, gaps)
    batch = UplinkBatch.model_validate_json(gzip.decompress(enc.body))
    got: dict[int, tuple[object, ...]] = {}
    for block in batch.series:
        for p in block.points():
            got[p.seq] = (block.device, block.metric, block.kind, p.t, p.v, int(p.q))
    for ev in batch.events:
        got[ev.seq] = (ev.device, ev.name, ev.kind, ev.t, json.dumps(ev.attrs), ev.q)
    assert sorted(got) == sorted(enc.seqs) == [r.seq for r in recs]
    for r in recs:
        q = int(TimeQuality.UNSYNCED) if r.tq == PENDING else r.tq
        if r.kind in (RecordKind.EVENT, RecordKind.ALERT):
            assert got[r.seq] == (r.device, r.metric, r.kind, r.wall_ms, r.attrs, q)
        else:
            assert got[r.seq] == (r.device, r.metric, r.kind, r.wall_ms, r.value, q)
    assert [(g.first, g.last, g.reason) for g in batch.gaps] == [
        (g.first, g.last, g.reason) for g in gaps
    ]
