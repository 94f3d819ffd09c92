"""Normalization: unit tables, PSS-78, ranges; Hypothesis for the invariants."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.normalize import (
    CONVERSIONS,
    METRIC_ALIASES,
    UNIT_ALIASES,
    NormalizeError,
    Normalizer,
    canonical_unit,
    practical_salinity,
)
from gateway.records import Event, Reading
from hamlet.contract import RecordKind
from hamlet.metrics import METRICS

N = Normalizer()


@pytest.mark.parametrize(
    ("metric", "value", "unit", "want_metric", "want"),
    [
        ("ec", 1500, "uS/cm", "ec", 1.5),
        ("ec", 1500, "μS/cm", "ec", 1.5),  # Greek mu
        ("ec", 1500, "µS/cm", "ec", 1.5),  # micro sign
        ("ec", 2.5, "dS/m", "ec", 2.5),
        ("water_level", 184, "cm", "water_level", 1.84),
        ("water_level", 1840, "mm", "water_level", 1.84),
        ("air_temp", 82.4, "°F", "air_temp", 28.0),
        ("air_temp", 82.4, "F", "air_temp", 28.0),
        ("water_temp", 301.15, "K", "water_temp", 28.0),
        ("salinity", 2350, "mg/L", "salinity", 2.35),
        ("salinity", 2.35, "g/L", "salinity", 2.35),
        ("rain", 0.1, "in", "rain", 2.54),
        ("battery", 3710, "mV", "battery", 3.71),
        ("level_cm", 35, None, "water_level", 0.35),
        ("ec_us", 900, None, "ec", 0.9),
        ("moisture", 31.5, None, "soil_moisture", 31.5),
        ("humidity", 81, "%RH", "humidity", 81),
    ],
)
def test_conversions(
    metric: str, value: float, unit: str | None, want_metric: str, want: float
) -> None:
    out = N.normalize(Reading("d1", metric, value, unit))
    assert isinstance(out, Reading)
    assert out.metric == want_metric
    assert out.unit is None
    assert out.value == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize(
    ("reading", "code"),
    [
        (Reading("d", "salinity", 60.0), "out_of_range"),
        (Reading("d", "water_level", 1200, "cm"), "out_of_range"),
        (Reading("d", "ec", 5.0, "furlongs"), "unknown_unit"),
        (Reading("d", "water_level", 5.0, "°C"), "bad_unit"),
        (Reading("d", "soil_ph", math.nan), "not_finite"),
        (Reading("d", "rain", -math.inf), "not_finite"),
    ],
)
def test_rejections_have_specific_codes(reading: Reading, code: str) -> None:
    with pytest.raises(NormalizeError) as exc:
        N.normalize(reading)
    assert exc.value.code == code
    assert str(exc.value).startswith(f"{code}: d/")


def test_events_and_gateway_metrics_pass_untouched() -> None:
    ev = Event("kiosk-1", "rating", {"scale": 5, "score": 4})
    assert N.normalize(ev) is ev
    gw = Reading("gw", "gw.buffer_depth", 1e12)
    assert N.normalize(gw) is gw
    odd = Reading("n1", "free_heap", 21000.0, kind=RecordKind.HEARTBEAT)
    assert N.normalize(odd) == odd


def test_tables_are_consistent() -> None:
    symbols = set(UNIT_ALIASES.values()) | {"mS/cm"}
    for c in CONVERSIONS:
        assert c.unit in symbols, c
        assert c.canonical in symbols | {m.unit for m in METRICS.values()}, c
    for a in METRIC_ALIASES:
        assert a.metric in METRICS, a
        if a.unit is not None:
            assert canonical_unit(a.unit) is not None, a


# PSS-78 -----------------------------------------------------------------------


def test_pss78_standard_seawater() -> None:
    # By definition S = 35 at the conductivity of standard seawater, 15 °C (IPTS-68).
    assert practical_salinity(42.914, 15 / 1.00024) == pytest.approx(35.0, abs=1e-4)


def test_pss78_reference_values() -> None:
    # Seawater S=35 at 25 °C has C ≈ 53.06 mS/cm; the brief's rule of thumb is ~1.8 mS/cm
    # per ‰ at 25 °C in brackish water.
    assert practical_salinity(53.065, 25.0) == pytest.approx(35.0, abs=0.01)
    assert 0.85 < practical_salinity(1.8, 25.0) < 1.0
    assert 1.8 < practical_salinity(3.6, 25.0) < 2.0
    assert practical_salinity(0.0, 25.0) == 0.0


@settings(max_examples=300)
@given(t=st.floats(0, 40), c=st.floats(0.005, 60))
def test_pss78_monotonic_and_bounded(t: float, c: float) -> None:
    s = practical_salinity(c, t)
    assert 0 <= s < 80  # PSS-78 is defined to 42; beyond it must still be finite, ordered
    assert practical_salinity(c * 1.01, t) >= s
    # Warmer water conducts better: same conductivity means less salt.
    assert practical_salinity(c, t + 1) <= s + 1e-9


@given(t=st.floats(0, 40))
def test_pss78_hill_extension_is_continuous_at_2(t: float) -> None:
    lo, hi = 0.01, 10.0
    for _ in range(60):  # bisect for S = 2
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if practical_salinity(mid, t) < 2 else (lo, mid)
    assert practical_salinity(hi, t) - practical_salinity(lo, t) < 1e-3


def test_derive_adds_salinity_once_per_frame() -> None:
    recs = [N.normalize(r) for r in (
        Reading("sal-2", "ec", 3600, "µS/cm"),
        Reading("sal-2", "water_temp", 25.0),
        Reading("soil-1", "soil_ec", 1.2),
        Reading("sal-3", "ec", 4.0),
        Reading("sal-3", "water_temp", 29.0),
        Reading("sal-3", "salinity", 2.1),  # the device said it: never overwrite
        # sal-2's next frame in the same submit: its own salinity.
        Reading("sal-2", "ec", 5.0),
        Reading("sal-2", "water_temp", 26.0),
        # A frame with only EC, then one with only temperature at another instant: none.
        Reading("sal-4", "ec", 5.0, device_time_ms=1000),
        Reading("sal-4", "water_temp", 26.0, device_time_ms=2000),
    )]  # fmt: skip
    derived = N.derive(recs)
    assert [(r.device, r.metric) for r in derived] == [("sal-2", "salinity")] * 2
    assert derived[0].value == pytest.approx(practical_salinity(3.6, 25.0), abs=1e-3)
    assert derived[1].value == pytest.approx(practical_salinity(5.0, 26.0), abs=1e-3)


# Hypothesis: never a crash, always a Reading in range or a specific NormalizeError ------

units = st.one_of(st.none(), st.sampled_from(sorted(UNIT_ALIASES)), st.text(max_size=8))
metrics = st.one_of(
    st.sampled_from(sorted(METRICS)),
    st.sampled_from([a.key for a in METRIC_ALIASES]),
    st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
)


@settings(max_examples=500)
@given(metric=metrics, value=st.floats(), unit=units)
def test_normalize_never_crashes(metric: str, value: float, unit: str | None) -> None:
    try:
        out = N.normalize(Reading("d", metric, value, unit))
    except NormalizeError as err:
        code = err.code
    else:
        code = ""
    if code:
        assert code in {"out_of_range", "unknown_unit", "bad_unit", "not_finite"}
        return
    assert isinstance(out, Reading)
    assert math.isfinite(out.value)
    m = METRICS.get(out.metric)
    if m is not None:
        assert m.lo <= out.value <= m.hi
        assert out.unit is None
