"""A paho subscriber for the tests: an independent MQTT client that records what it sees."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt


@dataclass
class Seen:
    topic: str
    payload: bytes
    retain: bool


@dataclass
class Watcher:
    msgs: list[Seen] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def add(self, s: Seen) -> None:
        with self.cond:
            self.msgs.append(s)
            self.cond.notify_all()

    def wait_for(self, pred: Callable[[Seen], bool], timeout: float = 20.0, after: int = 0) -> Seen:
        """The first message at index >= ``after`` matching ``pred`` (waiting for it)."""
        deadline = time.monotonic() + timeout
        i = after
        with self.cond:
            while True:
                while i < len(self.msgs):
                    if pred(self.msgs[i]):
                        return self.msgs[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"not seen in {timeout}s; last: {self.msgs[-5:]}")
                self.cond.wait(left)

    def index(self, m: Seen) -> int:
        with self.cond:
            return next(i for i, x in enumerate(self.msgs) if x is m)


@contextmanager
def watch(host: str, port: int, topic: str = "#") -> Iterator[Watcher]:
    w = Watcher()
    ready = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        w.add(Seen(m.topic, bytes(m.payload), bool(m.retain)))

    def on_subscribe(*_a: object) -> None:
        ready.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_message = on_message
    c.on_subscribe = on_subscribe
    c.on_connect = lambda cl, *_a: cl.subscribe(topic, qos=1)
    c.connect(host, port)
    c.loop_start()
    try:
        assert ready.wait(10), "subscriber did not get SUBACK"
        yield w
    finally:
        c.disconnect()
        c.loop_stop()
