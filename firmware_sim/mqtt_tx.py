"""MQTT devices: each device its own client with a retained last-will, as ESP32 firmware does.

Project JSON (``hamlet/<id>/telemetry|heartbeat|event``, retained ``status``), or the topic
layouts of Tasmota (``tele/<id>/SENSOR``, ``tele/<id>/LWT``) and ESPHome
(``<id>/sensor/<name>/state``, ``<id>/status``) for devices running that firmware.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiomqtt

from firmware_sim.devices import Device
from firmware_sim.services import SimEvent
from firmware_sim.timebase import SimClock, local

EVENT_TICK_S = 1.0  # real seconds between checks for due kiosk/radio events


@dataclass(frozen=True, slots=True)
class MqttTarget:
    host: str
    port: int
    prefix: str = "hamlet"


class MqttDevice:
    """One device's MQTT life: connect, say online, report, reconnect, go offline."""

    def __init__(
        self,
        dev: Device,
        target: MqttTarget,
        clock: SimClock,
        *,
        interval_s: float,
        heartbeat_s: float,
        stats: Counter[str],
        duplicate: float = 0.0,
    ) -> None:
        self.duplicate = duplicate
        self.dev = dev
        self.target = target
        self.clock = clock
        self.interval_s = interval_s
        self.heartbeat_s = heartbeat_s
        self.stats = stats
        self.connected = asyncio.Event()  # set on the first successful connect
        self._wake = asyncio.Event()
        self._stopping = False
        self._drop_for: float | None = None  # simulated seconds to stay away after a drop
        self._rain_tips = 0
        self.flavour = dev.spec.flavour
        self._rng = random.Random(dev.id)

    # --- control -------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def drop(self, away_s: float) -> None:
        """Lose the connection abruptly (no DISCONNECT): the broker fires the last-will."""
        self._drop_for = away_s
        self._wake.set()

    # --- topics ----------------------------------------------------------------------
    def _status(self) -> tuple[str, bytes, bytes]:
        i = self.dev.id
        if self.flavour == "tasmota":
            return f"tele/{i}/LWT", b"Online", b"Offline"
        if self.flavour == "esphome":
            return f"{i}/status", b"online", b"offline"
        return f"{self.target.prefix}/{i}/status", b"online", b"offline"

    def _topic(self, kind: str) -> str:
        return f"{self.target.prefix}/{self.dev.id}/{kind}"

    def _envelope(self, t: float) -> dict[str, Any]:
        fw = self.dev.firmware
        msg: dict[str, Any] = {"id": self.dev.id, "seq": fw.next_seq()}
        ts = fw.device_time(t)
        if ts is not None:
            msg["ts"] = ts
        return msg

    # --- publishing ----------------------------------------------------------------------
    async def _pub(
        self, client: aiomqtt.Client, topic: str, payload: bytes | str, retain: bool = False
    ) -> None:
        await client.publish(topic, payload, qos=1, retain=retain, timeout=10)
        self.stats["mqtt_published"] += 1
        if not retain and self.duplicate and self._rng.random() < self.duplicate:
            # A retry after a lost PUBACK: the same message (same seq) arrives twice.
            await client.publish(topic, payload, qos=1, timeout=10)
            self.stats["mqtt_duplicates"] += 1

    async def _telemetry(self, client: aiomqtt.Client, t: float) -> None:
        readings = self.dev.sample(t)
        if not readings:
            # A sensor dropout: the firmware counted the message it failed to send.
            self.dev.firmware.next_seq()
            self.stats["sensor_dropouts"] += 1
            return
        if self.flavour == "esphome":
            for metric, v in readings.items():
                await self._pub(client, f"{self.dev.id}/sensor/{metric}/state", f"{v:g}")
            return
        if self.flavour == "tasmota":
            self._rain_tips += round(readings.get("rain", 0.0) / self.dev.spec.mm_per_tip)
            body: dict[str, Any] = {
                "Time": local(t).strftime("%Y-%m-%dT%H:%M:%S"),
                "BME280": {
                    "Temperature": readings.get("air_temp"),
                    "Humidity": readings.get("humidity"),
                },
                "COUNTER": {"C1": self._rain_tips},
                "TempUnit": "C",
            }
            await self._pub(client, f"tele/{self.dev.id}/SENSOR", json.dumps(body))
            return
        msg = self._envelope(t)
        msg["readings"] = readings
        await self._pub(client, self._topic("telemetry"), json.dumps(msg))

    async def _heartbeat(self, client: aiomqtt.Client, t: float) -> None:
        hb = self.dev.heartbeat(t)
        if self.flavour == "tasmota":
            up = int(hb["uptime"])
            body = {
                "Time": local(t).strftime("%Y-%m-%dT%H:%M:%S"),
                "UptimeSec": up,
                "Wifi": {"Signal": hb["rssi"]},
            }
            await self._pub(client, f"tele/{self.dev.id}/STATE", json.dumps(body))
            return
        if self.flavour == "esphome":
            await self._pub(client, f"{self.dev.id}/sensor/uptime/state", f"{hb['uptime']:g}")
            return
        msg = self._envelope(t)
        msg["readings"] = hb
        await self._pub(client, self._topic("heartbeat"), json.dumps(msg))

    async def _event(self, client: aiomqtt.Client, e: SimEvent) -> None:
        msg = self._envelope(e.t)
        msg["event"] = e.name
        msg["attrs"] = e.attrs
        await self._pub(client, self._topic("event"), json.dumps(msg))
        self.stats[f"event.{e.name}"] += 1

    # --- life ----------------------------------------------------------------------------
    async def _sleep_sim(self, sim_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.clock.real_delay(sim_s)):
                await self._wake.wait()

    async def run(self) -> None:
        backoff = 0.3
        topic, online, offline = self._status()
        while not self._stopping:
            self._wake.clear()
            now = self.clock.now()
            if not self.dev.powered(now):
                # Switched off: look again within a simulated minute (a real second at most).
                await self._sleep_sim(min(60.0, self.clock.speed))
                continue
            if self._drop_for is not None:
                away, self._drop_for = self._drop_for, None
                await self._sleep_sim(away)
                continue
            client = aiomqtt.Client(
                self.target.host,
                self.target.port,
                identifier=f"sim-{self.dev.id}",
                will=aiomqtt.Will(topic, offline, qos=1, retain=True),
                keepalive=15,
                timeout=10,
            )
            try:
                async with client:
                    backoff = 0.3
                    await self._pub(client, topic, online, retain=True)
                    self.connected.set()
                    self.stats["mqtt_connects"] += 1
                    ended = await self._session(client)
                    if ended == "stop":
                        # A clean shutdown: say offline ourselves (the will is for crashes).
                        await self._pub(client, topic, offline, retain=True)
                    else:
                        await self._abort(client)
            except aiomqtt.MqttError:
                self.stats["mqtt_errors"] += 1
                if self._stopping:
                    return
                await self._sleep_real(backoff * (0.5 + self._rng.random()))
                backoff = min(backoff * 2, 5.0)

    async def _sleep_real(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _abort(self, client: aiomqtt.Client) -> None:
        """Cut the TCP connection without DISCONNECT (power loss, Wi-Fi gone)."""
        self.stats["mqtt_drops"] += 1
        # aiomqtt has no public "die" call: shut the paho socket down and wait for paho
        # to notice, so leaving the context does not try a graceful DISCONNECT.
        sock = client._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.shield(client._disconnected)

    async def _session(self, client: aiomqtt.Client) -> str:
        now = self.clock.now()
        sensor = not self.dev.is_service
        phase = self._rng.random()
        next_tel = now + phase * min(self.interval_s, 5.0 * self.clock.speed)
        next_hb = now + phase * min(self.heartbeat_s, 5.0 * self.clock.speed)
        events_from = now
        while True:
            self._wake.clear()
            if self._stopping:
                return "stop"
            if self._drop_for is not None:
                return "drop"
            now = self.clock.now()
            if not self.dev.powered(now):
                return "power"
            if self.dev.firmware.maybe_reboot(now):
                self.stats["reboots"] += 1
            if self.dev.is_service:
                for e in self.dev.events_between(events_from, now):
                    await self._event(client, e)
                events_from = now
            if sensor and now >= next_tel:
                await self._telemetry(client, now)
                next_tel = max(next_tel + self.interval_s, now)
            if now >= next_hb:
                await self._heartbeat(client, now)
                next_hb = max(next_hb + self.heartbeat_s, now)
            wake = min(next_tel if sensor else next_hb, next_hb)
            real = self.clock.real_delay(wake - self.clock.now())
            if self.dev.is_service:
                real = min(real, EVENT_TICK_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, real)):
                    await self._wake.wait()
