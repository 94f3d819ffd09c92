"""All three sources against helper D's device simulator (``hamlet sim run``), the way a
hamlet's firmware drives them: serial frames with injected faults into a pty, Modbus RTU
slaves on another pty, MQTT devices on a real broker; then the serial adapter is pulled
out and put back (SIGUSR1)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.sources.base import SourceStatus
from gateway.sources.modbus.config import ModbusDeviceConfig, ModbusSourceConfig
from gateway.sources.modbus.source import ModbusSource
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.sources.mqtt.source import MqttSource
from gateway.sources.serial.config import SerialSourceConfig
from gateway.sources.serial.source import SerialSource
from tests.conftest import require_tool
from tests.gateway.sources.conftest import Committed
from tests.support.broker import Broker
from tests.support.procs import HAMLET, ManagedProcess
from tests.support.tasks import cancel_and_wait


@contextlib.asynccontextmanager
async def running(sources: list[Any], sink: Committed) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(s.run(sink), name=s.name) for s in sources]
    try:
        yield
    finally:
        for t in tasks:
            await cancel_and_wait(t)


async def _until(cond: Any, timeout: float = 30.0) -> None:
    # Source state has no event of its own; poll it briefly, bounded by the timeout.
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


@pytest.mark.timeout(120)
async def test_demo_hamlet_through_all_sources(
    tmp_path: Path, mqtt_broker: Broker, committed: Committed
) -> None:
    require_tool("socat")
    lora, rs485 = tmp_path / "by-id-lora0", tmp_path / "by-id-rs485"
    sim = ManagedProcess(
        [*HAMLET, "sim", "run", "--scenario", "demo", "--seed", "3", "--speed", "60",
         "--interval-s", "30", "--mqtt-host", mqtt_broker.host,
         "--mqtt-port", str(mqtt_broker.port), "--serial-link", f"lora0={lora}",
         "--modbus-link", f"rs485={rs485}", "--faults", "corrupt=0.15,garbage=0.1,truncate=0.1"]
    ).start()  # fmt: skip
    try:
        sim.wait_for(r"^sim ready", timeout=60)
        serial = SerialSource(
            SerialSourceConfig(name="lora", port=str(lora), backoff_initial_s=0.05,
                               backoff_max_s=0.3)
        )  # fmt: skip
        modbus = ModbusSource(
            ModbusSourceConfig(
                name="rs485", port=str(rs485),
                devices=[
                    ModbusDeviceConfig(id="soil-1", profile="soil-npk-7in1", address=1,
                                       interval_s=0.5),
                    ModbusDeviceConfig(id="sal-2", profile="sensecap-s-ec-01", address=2,
                                       interval_s=0.5),
                ],
            )
        )  # fmt: skip
        mqtt = MqttSource(
            MqttSourceConfig(host=mqtt_broker.host, port=mqtt_broker.port, client_id="gw-sim",
                             backoff_initial_s=0.05, backoff_max_s=0.5)
        )  # fmt: skip

        def devices() -> set[str]:
            return {i["device"] for i in committed.items}

        want = {"wl-1", "awd-1", "soil-1", "sal-2", "wx-1", "sal-1", "kiosk-1"}
        async with running([serial, modbus, mqtt], committed):
            await _until(lambda: want <= devices(), timeout=60)
            await _until(lambda: serial.state.counters.get("bad_frames", 0) >= 1)

            # Pull both USB adapters (concentrator and RS485) out, then put them back.
            os.kill(sim.proc.pid, signal.SIGUSR1)
            await _until(lambda: serial.state.status == SourceStatus.RECONNECTING)
            await _until(lambda: modbus.state.devices["soil-1"]["status"] != "ok")
            before = serial.state.counters.get("frames", 0)
            ok_before = int(modbus.state.devices["soil-1"]["ok"] or 0)
            os.kill(sim.proc.pid, signal.SIGUSR1)
            await _until(lambda: serial.state.status == SourceStatus.RUNNING)
            await _until(lambda: serial.state.counters.get("frames", 0) > before, timeout=60)
            await _until(
                lambda: int(modbus.state.devices["soil-1"]["ok"] or 0) > ok_before, timeout=60
            )
            await _until(lambda: mqtt.state.counters.get("acked", 0) >= 1)
    finally:
        sim.stop()

    by_dev = {}
    for i in committed.readings:
        by_dev.setdefault(i["device"], set()).add(i["metric"])
    assert {"water_level", "battery"} <= by_dev["wl-1"]
    assert {"soil_moisture", "soil_ph", "soil_k"} <= by_dev["soil-1"]
    assert {"ec", "salinity", "water_temp"} <= by_dev["sal-2"]
    assert {"salinity", "ec"} <= by_dev["sal-1"]
    # Injected line faults were refused with reasons, good frames around them kept.
    codes = await committed.dead_codes()
    assert set(codes) & {"crc_mismatch", "no_crc", "truncated", "no_start", "bad_crc_format"}
    assert serial.state.counters["port_lost"] >= 1
    assert modbus.state.devices["soil-1"]["status"] == "ok"
    assert mqtt.state.counters["acked"] >= 1
