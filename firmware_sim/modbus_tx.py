"""Modbus RTU slaves on one RS485 bus: a pymodbus server behind a pty bridge.

The server answers on one end of the bridge; the gateway polls the other at the path given
on the command line. Registers are filled from the physics models at the moment each
request arrives, so a poll reads the hamlet as it is "now" in simulated time.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Self

from firmware_sim.devices import Device
from firmware_sim.profiles import PROFILES
from firmware_sim.ptylink import PtyBridge
from firmware_sim.timebase import SimClock


class ModbusBus:
    """Async context manager: the bridge and the RTU server for one bus."""

    def __init__(
        self,
        name: str,
        path: str,
        devices: list[Device],
        clock: SimClock,
        *,
        baudrate: int,
        stats: Counter[str],
    ) -> None:
        self.name = name
        self.path = path
        self.devices = devices
        self.clock = clock
        self.baudrate = baudrate
        self.stats = stats
        self.dead: set[int] = set()  # addresses that do not answer (fault)
        self._tmp = tempfile.TemporaryDirectory(prefix="hamlet-sim-modbus-")
        self.bridge = PtyBridge(Path(self._tmp.name) / "slave-end", path)
        self._server: object | None = None

    async def _action(  # noqa: PLR0917 - pymodbus' SimAction signature
        self,
        dev: Device,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> None:
        from pymodbus.exceptions import NoSuchIdException

        addr = dev.spec.address
        if addr in self.dead:
            self.stats[f"modbus.{self.name}.unanswered"] += 1
            # With ignore_missing_devices the server then stays silent: a dead slave.
            raise NoSuchIdException(f"simulated dead slave {addr}")
        now = self.clock.now()
        readings = dev.sample(now) if dev.powered(now) else {}
        if not readings:
            # A dead node or a sensor dropout: no answer, a timeout at the master.
            self.stats[f"modbus.{self.name}.unanswered"] += 1
            raise NoSuchIdException(f"simulated sensor dropout {addr}")
        regs = PROFILES[dev.spec.profile].fill(readings)
        registers[: len(regs)] = regs
        self.stats[f"modbus.{self.name}.answered"] += 1

    async def _silent(  # noqa: PLR0917 - pymodbus' SimAction signature
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> None:
        from pymodbus.exceptions import NoSuchIdException

        raise NoSuchIdException("no slave at this address")

    async def __aenter__(self) -> Self:
        from pymodbus.server import ModbusSerialServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        # pymodbus logs every poll and deprecation notices at WARNING/INFO.
        logging.getLogger("pymodbus").setLevel(logging.ERROR)
        await self.bridge.__aenter__()
        sims = [
            SimDevice(
                id=d.spec.address,
                simdata=[
                    SimData(
                        0, values=[0] * PROFILES[d.spec.profile].size, datatype=DataType.REGISTERS
                    )
                ],
                action=partial(self._action, d),
            )
            for d in self.devices
        ]
        # id 0 catches every other address; it never answers, like an empty bus position
        # (pymodbus would otherwise send an exception response for unknown addresses).
        catch_all = SimData(0, count=65535, values=0, datatype=DataType.REGISTERS)
        sims.append(SimDevice(id=0, simdata=[catch_all], action=self._silent))
        server = ModbusSerialServer(
            sims,
            port=str(self.bridge.link_a),
            baudrate=self.baudrate,
            ignore_missing_devices=True,
            reconnect_delay=0.5,
        )
        await server.serve_forever(background=True)
        self._server = server
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[attr-defined]
            self._server = None
        await self.bridge.__aexit__(exc_type, exc, tb)
        self._tmp.cleanup()
