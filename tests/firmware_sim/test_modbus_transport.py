"""Modbus RTU slaves over the pty bridge, polled by an independent pymodbus client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ModbusIOException

from firmware_sim import physics
from firmware_sim.runner import RunOptions, Simulation
from firmware_sim.scenario import ScheduledFault, load_scenario
from tests.firmware_sim.conftest import scenario

pytestmark = pytest.mark.timeout(60)


def _s16(v: int) -> int:
    return v - 65536 if v >= 32768 else v


async def _read(client: AsyncModbusSerialClient, addr: int, count: int) -> list[int] | None:
    try:
        r = await client.read_holding_registers(0, count=count, device_id=addr)
    except ModbusIOException:  # no answer within the timeout
        return None
    return None if r.isError() else list(r.registers)


async def _client(path: Path) -> AsyncModbusSerialClient:
    c = AsyncModbusSerialClient(str(path), baudrate=9600, timeout=0.4, retries=0)
    assert await c.connect()
    return c


async def test_profiles_scale_registers_from_the_models(tmp_path: Path) -> None:
    link = tmp_path / "by-id" / "usb-rs485"
    scn = load_scenario(scenario("modbus-bus"))
    opts = RunOptions(modbus_paths={"": str(link)})
    async with Simulation(scn, opts, say=lambda _s: None) as sim:
        c = await _client(link)
        try:
            npk = await _read(c, 1, 7)
            df = await _read(c, 3, 4)
            ec = await _read(c, 2, 5)
            yw = await _read(c, 26, 5)
            t = sim.clock.now()
        finally:
            c.close()
    assert npk is not None
    assert df is not None
    assert ec is not None
    assert yw is not None
    # Soil: the same model behind both profiles, at different scales.
    assert 8 <= npk[0] / 10 <= 60
    assert 15 <= _s16(npk[1]) / 10 <= 45
    assert 4.5 <= npk[3] / 10 <= 7.0
    assert 4.5 <= df[3] / 100 <= 7.0
    assert 50 <= npk[2] <= 30000
    assert npk[4] > 0
    assert npk[6] > npk[5]
    # S-EC-01 near the estuary in March: EC clipped at 20,000 µS/cm, salinity ~11.4 g/L.
    site = sim.devices[2].site
    sal = physics.salinity(t, site)
    assert sal > 12  # the river really is saltier than the sensor can say
    assert ec[2] == 20000
    assert 11000 <= ec[3] <= 12000
    assert ec[4] == round(20000 * 0.64)
    assert abs(_s16(ec[0]) / 100 - physics.water_temp(t, site)) < 0.2
    # Water level: signed mm about the gauge zero.
    level = _s16(yw[4]) / 1000
    assert abs(level - physics.water_level(t, site)) < 0.01
    assert yw[:4] == [0, 0, 0, 0]


async def test_dead_slave_is_silent_and_does_not_stall_the_bus(tmp_path: Path) -> None:
    link = tmp_path / "rs485"
    scn = load_scenario(scenario("modbus-bus"))
    async with Simulation(scn, RunOptions(modbus_paths={"": str(link)}), say=print) as sim:
        c = await _client(link)
        try:
            fault = ScheduledFault(at_s=0, kind="dead_slave", target="sal-ec", duration_s=3600)
            task = asyncio.create_task(sim.inject(fault))
            await asyncio.sleep(0)  # let the fault apply
            assert await _read(c, 2, 5) is None  # timeout: nobody answers
            assert await _read(c, 1, 7) is not None  # the others still do
            assert await _read(c, 77, 1) is None  # an empty bus position is silent too
            task.cancel()
            sim.buses["rs485"].dead.clear()
            assert await _read(c, 2, 5) is not None
        finally:
            c.close()
    assert sim.stats["modbus.rs485.unanswered"] >= 1


async def test_usb_adapter_unplug_and_replug(tmp_path: Path) -> None:
    link = tmp_path / "by-id" / "usb-rs485"
    scn = load_scenario(scenario("modbus-bus"))
    async with Simulation(scn, RunOptions(modbus_paths={"": str(link)}), say=print) as sim:
        c = await _client(link)
        assert await _read(c, 1, 7) is not None
        sim.buses["rs485"].bridge.unplug_b()
        assert not link.exists()
        assert await _read(c, 1, 7) is None
        c.close()
        sim.buses["rs485"].bridge.plug_b()
        assert link.exists()
        c = await _client(link)
        try:
            assert await _read(c, 1, 7) is not None
        finally:
            c.close()
