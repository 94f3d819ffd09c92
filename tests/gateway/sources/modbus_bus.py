"""The device side of an RS485 bus for tests: a pymodbus RTU server on one end of a pty pair.

Addresses in ``dead`` get no answer at all (a dead or unplugged sensor). pymodbus 3.16
answers an unknown address with exception 4 despite ``ignore_missing_devices`` (its
datastore raises KeyError, not NoSuchIdException), so dead ones are served and their
answers dropped on the way out, which is what the wire sees from a dead sensor.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence

from pymodbus import FramerType
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import ModbusSerialServer


@contextlib.asynccontextmanager
async def rtu_slaves(
    port: str,
    devices: Mapping[int, Sequence[int]],
    baudrate: int = 9600,
    dead: Sequence[int] = (),
) -> AsyncIterator[ModbusServerContext]:
    silent = frozenset(dead)
    devices = {**{a: [0] * 8 for a in silent}, **devices}

    def drop_dead(sending: bool, data: bytes) -> bytes:
        if sending and data and data[0] in silent:
            return b""
        return data

    ctx = ModbusServerContext(
        devices={
            # A sequential block starting at 1 serves wire address 0.
            addr: ModbusDeviceContext(
                hr=ModbusSequentialDataBlock(1, list(regs)),  # type: ignore[no-untyped-call]
                ir=ModbusSequentialDataBlock(1, list(regs)),  # type: ignore[no-untyped-call]
            )
            for addr, regs in devices.items()
        },
        single=False,
    )
    server = ModbusSerialServer(
        ctx, framer=FramerType.RTU, port=port, baudrate=baudrate, trace_packet=drop_dead
    )
    task = asyncio.create_task(server.serve_forever(), name="rtu-slaves")
    try:
        # serve_forever opens the port first; give it one loop turn to do so.
        async with asyncio.timeout(10):
            while not server.is_active():
                await asyncio.sleep(0.01)
        yield ctx
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
