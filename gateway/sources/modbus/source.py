"""Modbus RTU poller: several devices on one RS485 bus, none allowed to stall the others.

One bus carries one transaction at a time, so a single task schedules every device by its
own due time (monotonic). Each request is bounded by that device's timeout; a device that
fails ``dead_after`` polls in a row is probed at growing, jittered gaps (capped) instead of
every cycle, so a dead sensor costs the bus one timeout per probe. Decoded records go to a
separate submitter task, so a group commit never holds the bus.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusSerialClient

from gateway.profiles import Block, DecodeError, DeviceProfile, decode_profile, plan_blocks
from gateway.records import Reading, Record, Sink
from gateway.sources.base import SourceState, SourceStatus
from gateway.sources.modbus.config import ModbusDeviceConfig, ModbusSourceConfig
from hamlet.backoff import Backoff

log = logging.getLogger(__name__)

_SUBMIT_QUEUE: Final = 256  # polls waiting for commit; beyond this the poller waits


# Opening a serial port takes milliseconds; longer means the adapter is wedged.
_CONNECT_TIMEOUT_S: Final = 5.0


def _raise_swallowed_cancel() -> None:
    """Raise the cancellation a pymodbus call swallowed, once that call has returned.

    pymodbus awaits with ``asyncio.wait_for``, which on Python 3.11 returns the result and
    drops a cancellation that lands as the answer (or the connection) arrives; the request
    to cancel is then used up and the poller would go on forever: a gateway that cannot
    stop. ``cancelling()`` still counts it, so every pymodbus call is followed by this.
    Called outside our own ``asyncio.timeout`` blocks, whose expiry is uncancelled on exit.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class PollError(Exception):
    """One poll of one device failed; ``code`` is timeout, exception, io or decode."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


@dataclass
class _Device:
    cfg: ModbusDeviceConfig
    profile: DeviceProfile
    blocks: tuple[Block, ...]
    due: float = 0.0
    failures: int = 0  # consecutive failed polls
    dead: bool = False
    probe_gap: float = 0.0
    last_ok: float | None = None  # monotonic time of the last good poll
    first_ok: float | None = None
    ok_since_first: int = 0
    stats: dict[str, int | float | str | None] = field(default_factory=dict)


class ModbusSource:
    def __init__(self, cfg: ModbusSourceConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.state = SourceState(cfg.name, "modbus")
        table = cfg.profile_table()
        self._devices = [
            _Device(d, table[d.profile], plan_blocks(table[d.profile].registers))
            for d in cfg.devices
        ]
        self._rng = random.Random()
        for dev in self._devices:
            dev.stats = {
                "address": dev.cfg.address,
                "profile": dev.profile.name,
                "status": "unknown",
                "polls": 0,
                "ok": 0,
                "timeouts": 0,
                "errors": 0,
                "last_error": None,
                "last_interval_s": None,
            }
            self.state.devices[dev.cfg.id] = dev.stats

    async def run(self, sink: Sink) -> None:
        queue: asyncio.Queue[list[Record]] = asyncio.Queue(_SUBMIT_QUEUE)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._submitter(queue, sink), name=f"{self.name}-submit")
                await self._bus(queue)
        finally:
            self.state.set_status(SourceStatus.STOPPED)

    async def _submitter(self, queue: asyncio.Queue[list[Record]], sink: Sink) -> None:
        while True:
            records = await queue.get()
            while not queue.empty() and len(records) < 2000:
                records.extend(queue.get_nowait())
            await sink.submit(records)
            self.state.last_reading_at = time.time()
            self.state.count("records", len(records))

    async def _bus(self, queue: asyncio.Queue[list[Record]]) -> None:
        backoff = Backoff(self.cfg.backoff_initial_s, self.cfg.backoff_max_s)
        while True:
            client = AsyncModbusSerialClient(
                self.cfg.port,
                framer=FramerType.RTU,
                baudrate=self.cfg.baudrate,
                bytesize=self.cfg.bytesize,
                parity=self.cfg.parity,
                stopbits=self.cfg.stopbits,
                # Our own per-device timeout bounds each request; pymodbus's is a backstop.
                timeout=max((d.timeout_s for d in self.cfg.devices), default=1.0) * 4,
                retries=0,
                reconnect_delay=0,
            )
            try:
                if not await self._connect(client):
                    self._reconnecting(f"cannot open {self.cfg.port}")
                    await asyncio.sleep(backoff.next_delay())
                    continue
                backoff.reset()
                self.state.set_status(SourceStatus.RUNNING)
                log.info(
                    "%s: polling %d device(s) on %s", self.name, len(self._devices), self.cfg.port
                )
                await self._poll_loop(client, queue)
                self._reconnecting(f"{self.cfg.port} went away")
                self.state.count("port_lost")
            finally:
                client.close()
            await asyncio.sleep(backoff.next_delay())

    async def _connect(self, client: AsyncModbusSerialClient) -> bool:
        # A missing adapter is the usual case on site: say so without asking pymodbus, and
        # never let an open that hangs (a wedged USB adapter) hold the bus task forever.
        if not os.path.exists(self.cfg.port):  # noqa: ASYNC240 - one stat of a device node
            return False
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                ok = bool(await client.connect())
        except TimeoutError:
            ok = False
        _raise_swallowed_cancel()
        return ok

    def _reconnecting(self, error: str) -> None:
        if self.state.status != SourceStatus.RECONNECTING:
            log.warning("%s: %s; retrying with backoff", self.name, error)
        self.state.set_status(SourceStatus.RECONNECTING, error)

    async def _poll_loop(
        self, client: AsyncModbusSerialClient, queue: asyncio.Queue[list[Record]]
    ) -> None:
        """Poll devices in due order until the port is lost."""
        if not self._devices:
            await asyncio.Event().wait()  # nothing configured: idle until cancelled
        now = time.monotonic()
        # Spread first polls a little so devices with equal intervals do not queue up.
        heap: list[tuple[float, int]] = []
        for i, dev in enumerate(self._devices):
            dev.due = now + i * self.cfg.inter_frame_delay_s
            heap.append((dev.due, i))
        heapq.heapify(heap)
        while client.connected:
            due, i = heapq.heappop(heap)
            dev = self._devices[i]
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            # How late the bus let this poll start: bounded by one other device's timeout.
            late = round(max(0.0, time.monotonic() - due), 4)
            if late > float(dev.stats.get("late_max_s") or 0.0):
                dev.stats["late_max_s"] = late
            records = await self._poll(client, dev)
            if records:
                await queue.put(records)
            dev.due = self._next_due(dev, due)
            heapq.heappush(heap, (dev.due, i))
            # Bus silence between transactions (RTU 3.5 char times, slow slaves more).
            await asyncio.sleep(self.cfg.inter_frame_delay_s)

    def _next_due(self, dev: _Device, due: float) -> float:
        now = time.monotonic()
        if dev.dead:
            # Probe a dead device at growing, jittered gaps: it costs the bus one
            # timeout per probe instead of one per cycle.
            dev.probe_gap = min(
                self.cfg.dead_probe_max_s, max(dev.cfg.interval_s, dev.probe_gap * 2)
            )
            return now + dev.probe_gap * self._rng.uniform(0.8, 1.2)
        nxt = due + dev.cfg.interval_s
        # Fallen behind (bus too slow for the schedule): skip missed slots, keep the phase.
        if nxt < now:
            missed = int((now - nxt) // dev.cfg.interval_s) + 1
            self.state.count("missed_slots", missed)
            nxt += missed * dev.cfg.interval_s
        return nxt

    async def _poll(self, client: AsyncModbusSerialClient, dev: _Device) -> list[Record]:
        st = dev.stats
        st["polls"] = int(st["polls"] or 0) + 1
        self.state.count("polls")
        try:
            data = await self._read_device(client, dev)
            values = decode_profile(dev.profile, data)
        except (PollError, DecodeError) as err:
            code = err.code
            dev.failures += 1
            key = "timeouts" if code == "timeout" else "errors"
            st[key] = int(st[key] or 0) + 1
            st["last_error"] = str(err)
            self.state.count(f"poll_{code}")
            if dev.failures >= self.cfg.dead_after and not dev.dead:
                dev.dead = True
                dev.probe_gap = dev.cfg.interval_s
                st["status"] = "dead"
                log.warning(
                    "%s: device %s (address %d) not answering: %s; probing less often",
                    self.name,
                    dev.cfg.id,
                    dev.cfg.address,
                    err,
                )
            elif not dev.dead:
                st["status"] = "failing"
            return []
        now = time.monotonic()
        if dev.dead:
            log.info("%s: device %s answers again", self.name, dev.cfg.id)
        if dev.last_ok is not None:
            st["last_interval_s"] = round(now - dev.last_ok, 3)
        if dev.first_ok is None:
            dev.first_ok = now
            dev.ok_since_first = 0
        else:
            dev.ok_since_first += 1
            st["mean_interval_s"] = round((now - dev.first_ok) / dev.ok_since_first, 4)
        dev.last_ok = now
        dev.failures = 0
        dev.dead = False
        dev.probe_gap = 0.0
        st["ok"] = int(st["ok"] or 0) + 1
        st["status"] = "ok"
        st["last_ok_at"] = time.time()
        # In the device's units: the pipeline normalizes.
        return [
            Reading(dev.cfg.id, reg.metric, value, reg.unit, source=self.name)
            for reg, value in values
        ]

    async def _read_device(
        self, client: AsyncModbusSerialClient, dev: _Device
    ) -> Mapping[Block, list[int]]:
        out: dict[Block, list[int]] = {}
        for blk in dev.blocks:
            out[blk] = await self._read_block(client, dev, blk)
            if len(dev.blocks) > 1:
                await asyncio.sleep(self.cfg.inter_frame_delay_s)
        return out

    async def _read_block(
        self, client: AsyncModbusSerialClient, dev: _Device, blk: Block
    ) -> list[int]:
        last: PollError | None = None
        # A device already known dead gets one try per probe: it costs one timeout.
        tries = 1 if dev.dead else dev.cfg.retries + 1
        for attempt in range(tries):
            if attempt:
                await asyncio.sleep(self.cfg.inter_frame_delay_s)
            try:
                async with asyncio.timeout(dev.cfg.timeout_s):
                    rr: Any
                    if blk.function == "holding":
                        rr = await client.read_holding_registers(
                            blk.start, count=blk.count, device_id=dev.cfg.address
                        )
                    else:
                        rr = await client.read_input_registers(
                            blk.start, count=blk.count, device_id=dev.cfg.address
                        )
            except TimeoutError:
                _raise_swallowed_cancel()
                last = PollError(
                    "timeout",
                    f"no answer from address {dev.cfg.address} in {dev.cfg.timeout_s:g} s",
                )
                continue
            except ModbusException as err:
                _raise_swallowed_cancel()
                last = PollError("io", f"address {dev.cfg.address}: {err}")
                continue
            _raise_swallowed_cancel()
            if rr.isError():
                # The device answered with a Modbus exception: retrying will not help.
                code = getattr(rr, "exception_code", "?")
                raise PollError(
                    "exception",
                    f"address {dev.cfg.address} answered exception code {code} "
                    f"for {blk.function} {blk.start}+{blk.count}",
                )
            regs = list(rr.registers)
            if len(regs) < blk.count:
                raise PollError(
                    "io", f"address {dev.cfg.address}: {len(regs)} registers, asked {blk.count}"
                )
            return regs[: blk.count]
        assert last is not None
        raise last
