"""Every example gateway config and every source's sample config must load."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gateway.config import SourcesConfig, load_gateway_config
from gateway.sources.registry import build_sources
from tests.conftest import REPO as ROOT

EXAMPLES = sorted((ROOT / "examples").glob("gateway*"))
SAMPLES = sorted((ROOT / "gateway" / "sources").glob("*/sample.toml"))


def test_there_are_examples() -> None:
    assert EXAMPLES
    assert {p.parent.name for p in SAMPLES} == {"mqtt", "serial", "modbus"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_gateway_config_loads(path: Path) -> None:
    cfg = load_gateway_config(path)
    sources = build_sources(cfg.sources)
    assert sources
    assert len({s.name for s in sources}) == len(sources)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.parent.name)
def test_source_sample_config_loads(path: Path) -> None:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    cfg = SourcesConfig.model_validate(data["sources"])
    assert build_sources(cfg)
