"""A real MQTT broker on an ephemeral port for one test: Mosquitto, or amqtt when absent."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import ManagedProcess


def free_port() -> int:
    """An ephemeral port the OS just handed out (brokers cannot report a port-0 bind)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    host: str
    port: int
    kind: str  # "mosquitto" | "amqtt"
    workdir: Path
    process: ManagedProcess

    def _argv(self) -> list[str]:
        return list(self.process.argv)

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill9()

    def start_again(self) -> None:
        """Restart on the same port (a broker restart as clients see it)."""
        self.process = _launch(self.kind, self.port, self.workdir)


def _launch(kind: str, port: int, workdir: Path) -> ManagedProcess:
    if kind == "mosquitto":
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            # `user root`: mosquitto would otherwise drop to its own user, which also clears
            # the parent-death signal that reaps it if the test runner dies.
            f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n"
            f"persistence true\npersistence_location {workdir}/\n"
            "log_type all\nlog_dest stdout\nmax_queued_messages 1000000\n"
            # As on a gateway (docs/installer-guide.md): the default of 20 in-flight QoS1
            # messages per client caps the gateway's commit-then-ack round trips.
            "max_inflight_messages 1000\n"
        )
        # stdbuf: mosquitto block-buffers stdout into a pipe; "running" is printed once the
        # listener accepts connections ("Opening … listen socket" comes before that).
        mp = ManagedProcess(["stdbuf", "-oL", "mosquitto", "-c", str(conf)]).start()
        ready = r"mosquitto version \S+ running"
    else:
        mp = ManagedProcess([sys.executable, "-m", "tests.support.amqtt_broker", str(port)]).start()
        ready = r"^BROKER READY"
    try:
        mp.wait_for(ready, timeout=30)
    except BaseException:
        mp.stop()  # never leave a half-started broker behind
        raise
    return mp


@contextmanager
def start_broker(workdir: Path, *, prefer_mosquitto: bool) -> Iterator[Broker]:
    workdir.mkdir(parents=True, exist_ok=True)
    kind = "mosquitto" if prefer_mosquitto else "amqtt"
    port = free_port()
    broker = Broker("127.0.0.1", port, kind, workdir, _launch(kind, port, workdir))
    try:
        yield broker
    finally:
        broker.stop()
