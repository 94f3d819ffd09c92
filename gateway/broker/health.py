"""What the field broker says about itself: does it let anonymous clients in, and has it
dropped messages (``$SYS/broker/publish/messages/dropped``: a queue that overflowed while
the gateway was away)?

Mosquitto publishes its ``$SYS`` counters retained, every ``sys_interval``, so a fresh
subscriber gets the current values at once.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

DROPPED: Final = "$SYS/broker/publish/messages/dropped"
CONNECTED: Final = "$SYS/broker/clients/connected"
DISCONNECTED: Final = "$SYS/broker/clients/disconnected"
STORED: Final = "$SYS/broker/store/messages/count"
SYS_TOPICS: Final = (DROPPED, CONNECTED, DISCONNECTED, STORED)


class BrokerUnreachable(Exception):
    """No MQTT session could be opened (TCP refused, timeout)."""


@dataclass
class SysCounters:
    values: dict[str, str] = field(default_factory=dict)
    refused: str | None = None  # the broker refused our login: why

    def number(self, topic: str) -> int | None:
        raw = self.values.get(topic)
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            return None


class _Session:
    """One short MQTT session (its own network thread), for a doctor check."""

    def __init__(self, host: str, port: int, username: str | None, password: str | None) -> None:
        self.host, self.port = host, port
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"hamlet-doctor-{os.getpid()}-{threading.get_ident() % 10_000}",
            clean_session=True,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connected = threading.Event()
        self.reason: Any = None
        self.client.on_connect = self._on_connect

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.reason = reason
        self.connected.set()

    def open(self, timeout: float) -> bool:
        """True when the broker accepted the login; False when it refused it."""
        try:
            self.client.connect(self.host, self.port, keepalive=10)
        except OSError as err:
            raise BrokerUnreachable(f"{self.host}:{self.port}: {err}") from err
        self.client.loop_start()
        if not self.connected.wait(timeout):
            self.close()
            raise BrokerUnreachable(f"{self.host}:{self.port}: no answer in {timeout:g} s")
        return not self.reason.is_failure

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def accepts_anonymous(host: str, port: int, timeout: float = 5.0) -> bool:
    """Log in with no user name at all; True when the broker let us in."""
    s = _Session(host, port, None, None)
    try:
        return s.open(timeout)
    finally:
        s.close()


def read_sys(
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    timeout: float = 5.0,
) -> SysCounters:
    """The broker's ``$SYS`` counters that the doctor reads (as the gateway's user)."""
    s = _Session(host, port, username, password)
    out = SysCounters()
    got = threading.Event()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        out.values[msg.topic] = msg.payload.decode("utf-8", errors="replace").strip()
        if all(t in out.values for t in SYS_TOPICS):
            got.set()

    s.client.on_message = on_message
    try:
        if not s.open(timeout):
            out.refused = str(s.reason)
            return out
        s.client.subscribe([(t, 0) for t in SYS_TOPICS])
        got.wait(timeout)
        return out
    finally:
        s.close()
