"""The store backends the backend-agnostic suites run against: SQLite always, and a live
InfluxDB 2 when HAMLET_TEST_INFLUX_URL, _TOKEN and _ORG point at one (docker compose up
influxdb; HAMLET_TEST_INFLUX_BUCKET picks the bucket). Without them the InfluxDB cases skip.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from server.config import ServerConfig
from server.registry import GatewayRow
from server.registry_access import RegistryAccess
from server.store.db import Database

F = TypeVar("F", bound=Callable[..., Any])
INFLUX = {k: os.environ.get(f"HAMLET_TEST_INFLUX_{k}") for k in ("URL", "TOKEN", "ORG")}
# Marks for a test that needs the live InfluxDB.
NEEDS_INFLUX = (
    pytest.mark.influx,
    pytest.mark.skipif(
        not all(INFLUX.values()),
        reason="no live InfluxDB 2: set HAMLET_TEST_INFLUX_URL/_TOKEN/_ORG",
    ),
)


def needs_live_influx(test: F) -> F:
    """Mark a test that needs the live InfluxDB (it skips without one)."""
    for mark in NEEDS_INFLUX:
        test = mark(test)
    return test


# params= of a fixture that opens each backend in turn.
BACKENDS = ("sqlite", pytest.param("influxdb", marks=NEEDS_INFLUX))


def influx_settings() -> dict[str, object]:
    """The [store.influxdb] table for the live InfluxDB."""
    return {
        "url": INFLUX["URL"],
        "token": INFLUX["TOKEN"],
        "org": INFLUX["ORG"],
        "bucket": os.environ.get("HAMLET_TEST_INFLUX_BUCKET", "hamlet"),
    }


def store_config(tmp: Path, backend: str) -> ServerConfig:
    """A development server config storing under ``tmp`` with ``backend``."""
    store: dict[str, object] = {"backend": backend}
    if backend == "influxdb":
        store["influxdb"] = influx_settings()
    return ServerConfig.model_validate(
        {"environment": "development", "data_dir": str(tmp), "store": store}
    )


async def registered_gateway(db: Database, gateway_id: str, hamlet: str) -> GatewayRow:
    """Register ``gateway_id`` in ``hamlet`` (the registry creates the hamlet); its row."""
    reg = RegistryAccess(db)
    await reg.add_gateway(gateway_id, hamlet)
    gw = await reg.gateway(gateway_id)
    assert gw is not None
    return gw
