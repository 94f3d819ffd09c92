"""A live simulated hamlet: every device of a scenario on its transport, until stopped.

:class:`Simulation` is an async context manager owning its tasks: on entry the ptys, the
Modbus buses and the MQTT clients come up (``ready`` is then true); on exit devices stop,
MQTT devices say ``offline`` and disconnect cleanly, ports close and links disappear.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from firmware_sim.devices import Device, build_devices
from firmware_sim.modbus_tx import ModbusBus
from firmware_sim.mqtt_tx import MqttDevice, MqttTarget
from firmware_sim.scenario import (
    Scenario,
    ScheduledFault,
    SerialFaults,
    Transport,
    replicate,
)
from firmware_sim.serial_tx import SerialLink, SerialNode
from firmware_sim.timebase import SimClock, parse_start


class SimError(Exception):
    """The simulation cannot start (a broker that does not answer, a path in use...)."""


@dataclass
class RunOptions:
    speed: float = 1.0
    start: str | None = None  # overrides the scenario's start
    seed: int | None = None
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    serial_paths: dict[str, str] = field(default_factory=dict)  # link name -> path
    modbus_paths: dict[str, str] = field(default_factory=dict)
    interval_s: float | None = None  # overrides every device's reporting interval
    serial_faults: SerialFaults | None = None
    mqtt_duplicate: float | None = None
    replicate: int = 1  # copies of every MQTT/serial device (load)
    schedule: list[ScheduledFault] = field(default_factory=list)
    connect_timeout_s: float = 30.0


Say = Callable[[str], None]


class Simulation:
    def __init__(
        self,
        scenario: Scenario,
        opts: RunOptions,
        say: Say = print,
        abort: asyncio.Event | None = None,
    ) -> None:
        self.abort = abort or asyncio.Event()  # set to give up waiting for the broker
        self.scn = scenario
        self.opts = opts
        self.say = say
        if opts.seed is not None:
            self.scn = scenario.model_copy(update={"seed": opts.seed})
        self.scn = replicate(self.scn, opts.replicate)
        start = parse_start(opts.start or scenario.start)
        self.clock = SimClock(start, opts.speed)
        self.devices: list[Device] = build_devices(self.scn, start)
        self.by_id = {d.id: d for d in self.devices}
        self.stats: Counter[str] = Counter()
        self.serial_links: dict[str, SerialLink] = {}
        self.serial_nodes: list[SerialNode] = []
        self.buses: dict[str, ModbusBus] = {}
        self.mqtt: dict[str, MqttDevice] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._stack = contextlib.AsyncExitStack()

    def _interval(self, d: Device) -> float:
        return self.opts.interval_s or d.spec.interval_s

    def _path(self, kind: str, name: str, given: dict[str, str]) -> str:
        if name in given:
            return given[name]
        if len(given) == 1 and "" in given:
            return given[""]
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hamlet-sim-")
        return str(Path(self._tmp.name) / f"{kind}-{name}")

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def _start(self) -> None:
        scn = self.scn
        faults = self.opts.serial_faults or scn.faults.serial
        serial_devs = [d for d in self.devices if d.spec.transport == Transport.SERIAL]
        modbus_devs = [d for d in self.devices if d.spec.transport == Transport.MODBUS]
        mqtt_devs = [d for d in self.devices if d.spec.transport == Transport.MQTT]
        for lk in scn.links:
            if lk.kind == "serial":
                path = self._path("serial", lk.name, self.opts.serial_paths)
                link = SerialLink(lk.name, path, faults, scn.seed, self.stats)
                link.open()
                self.serial_links[lk.name] = link
                self.say(f"sim serial {lk.name} at {path}")
            else:
                path = self._path("modbus", lk.name, self.opts.modbus_paths)
                devs = [d for d in modbus_devs if scn.link_of(d.spec) == lk.name]
                bus = ModbusBus(
                    lk.name, path, devs, self.clock, baudrate=lk.baudrate, stats=self.stats
                )
                await self._stack.enter_async_context(bus)
                self.buses[lk.name] = bus
                self.say(f"sim modbus {lk.name} at {path}")
        target = MqttTarget(self.opts.mqtt_host, self.opts.mqtt_port, scn.topic_prefix)
        for d in mqtt_devs:
            hb = self.opts.interval_s or d.spec.heartbeat_s
            dup = self.opts.mqtt_duplicate
            m = MqttDevice(
                d,
                target,
                self.clock,
                interval_s=self._interval(d),
                heartbeat_s=hb,
                stats=self.stats,
                duplicate=scn.faults.mqtt.duplicate if dup is None else dup,
            )
            self.mqtt[d.id] = m
            self._tasks.append(asyncio.create_task(m.run(), name=f"mqtt:{d.id}"))
        if mqtt_devs:
            await self._wait_connected(target)
        for d in serial_devs:
            node = SerialNode(
                d, self.serial_links[scn.link_of(d.spec)], self.clock, self._interval(d), self.stats
            )
            self.serial_nodes.append(node)
            self._tasks.append(asyncio.create_task(node.run(), name=f"serial:{d.id}"))
        for f in [*scn.faults.schedule, *self.opts.schedule]:
            self._tasks.append(asyncio.create_task(self._scheduled(f), name=f"fault:{f.kind}"))

    async def _wait_connected(self, target: MqttTarget) -> None:
        """Ready means every MQTT device that is powered now has said "online"."""
        now = self.clock.now()
        waits = [m.connected.wait() for m in self.mqtt.values() if m.dev.powered(now)]
        all_up: asyncio.Future[object] = asyncio.ensure_future(asyncio.gather(*waits))
        aborted: asyncio.Future[object] = asyncio.ensure_future(self.abort.wait())
        done, _ = await asyncio.wait(
            {all_up, aborted},
            timeout=self.opts.connect_timeout_s,
            return_when=asyncio.FIRST_COMPLETED,
        )
        for f in (all_up, aborted):
            if not f.done():
                f.cancel()
        await asyncio.gather(all_up, aborted, return_exceptions=True)
        if aborted in done:
            raise SimError("stopped before the MQTT devices were connected")
        if all_up not in done:
            raise SimError(
                f"MQTT broker at {target.host}:{target.port} did not accept the devices within "
                f"{self.opts.connect_timeout_s:g} s; start one (mosquitto, or 'hamlet demo') "
                f"or pass --mqtt-host/--mqtt-port"
            )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        for n in self.serial_nodes:
            n.stop()
        for m in self.mqtt.values():
            m.stop()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=10)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    self.say(f"sim task {t.get_name()} failed: {t.exception()!r}")
            self._tasks.clear()
        for link in self.serial_links.values():
            link.close()
        await self._stack.aclose()
        if self._tmp is not None:
            self._tmp.cleanup()

    # --- faults ------------------------------------------------------------------------
    async def _scheduled(self, f: ScheduledFault) -> None:
        when = self.clock.start + f.at_s
        await asyncio.sleep(self.clock.real_delay(when - self.clock.now()))
        await self.inject(f)

    async def inject(self, f: ScheduledFault) -> None:
        """Apply one fault now; timed faults undo themselves after ``duration_s`` (sim)."""
        if f.kind == "unplug":
            links = [lk for n, lk in self.serial_links.items() if f.target in ("", n)]
            buses = [b for n, b in self.buses.items() if f.target in ("", n)]
            for lk in links:
                lk.unplug()
                self.say(f"sim unplugged {lk.name}")
            for b in buses:
                b.bridge.unplug_b()
                self.say(f"sim unplugged {b.name}")
            await asyncio.sleep(self.clock.real_delay(f.duration_s))
            for lk in links:
                lk.replug()
                self.say(f"sim replugged {lk.name}")
            for b in buses:
                b.bridge.plug_b()
                self.say(f"sim replugged {b.name}")
        elif f.kind == "dead_slave":
            hit = [
                (b, d.spec.address)
                for b in self.buses.values()
                for d in b.devices
                if f.target in ("", d.id)
            ]
            for b, a in hit:
                b.dead.add(a)
            self.say(f"sim dead slave {f.target or 'all'}")
            await asyncio.sleep(self.clock.real_delay(f.duration_s))
            for b, a in hit:
                b.dead.discard(a)
            self.say(f"sim revived slave {f.target or 'all'}")
        elif f.kind == "broker_drop":
            for i, m in self.mqtt.items():
                if f.target in ("", i):
                    m.drop(f.duration_s)
            self.say(f"sim broker drop {f.target or 'all'}")
        elif f.kind == "clock_jump":
            for d in self.devices:
                if f.target in ("", d.id):
                    d.firmware.clock_jump(f.jump_s)
            self.say(f"sim clock jump {f.jump_s:+g}s {f.target or 'all'}")
        elif f.kind == "reboot":
            now = self.clock.now()
            for d in self.devices:
                if f.target in ("", d.id):
                    d.firmware.reboot(now)
            self.say(f"sim reboot {f.target or 'all'}")
