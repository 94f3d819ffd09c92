"""Sensor faults on demand, each visible in the data with the magnitude asked for; the
paddy's water following the rice crop calendar."""

from __future__ import annotations

import itertools
import statistics
from typing import Any

from firmware_sim import physics as P
from firmware_sim.crop import Stage
from firmware_sim.devices import Device, build_devices
from firmware_sim.history import HistoryGenerator
from firmware_sim.scenario import Scenario
from firmware_sim.timebase import parse_start
from hamlet.contract import RecordKind
from hamlet.metrics import METRICS

START = "2026-03-02T00:00:00"
STEP = 300.0


def _devices(faults: dict[str, Any], **extra: Any) -> tuple[Device, Device]:
    """A faulty salinity sensor and its fault-free twin in the same river."""
    scn = Scenario.model_validate(
        {
            "name": "faults",
            "seed": 5,
            "start": START,
            "year_type": "drought",
            "hamlets": [{"id": "h", "distance_km": 70}],
            "devices": [
                {"id": "clean", "hamlet": "h", "model": "salinity", "transport": "mqtt", **extra},
                {
                    "id": "faulty",
                    "hamlet": "h",
                    "model": "salinity",
                    "transport": "mqtt",
                    "sensor_faults": faults,
                    **extra,
                },
            ],
        }
    )
    clean, faulty = build_devices(scn, parse_start(START))
    return clean, faulty


def _pairs(
    days: float, faults: dict[str, Any], metric: str = "salinity"
) -> list[tuple[float, float | None]]:
    clean, faulty = _devices(faults)
    t0 = parse_start(START)
    out: list[tuple[float, float | None]] = []
    for i in range(int(days * 86400 / STEP)):
        t = t0 + i * STEP
        out.append((clean.sample(t)[metric], faulty.sample(t).get(metric)))
    return out


def test_fouling_drifts_readings_down_by_the_rate_asked_then_cleaning_restores() -> None:
    pairs = _pairs(30, {"fouling_per_day": 0.02, "clean_every_days": 10})
    ratios = [f / c for c, f in pairs if f is not None]
    # Just before a cleaning the probe reads 1 - 0.02 x 10 = 80 % of the truth.
    assert min(ratios) == pytest_approx(0.8, 0.01)
    assert max(ratios) == pytest_approx(1.0, 0.01)
    # Three cleanings in 30 days: the ratio jumps back up three times.
    jumps = sum(1 for a, b in itertools.pairwise(ratios) if b - a > 0.1)
    assert jumps == 3
    # The drift is steady: a day later the ratio is 2 % lower (between cleanings).
    per_day = int(86400 / STEP)
    drops = [ratios[i] - ratios[i + per_day] for i in range(len(ratios) - per_day)]
    assert statistics.median(drops) == pytest_approx(0.02, 0.002)


def pytest_approx(v: float, tol: float) -> Any:
    import pytest

    return pytest.approx(v, abs=tol)


def _runs(values: list[float | None]) -> list[int]:
    """Lengths of runs of identical consecutive values."""
    out: list[int] = []
    n = 1
    for a, b in itertools.pairwise(values):
        if a is not None and a == b:
            n += 1
        else:
            out.append(n)
            n = 1
    out.append(n)
    return out


def test_stuck_probe_repeats_one_value_for_the_hours_asked() -> None:
    pairs = _pairs(20, {"stuck_per_month": 15, "stuck_hours": 4}, metric="ec")
    faulty = [f for _c, f in pairs]
    clean = [c for c, _f in pairs]
    runs = _runs(faulty)[1:-1]  # not the ones the 20-day window cuts
    stuck = [n for n in runs if n > 3]
    assert max(_runs(clean)) <= 3  # the real river never stands still that long
    assert 5 <= len(stuck) <= 20  # ~15 a month -> ~10 in 20 days
    assert all(n * STEP <= 4 * 3600 + STEP for n in stuck)
    # Four hours each (one that began while another ran shows only its remainder).
    full = [n for n in stuck if n * STEP >= 4 * 3600 - 2 * STEP]
    assert len(full) >= 0.7 * len(stuck)


def test_spikes_at_the_rate_and_size_asked() -> None:
    clean, faulty = _devices({"spikes": 0.01, "spike_size": 4.0})
    t0 = parse_start(START)
    n = int(20 * 86400 / STEP)
    hits: list[tuple[float, float]] = []
    for i in range(n):
        t = t0 + i * STEP
        c, f = clean.sample(t), faulty.sample(t)
        assert sum(abs(f[k] - c[k]) > 1e-6 for k in c) <= 1  # one metric of a reading
        hits.extend((k, c[k], f[k]) for k in c if abs(f[k] - c[k]) > 1e-6)
    assert 0.005 <= len(hits) / n <= 0.02  # 1 % of the readings
    for metric, c_v, f_v in hits:  # each one v + 4 x max(|v|, 1), saturating at the range
        assert f_v == pytest_approx(min(METRICS[metric].hi, c_v + 4.0 * max(abs(c_v), 1.0)), 0.01)


def test_dropouts_lose_the_share_asked_and_a_gateway_counts_them() -> None:
    pairs = _pairs(10, {"dropouts": 0.1})
    lost = sum(1 for _c, f in pairs if f is None)
    assert 0.08 <= lost / len(pairs) <= 0.12
    # Through the history generator: the device's seq numbers show exactly those losses.
    _clean, _ = _devices({"dropouts": 0.1})
    scn = Scenario.model_validate(
        {
            "name": "d",
            "seed": 5,
            "hamlets": [{"id": "h"}],
            "devices": [
                {
                    "id": "faulty",
                    "hamlet": "h",
                    "model": "salinity",
                    "transport": "mqtt",
                    "interval_s": STEP,
                    "sensor_faults": {"dropouts": 0.1},
                }
            ],
        }
    )
    t0 = parse_start(START)
    gen = HistoryGenerator(scn, t0, t0 + 5 * 86400)
    recs = [r for _t, rs in gen.windows() for r in rs if r.metric == "salinity"]
    st = gen.seq_stats["faulty"]
    expected = 5 * 86400 / STEP
    assert st.messages == len(recs)
    assert st.messages + st.lost == expected or st.messages + st.lost == expected - 1
    assert 0.08 <= st.lost / expected <= 0.12


def test_dead_battery_sags_then_the_node_goes_silent() -> None:
    scn = Scenario.model_validate(
        {
            "name": "b",
            "seed": 5,
            "hamlets": [{"id": "h"}],
            "devices": [
                {
                    "id": "node",
                    "hamlet": "h",
                    "model": "water_level",
                    "transport": "mqtt",
                    "interval_s": 600,
                    "battery": True,
                    "sensor_faults": {"dead_battery_at": "+86400"},
                }
            ],
        }
    )
    t0 = parse_start(START)
    gen = HistoryGenerator(scn, t0, t0 + 4 * 86400)
    recs = [r for _t, rs in gen.windows() for r in rs]
    volts = [(r.t_ms / 1000, r.value) for r in recs if r.metric == "battery"]
    last = max(t for t, _v in volts)
    assert t0 + 2 * 86400 - 600 <= last < t0 + 2 * 86400  # dead a day after the cell failed
    # Healthy day: 3.7-4.1 V; the failing day loses ~0.5 V on top of the day/night swing.
    healthy = [v for t, v in volts if t < t0 + 86400]
    failing = [v for t, v in volts if t0 + 86400 <= t]
    assert min(healthy) > 3.6
    assert min(failing) < min(healthy) - 0.4
    offline = [r for r in recs if r.kind == RecordKind.EVENT and r.metric == "status"]
    assert [r.attrs for r in offline] == [{"state": "offline"}]
    assert not [r for r in recs if r.t_ms / 1000 > last and r.metric != "status"]


def test_realistic_preset_rates_show_in_a_month_of_data() -> None:
    pairs = _pairs(30, {"preset": "realistic"})
    lost = sum(1 for _c, f in pairs if f is None) / len(pairs)
    assert 0.01 <= lost <= 0.03  # ~2 % of the readings never arrive
    ratios = [f / c for c, f in pairs if f is not None and abs(f - c) < 0.5 * max(c, 1)]
    assert 0.75 <= min(ratios) <= 0.85  # 1.5 %/day over a fortnight between cleanings


def test_field_water_follows_the_rice_crop_calendar() -> None:
    awd = P.FieldWaterModel(P.Site(seed=8, key="awd-1"))
    t0 = parse_start("2025-11-20")
    rows = []
    for i in range(24 * 365):
        t = t0 + i * 3600
        rows.append((awd.stage(t), awd.sample(t)["field_water"]))
    by_stage: dict[Stage, list[float]] = {}
    for (before, _), (stage, depth) in itertools.pairwise(rows):
        if stage == before:  # the hour a stage begins still shows the one before
            by_stage.setdefault(stage, []).append(depth)
    assert set(by_stage) == set(Stage)
    assert statistics.fmean(by_stage[Stage.PREP]) > 0.03  # flooded for land preparation
    assert min(by_stage[Stage.AWD]) >= -0.151  # re-irrigated at the 15 cm mark
    assert max(by_stage[Stage.AWD]) > 0.04
    assert min(by_stage[Stage.FLOWERING]) > 0.0  # ponded around flowering
    # Drained before harvest and dry in the fallow weeks: below the AWD mark.
    assert min(by_stage[Stage.DRAIN]) < -0.15
    assert min(by_stage[Stage.FALLOW]) < -0.2
    # Three crops a year, each with several AWD cycles.
    assert awd.irrigations >= 15
