"""Property: the alerts do not depend on the order the data arrived in.

The same readings, cut into batches and delivered in any order (late batches older than what
was already evaluated included), give the same active alerts as one batch in time order —
and the same as the pure evaluator run once over the sorted readings. Real store, real
engine; the clock is fixed (silences are judged on reading times here).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from hamlet.alerteval import feed_threshold, fired
from hamlet.alertrules import AlertSettings, Subject, resolve
from server.models import DeviceIn
from tests.server.alerts.alerts_env import MIN, alert_env, vn

T0 = vn(2026, 3, 4, 8, 0)
SETTINGS = AlertSettings(
    salinity_min_duration_s=180, salinity_clear_band_ppt=0.1, stuck_after_s=240
)
Key = tuple[str, str, int, int | None, float, int]


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[tuple[int, float]], list[list[int]], list[int]]:
    n = draw(st.integers(3, 40))
    gaps = draw(st.lists(st.sampled_from([1, 1, 1, 2, 4, 7]), min_size=n, max_size=n))
    vals = draw(
        st.lists(st.sampled_from([0.1, 0.25, 0.35, 0.45, 0.55, 0.8]), min_size=n, max_size=n)
    )
    times, t = [], T0
    for g in gaps:
        t += g * MIN
        times.append(t)
    points = list(zip(times, vals, strict=True))
    # Cut the readings (in any order) into batches, delivered in any order.
    order = draw(st.permutations(range(n)))
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=min(6, n - 1))))
    batches = [list(order[a:b]) for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    delivery = draw(st.permutations(range(len(batches))))
    return points, batches, list(delivery)


async def _alerts(
    tmp: Path, points: list[tuple[int, float]], batches: list[list[int]]
) -> list[Key]:
    async with alert_env(tmp, SETTINGS, now=points[-1][0] + MIN) as env:
        await env.device(DeviceIn(id="sal-1", crop="durian", expected_interval_s=60))
        for idx in batches:
            await env.send([env.block("sal-1", "salinity", [points[i] for i in idx])])
        rows = await env.alerts()
    return sorted(
        (r.rule, r.metric, r.start, r.end, r.peak, r.peak_t)
        for r in rows
        if r.rule != "gateway.silent"  # contact is judged on arrival, by definition
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario())
def test_alerts_do_not_depend_on_arrival_order(
    case: tuple[list[tuple[int, float]], list[list[int]], list[int]],
) -> None:
    points, batches, delivery = case
    note(f"points={points!r} batches={batches!r} delivery={delivery!r}")
    with tempfile.TemporaryDirectory() as d:
        shuffled = asyncio.run(_alerts(Path(d, "a"), points, [batches[i] for i in delivery]))
        in_order = asyncio.run(_alerts(Path(d, "b"), points, [list(range(len(points)))]))
    assert shuffled == in_order
    # And both equal the pure evaluator over the sorted readings (threshold rules).
    subject = Subject("dinh-phuoc", "sal-1", "salinity", crop="durian")
    for rule in ("salinity.watch", "salinity.danger"):
        p = resolve(SETTINGS, rule, subject)
        done, cur = feed_threshold(">", p, None, points)
        want = [
            (e.start, e.end, e.peak, e.peak_t)
            for e in [*done, *([cur] if cur else [])]
            if fired(e, p)
        ]
        got = [(s, e, pk, pt) for r, _m, s, e, pk, pt in in_order if r == rule]
        assert got == sorted(want)
