"""Every arrow real: simulated devices -> MQTT / serial pty / Modbus RTU -> `hamlet gateway run`
-> SQLite buffer -> gzip JSON over HTTP -> `hamlet server run` -> SQLite store -> read API -> page.

No component calls another's functions: each is its own process, as in the field.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hamlet.demo import GATEWAY_ID, HAMLET_ID, write_gateway_config
from tests.conftest import require_tool
from tests.support.broker import Broker
from tests.support.procs import HAMLET, ManagedProcess, ServerProcess, start_server

pytestmark = pytest.mark.timeout(180)


def wait_until(what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Ask ``probe`` until it returns something truthy. The server is another process with no
    push channel, so asking its API is the event we can observe; the interval is short."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last answer: {last!r}")


@pytest.fixture
def hamlet_stack(tmp_path: Path, mqtt_broker: Broker) -> Iterator[tuple[ServerProcess, Path]]:
    with start_server(tmp_path / "server") as server:
        token = server.add_gateway(GATEWAY_ID, hamlet=HAMLET_ID)
        serial, modbus = tmp_path / "tty-serial", tmp_path / "tty-modbus"
        sim = ManagedProcess(
            [*HAMLET, "sim", "run", "--scenario", "demo", "--seed", "7",
             "--mqtt-host", mqtt_broker.host, "--mqtt-port", str(mqtt_broker.port),
             "--serial-link", str(serial), "--modbus-link", str(modbus), "--interval-s", "1"]
        ).start()  # fmt: skip
        gw = None
        try:
            sim.wait_for(r"^sim ready", timeout=60)
            (tmp_path / "gateway").mkdir()
            cfg = tmp_path / "gateway.toml"
            write_gateway_config(
                cfg, run_dir=tmp_path, server_url=server.url, token=token,
                mqtt_port=mqtt_broker.port, serial=serial, modbus=modbus,
            )  # fmt: skip
            gw = ManagedProcess([*HAMLET, "gateway", "run", "--config", str(cfg)]).start()
            gw.wait_for(rf"gateway {GATEWAY_ID} running", timeout=60)
            yield server, tmp_path
        finally:
            if gw is not None:
                tail = "\n".join(gw.lines[-30:])
                assert gw.stop() == 0, f"gateway did not shut down cleanly:\n{tail}"
            sim.stop()


def _latest(server: ServerProcess) -> dict[str, dict[str, Any]]:
    """{device: {metric: value}} from the server's latest-values API for the demo hamlet."""
    r = httpx.get(f"{server.url}/api/v1/hamlets/{HAMLET_ID}/latest", timeout=5)
    r.raise_for_status()
    out: dict[str, dict[str, Any]] = {}
    for row in r.json():
        out.setdefault(row["device"], {})[row["metric"]] = row["v"]
    return out


def test_a_reading_travels_the_whole_way(hamlet_stack: tuple[ServerProcess, Path]) -> None:
    server, _ = hamlet_stack

    def all_three_transports() -> dict[str, dict[str, Any]] | None:
        latest = _latest(server)
        metrics = {m for d in latest.values() for m in d}
        # MQTT (kiosk/water sensors), serial LoRa node, Modbus soil probe all arrived.
        wanted = {"salinity", "soil_moisture", "water_level"}
        return latest if wanted <= metrics and len(latest) >= 3 else None

    latest = wait_until("readings from MQTT, serial and Modbus devices", all_three_transports)
    assert all(isinstance(v, int | float) for d in latest.values() for v in d.values())

    gws = httpx.get(f"{server.url}/api/v1/gateways", timeout=5).json()
    gw = next(g for g in gws if g["id"] == GATEWAY_ID)
    assert gw["received"] > 0
    assert gw["last_seen"] is not None
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200


@pytest.mark.browser
def test_the_page_shows_live_values_in_a_real_browser(
    hamlet_stack: tuple[ServerProcess, Path], tmp_path: Path
) -> None:
    chromium = require_tool("chromium")
    server, _ = hamlet_stack
    wait_until("a salinity reading", lambda: any("salinity" in d for d in _latest(server).values()))
    profile = tmp_path / "chromium-profile"
    # Flags: headless as root on a machine with no network but loopback.
    res = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
         "--dump-dom", f"{server.url}/h/{HAMLET_ID}?lang=vi"],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert "Độ mặn" in dom  # Vietnamese ("salinity"); headless Chromium asks for en-US
    assert "‰" in dom
    assert HAMLET_ID in dom or "Định Phước" in dom or "dinh-phuoc" in dom
