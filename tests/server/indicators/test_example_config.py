"""The shipped example config (with its [indicators] section) loads and means what it says."""

from __future__ import annotations

import pytest

from server.config import load_server_config
from server.indicators.config import Where, target_for
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "server.toml"


def test_example_indicators_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAMLET_SERVER__AUTH__SECRET_KEY", "x" * 40)
    cfg = load_server_config(EXAMPLE)
    ind = cfg.indicators
    assert target_for(ind, "dossiers_online", Where("dinh-mon", None)) == 0.65
    assert target_for(ind, "dossiers_online", Where("other", None)) == 0.60
    assert ind.radio_schedule == ["05:00", "17:00"]
