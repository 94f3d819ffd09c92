"""Every scenario file validates; mistakes are reported with the file and the key."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.catalog import describe_devices
from firmware_sim.devices import build_devices
from firmware_sim.scenario import ScenarioError, builtin_names, load_scenario
from firmware_sim.timebase import parse_start
from hamlet.metrics import METRICS


def test_required_scenarios_exist() -> None:
    assert {"demo", "dinh-mon", "dry-season-salinity", "october-flood", "kiosk-outage"} <= set(
        builtin_names()
    )


@pytest.mark.parametrize("name", builtin_names())
def test_scenario_validates_and_every_device_samples(name: str) -> None:
    scn = load_scenario(name)
    start = parse_start(scn.start)
    devices = build_devices(scn, start)
    for d in devices:
        for metric, _value in d.sample(start + 3600).items():
            assert metric in METRICS, metric
        d.heartbeat(start + 3600)
        d.events_between(start, start + 86400)
    rows = describe_devices(scn)
    assert [r["id"] for r in rows] == [d.id for d in scn.devices]


def test_dinh_mon_has_eight_hamlets() -> None:
    scn = load_scenario("dinh-mon")
    assert len(scn.hamlets) == 8
    assert {d.model.value for d in scn.devices} >= {"kiosk", "radio", "hotspot", "salinity", "soil"}


def test_demo_has_every_transport() -> None:
    scn = load_scenario("demo")
    assert {d.transport.value for d in scn.devices} == {"mqtt", "serial", "modbus"}
    assert any(d.model.value == "kiosk" for d in scn.devices)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            "name='x'\n[[hamlets]]\nid='h'\n[[devices]]\nid='d'\nhamlet='nope'\nmodel='soil'\n"
            "transport='mqtt'\n",
            "unknown hamlet",
        ),
        (
            "name='x'\n[[hamlets]]\nid='h'\n[[devices]]\nid='d'\nhamlet='h'\nmodel='kiosk'\n"
            "transport='serial'\n",
            "speak MQTT",
        ),
        (
            "name='x'\n[[hamlets]]\nid='h'\n[[links]]\nname='b'\nkind='modbus'\n[[devices]]\nid='d'\n"
            "hamlet='h'\nmodel='soil'\ntransport='modbus'\nprofile='x'\n",
            "unknown profile",
        ),
        (
            "name='x'\n[[hamlets]]\nid='h'\n[[devices]]\nid='d'\nhamlet='h'\nmodel='soil'\n"
            "transport='mqtt'\ninterval_s=-1\n",
            "devices.0.interval_s",
        ),
        (
            "name='x'\n[[hamlets]]\nid='h'\n[[devices]]\nid='d'\nhamlet='h'\nmodel='soil'\n"
            "transport='serial'\n",
            "[[links]]",
        ),
        ("name = [", "not valid TOML"),
    ],
)
def test_bad_scenarios_say_what_is_wrong(tmp_path: Path, body: str, needle: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(body)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(str(p))
    assert needle in str(exc.value)
    assert str(p) in str(exc.value)


def test_unknown_builtin_lists_the_known_ones() -> None:
    with pytest.raises(ScenarioError, match="demo"):
        load_scenario("no-such-scenario")


def test_october_flood_crosses_alarm_iii_and_dry_season_clips_the_sensor() -> None:
    from firmware_sim import physics
    from firmware_sim.profiles import PROFILES

    flood = load_scenario("october-flood")
    start = parse_start(flood.start)
    wl = next(d for d in build_devices(flood, start) if d.id == "wl-hau")
    levels = [wl.sample(start + i * 600)["water_level"] for i in range(144 * 8)]
    assert 2.0 <= max(levels) <= 2.35
    dry = load_scenario("dry-season-salinity")
    start = parse_start(dry.start)
    sal = next(d for d in build_devices(dry, start) if d.id == "sal-estuary")
    regs = [PROFILES["sensecap-s-ec-01"].fill(sal.sample(start + i * 3600)) for i in range(168)]
    assert max(r[2] for r in regs) == 20000  # EC saturates near the estuary
    inland = next(d for d in build_devices(dry, start) if d.id == "sal-inland")
    week = [inland.sample(start + i * 3600)["salinity"] for i in range(168)]
    assert 0.5 < max(week) < max(physics.salinity(start + i * 3600, sal.site) for i in range(168))


scalars = st.one_of(
    st.integers(-5, 300), st.floats(allow_nan=True), st.text(max_size=8), st.booleans()
)
device_like = st.dictionaries(
    st.sampled_from(
        [
            "id",
            "hamlet",
            "model",
            "transport",
            "profile",
            "address",
            "interval_s",
            "flavour",
            "link",
            "hours",
            "rating_scale",
            "outages",
        ]
    ),
    scalars,
    max_size=8,
)


@given(
    st.fixed_dictionaries(
        {"name": st.text(max_size=5)},
        optional={
            "hamlets": st.lists(
                st.dictionaries(st.sampled_from(["id", "distance_km"]), scalars), max_size=2
            ),
            "devices": st.lists(device_like, max_size=3),
            "links": st.lists(
                st.dictionaries(st.sampled_from(["name", "kind"]), scalars), max_size=2
            ),
            "seed": scalars,
            "start": scalars,
        },
    )
)
@settings(max_examples=150, deadline=None)
def test_scenario_loader_refuses_garbage_with_scenario_error(data: dict) -> None:
    import tomli_w

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "fuzz.toml"
        try:
            p.write_bytes(tomli_w.dumps(data).encode())
        except (TypeError, ValueError):
            return  # not representable in TOML (nan is fine, None is not)
        try:
            load_scenario(str(p))
        except ScenarioError as err:
            message = str(err)
            assert str(p) in message
