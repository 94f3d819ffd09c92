"""The pure alert evaluator (hamlet/alerteval.py), shared by the server and the gateway."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hamlet.alerteval import Episode, feed_stuck
from hamlet.alertrules import Params

STUCK = Params(clear_band=0.01, min_duration_s=120)
MIN = 60_000


def _in_batches(points: list[tuple[int, float]], cut: int) -> list[Episode]:
    done, state = feed_stuck(STUCK, None, points[:cut])
    more, _ = feed_stuck(STUCK, state, points[cut:])
    return done + more


def test_a_stuck_run_carried_into_a_batch_may_end_at_its_second_reading() -> None:
    """Found by Hypothesis in CI (tests/server/alerts/test_alerts_order.py): the run of 0.25
    carried in continues through the batch's first reading and ends at its second; the fast
    path for a healthy sensor ended only a run that ends at the first, and lost this one."""
    points = [(1 * MIN, 0.1), (2 * MIN, 0.25), (6 * MIN, 0.25), (7 * MIN, 0.1),
              (8 * MIN, 0.25), (9 * MIN, 0.1), (10 * MIN, 0.25)]  # fmt: skip
    whole, _ = feed_stuck(STUCK, None, points)
    assert [(e.start, e.end, e.value) for e in whole] == [(2 * MIN, 7 * MIN, 0.25)]
    assert _in_batches(points, 2) == whole


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([0.1, 0.25, 0.4]), min_size=1, max_size=12),
    st.integers(min_value=0, max_value=12),
)
def test_stuck_runs_do_not_depend_on_where_a_batch_ends(values: list[float], cut: int) -> None:
    points = [((i + 1) * MIN, v) for i, v in enumerate(values)]
    whole, _ = feed_stuck(STUCK, None, points)
    assert _in_batches(points, cut) == whole
