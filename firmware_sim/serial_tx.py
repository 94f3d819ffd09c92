"""Serial line-protocol nodes behind one concentrator port (a pty the gateway reads)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter

from firmware_sim.devices import Device
from firmware_sim.faults import LineFaults
from firmware_sim.frames import encode_frame
from firmware_sim.ptylink import PtyPort
from firmware_sim.scenario import SerialFaults
from firmware_sim.timebase import SimClock


class SerialLink:
    """One UART/LoRa concentrator: frames of all its nodes go out of one port."""

    def __init__(
        self, name: str, path: str, faults: SerialFaults, seed: int, stats: Counter[str]
    ) -> None:
        self.name = name
        self.port = PtyPort(path)
        self.faults = LineFaults(faults, random.Random(f"{seed}:{name}"))
        self.stats = stats

    def open(self) -> None:
        self.port.plug()

    def close(self) -> None:
        for chunk in self.faults.flush():
            self.port.write(chunk)
        self.port.drain(1.0)
        self.port.unplug()
        for kind, n in self.faults.counts.items():
            self.stats[f"serial.{self.name}.{kind}"] = n
        # Frames lost because nobody read the port fast enough (the buffer filled up).
        self.stats[f"serial.{self.name}.backlog_flushes"] = self.port.backlog_flushes

    def send(self, frame: bytes) -> None:
        self.stats[f"serial.{self.name}.frames"] += 1
        if not self.port.plugged:
            self.stats[f"serial.{self.name}.lost_unplugged"] += 1
            return
        for chunk in self.faults.apply(frame):
            self.port.write(chunk)

    def unplug(self) -> None:
        self.port.unplug()
        self.stats[f"serial.{self.name}.unplugs"] += 1

    def replug(self) -> None:
        self.port.plug()


class SerialNode:
    """A node's firmware loop: every interval, measure, frame and send."""

    def __init__(
        self, dev: Device, link: SerialLink, clock: SimClock, interval_s: float, stats: Counter[str]
    ) -> None:
        self.dev = dev
        self.link = link
        self.clock = clock
        self.interval_s = interval_s
        self.stats = stats
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    def frame_at(self, t: float) -> bytes | None:
        """The frame the node sends at ``t``; None when it is dead or the frame is lost
        (a sensor dropout still uses up a node seq, so the gateway counts the loss)."""
        fw = self.dev.firmware
        if not self.dev.powered(t):
            return None
        if fw.maybe_reboot(t):
            self.stats["reboots"] += 1
        seq = fw.next_seq()
        readings = self.dev.sample(t)
        if not readings:
            self.stats["sensor_dropouts"] += 1
            return None
        return encode_frame(self.dev.id, seq, fw.device_time(t), readings)

    async def run(self) -> None:
        phase = random.Random(self.dev.id).random()
        next_t = self.clock.now() + phase * min(self.interval_s, 3.0 * self.clock.speed)
        while not self._stop.is_set():
            delay = self.clock.real_delay(next_t - self.clock.now())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()
            if self._stop.is_set():
                return
            frame = self.frame_at(next_t)
            if frame is not None:
                self.link.send(frame)
            # A node that fell behind (host paused) skips rather than bursting.
            next_t = max(next_t + self.interval_s, self.clock.now())
