"""Targets and thresholds: the most specific configuration wins, bad config is refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from server.config import ServerConfig
from server.indicators.config import (
    IndicatorsConfig,
    Where,
    salinity_threshold,
    target_for,
    water_alarms,
)

CFG = IndicatorsConfig.model_validate(
    {
        "targets": [
            {"indicator": "dossiers_online", "commune": "dinh-mon", "target": 0.65},
            {"indicator": "dossiers_online", "hamlet": "dinh-phuoc", "target": 0.70},
            {"indicator": "dossiers_online", "hamlet": "dinh-phuoc", "device": "k1", "target": 0.8},
            {"indicator": "sensor_completeness", "crop": "durian", "target": 0.99},
            {"indicator": "salinity_hours_above", "commune": "dinh-mon", "target": 0},
        ],
        "salinity": [
            {"crop": "durian", "danger_ppt": 0.4},
            {"hamlet": "dinh-phuoc", "device": "f1", "danger_ppt": 0.3},
        ],
        "water_alarms": [
            {"hamlet": "dinh-phuoc", "level_i": 1.6, "level_ii": 1.8, "level_iii": 1.9}
        ],
    }
)


def test_most_specific_target_wins() -> None:
    assert target_for(CFG, "dossiers_online", Where("other", None)) == 0.60  # Plan 113
    assert target_for(CFG, "dossiers_online", Where("dinh-mon", None)) == 0.65
    assert target_for(CFG, "dossiers_online", Where("dinh-mon", "dinh-hoa-a")) == 0.65
    assert target_for(CFG, "dossiers_online", Where("dinh-mon", "dinh-phuoc")) == 0.70
    assert target_for(CFG, "dossiers_online", Where("dinh-mon", "dinh-phuoc", "k1")) == 0.8
    assert target_for(CFG, "sensor_completeness", Where("x", "y", "s", "durian")) == 0.99
    assert target_for(CFG, "sensor_completeness", Where("x", "y", "s", "rice")) == 0.95
    assert target_for(CFG, "salinity_hours_above", Where("dinh-mon", None)) == 0
    assert target_for(CFG, "salinity_hours_above", Where("other", None)) is None


def test_thresholds_by_crop_field_and_station() -> None:
    assert salinity_threshold(CFG, Where("c", "h", "f9", "durian")) == 0.4
    assert salinity_threshold(CFG, Where("c", "h", "f9", "rice")) == 4.0  # thresholds.py
    assert salinity_threshold(CFG, Where("c", "h", "f9", None)) == 1.0  # most crops
    assert salinity_threshold(CFG, Where("c", "dinh-phuoc", "f1", "durian")) == 0.3
    assert water_alarms(CFG, Where("c", "dinh-phuoc", "lv")).level_iii == 1.9
    assert water_alarms(CFG, Where("c", "other", "lv")).level_iii == 2.00  # Cần Thơ, 2020


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"targets": [{"indicator": "uptime", "target": 1}]}, "unknown indicator"),
        ({"targets": [{"indicator": "satisfaction", "device": "k", "target": 1}]}, "hamlet"),
        ({"water_alarms": [{"level_i": 2, "level_ii": 1.9, "level_iii": 2.1}]}, "level_i <="),
        ({"radio_schedule": ["5h"]}, "time of day"),
        ({"hotspot_hours": "every day"}, "expected e.g."),
        ({"salinity": [{"crop": "rice", "danger_ppt": 0}]}, "greater than 0"),
    ],
)
def test_bad_config_is_refused_at_start(bad: dict[str, object], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        ServerConfig.model_validate({"environment": "development", "indicators": bad})
