"""``hamlet server influx-setup``: the plan from InfluxDB's state (no InfluxDB needed), and
the whole command twice against a live InfluxDB when one is configured."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.config import InfluxConfig
from server.influx_setup import (
    TASK_NAME,
    Action,
    ExistingTask,
    State,
    changed,
    plan,
    wanted_flux,
)
from tests.deploy.influx_standin import TOKEN, InfluxState, influx_standin
from tests.support.procs import run_hamlet
from tests.support.stores import INFLUX, needs_live_influx

CFG = InfluxConfig(bucket="hamlet", rollup_bucket="hamlet_hourly", org="hamlet")


def _actions(state: State) -> list[Action]:
    return [s.action for s in plan(state, CFG)]


def test_empty_influxdb_gets_both_buckets_and_the_task() -> None:
    steps = plan(State(frozenset(), None), CFG)
    assert [(s.action, s.what) for s in steps] == [
        (Action.CREATE_BUCKET, "hamlet"),
        (Action.CREATE_BUCKET, "hamlet_hourly"),
        (Action.CREATE_TASK, TASK_NAME),
    ]


def test_compose_initialised_influxdb_needs_the_rollup_bucket_and_task() -> None:
    assert _actions(State(frozenset({"hamlet"}), None)) == [
        Action.UNCHANGED, Action.CREATE_BUCKET, Action.CREATE_TASK,
    ]  # fmt: skip


def test_set_up_influxdb_is_unchanged() -> None:
    done = State(frozenset({"hamlet", "hamlet_hourly"}), ExistingTask("1", wanted_flux(CFG), True))
    assert not changed(plan(done, CFG))


def test_an_edited_or_inactive_task_is_put_back() -> None:
    buckets = frozenset({"hamlet", "hamlet_hourly"})
    edited = ExistingTask("1", wanted_flux(CFG).replace("every: 1h", "every: 2h"), True)
    assert _actions(State(buckets, edited))[-1] is Action.UPDATE_TASK
    inactive = ExistingTask("1", wanted_flux(CFG), False)
    assert _actions(State(buckets, inactive))[-1] is Action.ACTIVATE_TASK


def test_task_name_matches_the_flux_option() -> None:
    assert f'name: "{TASK_NAME}"' in wanted_flux(CFG)


@given(
    have_main=st.booleans(),
    have_rollup=st.booleans(),
    task=st.none() | st.tuples(st.booleans(), st.booleans()),
)
def test_applying_the_plan_reaches_a_fixed_point(
    have_main: bool, have_rollup: bool, task: tuple[bool, bool] | None
) -> None:
    # Simulate InfluxDB's state after each step: one run always ends unchanged.
    buckets = {n for n, have in (("hamlet", have_main), ("hamlet_hourly", have_rollup)) if have}
    existing = None
    if task is not None:
        same, active = task
        flux = wanted_flux(CFG) if same else "old"
        existing = ExistingTask("1", flux, active)
    state = State(frozenset(buckets), existing)
    for step in plan(state, CFG):
        if step.action is Action.CREATE_BUCKET:
            buckets.add(step.what)
        elif step.action is not Action.UNCHANGED:
            existing = ExistingTask("1", wanted_flux(CFG), True)
    after = State(frozenset(buckets), existing)
    assert not changed(plan(after, CFG))
    assert sum(s.action is not Action.UNCHANGED for s in plan(state, CFG)) == (
        (not have_main) + (not have_rollup) + (task is None or task != (True, True))
    )


@needs_live_influx
def test_influx_setup_against_a_live_influxdb_twice() -> None:
    suffix = uuid.uuid4().hex[:8]
    env = {
        "HAMLET_SERVER__STORE__BACKEND": "influxdb",
        "HAMLET_SERVER__STORE__INFLUXDB__URL": str(INFLUX["URL"]),
        "HAMLET_SERVER__STORE__INFLUXDB__TOKEN": str(INFLUX["TOKEN"]),
        "HAMLET_SERVER__STORE__INFLUXDB__ORG": str(INFLUX["ORG"]),
        "HAMLET_SERVER__STORE__INFLUXDB__BUCKET": f"hamlet-test-{suffix}",
        "HAMLET_SERVER__STORE__INFLUXDB__ROLLUP_BUCKET": f"hamlet-test-{suffix}-1h",
    }
    first = run_hamlet("server", "influx-setup", env=env).splitlines()
    assert f"create bucket: hamlet-test-{suffix}-1h" in first
    assert first[-1] == "influx-setup: done"
    second = run_hamlet("server", "influx-setup", env=env).splitlines()
    assert second[-1] == "influx-setup: unchanged"


def _setup_env(url: str, token: str = TOKEN) -> dict[str, str]:
    return {
        "HAMLET_SERVER__STORE__BACKEND": "influxdb",
        "HAMLET_SERVER__STORE__INFLUXDB__URL": url,
        "HAMLET_SERVER__STORE__INFLUXDB__TOKEN": token,
    }


def test_influx_setup_through_influxdb_client_against_a_stand_in() -> None:
    state = InfluxState()
    state.add_bucket("hamlet")  # what the compose stack's InfluxDB initialisation creates
    with influx_standin(state) as url:
        first = run_hamlet("server", "influx-setup", env=_setup_env(url)).splitlines()
        assert first == [
            "unchanged: bucket hamlet",
            "create bucket: hamlet_hourly",
            f"create task: {TASK_NAME}",
            "influx-setup: done",
        ]
        assert set(state.buckets) == {"hamlet", "hamlet_hourly"}
        (task,) = state.tasks.values()
        assert task["flux"] == wanted_flux(CFG)
        assert task["status"] == "active"
        writes = [r for r in state.requests if r[0] in {"POST", "PATCH"}]
        assert len(writes) == 2
        second = run_hamlet("server", "influx-setup", env=_setup_env(url)).splitlines()
        assert second[-1] == "influx-setup: unchanged"
        assert [r for r in state.requests if r[0] in {"POST", "PATCH"}] == writes
        # Someone edited the task by hand: the next run puts ours back.
        task["flux"] = task["flux"].replace("every: 1h", "every: 2h")
        task["status"] = "inactive"
        third = run_hamlet("server", "influx-setup", env=_setup_env(url)).splitlines()
        assert f"update task: {TASK_NAME}" in third
        assert task["flux"] != wanted_flux(CFG)  # the old dict; the stand-in replaced it
        (task,) = state.tasks.values()
        assert task["flux"] == wanted_flux(CFG)
        assert task["status"] == "active"


def test_influx_setup_with_a_wrong_token_says_so() -> None:
    with influx_standin(InfluxState()) as url, pytest.raises(RuntimeError, match="nauthorized"):
        run_hamlet("server", "influx-setup", env=_setup_env(url, token="wrong"))
