"""Any batch the wire model accepts goes through the real store without an exception:
every record ends up accepted, duplicate or rejected, and the ledger stays consistent."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hamlet.contract import EventRecord, Gap, GapReason, RecordKind, SeriesBlock, UplinkBatch
from server.config import ServerConfig
from server.store.sqlite import SqliteStore
from tests.support.stores import registered_gateway

NOW = 1_764_309_600_000
big = st.one_of(st.integers(-(2**80), 2**80), st.integers(0, 50))


@st.composite
def blocks(draw: st.DrawFn) -> SeriesBlock:
    n = draw(st.integers(1, 5))
    col = st.lists(big, min_size=n, max_size=n)
    kind = draw(st.sampled_from([RecordKind.READING, RecordKind.AGGREGATE]))
    floats = st.lists(st.floats(allow_nan=True), min_size=n, max_size=n)
    agg = kind == RecordKind.AGGREGATE
    return SeriesBlock.model_validate(
        {
            "device": draw(st.sampled_from(["a", "b"])),
            "metric": draw(st.sampled_from(["salinity", "gw.depth", "custom"])),
            "kind": kind,
            "seq": draw(col),
            "t": draw(col),
            "v": draw(floats),
            "q": draw(st.one_of(st.none(), col)),
            "vmin": draw(floats) if agg else None,
            "vmax": draw(floats) if agg else None,
            "n": draw(col) if agg else None,
        }
    )


events = st.builds(
    lambda seq, t, q, a: EventRecord(seq=seq, device="k", name="rating", t=t, q=q, attrs={"x": a}),
    big,
    big,
    big,
    st.one_of(st.floats(allow_nan=True), st.integers(-(2**70), 2**70), st.text(max_size=5)),
)
gaps = st.builds(
    lambda a, d: Gap(first=a, last=a + d, reason=GapReason.DROPPED),
    st.integers(1, 2**80),
    st.integers(0, 2**70),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(blocks(), max_size=3), st.lists(events, max_size=3), st.lists(gaps, max_size=2))
def test_store_survives_any_valid_batch(
    bs: list[SeriesBlock], evs: list[EventRecord], gs: list[Gap]
) -> None:
    batch = UplinkBatch(gateway="gw", sent_at=NOW, series=bs, events=evs, gaps=gs)

    async def run() -> None:
        with tempfile.TemporaryDirectory() as td:
            cfg = ServerConfig.model_validate({"environment": "development", "data_dir": td})
            async with SqliteStore(cfg) as st_:
                gw = await registered_gateway(st_.db, "gw", "h")
                res = await st_.ingest(gw, batch, NOW)
                assert res.accepted + res.duplicates + len(res.rejected) == batch.record_count()
                again = await st_.ingest(gw, batch, NOW)
                assert again.accepted == 0
                # Only seqs that cannot be stored at all are refused again.
                assert all(not 1 <= r.seq < 2**63 for r in again.rejected)
                (a,) = await st_.accounting([gw])
                assert a.received == res.accepted
                assert a.missing >= 0
                # Rejections of impossible seqs (0, negative, > 2^63) are counted but sit
                # outside 1..highest_seq; the invariant holds for the rest.
                settled_rej = len({r.seq for r in res.rejected if 1 <= r.seq < 2**63})
                assert a.received + settled_rej + sum(a.accounted.values()) + a.missing == (
                    a.highest_seq
                )
            _ = Path(td)

    asyncio.run(run())
