"""What every input source promises the gateway (its lifecycle contract).

- ``run(sink)`` runs until cancelled. It handles its own transport reconnects (with capped,
  jittered backoff) and keeps ``state`` current. It acknowledges its transport only after
  ``await sink.submit(...)`` returned. Bad input goes to ``sink.reject`` with a reason.
- If ``run`` raises, the gateway's supervisor records the error in the state and restarts it
  after a backoff. One source failing never touches another, except that a source failing
  5 times in a row makes the gateway exit for a clean restart (gateway/supervision.py).
- A source whose transport can deliver one input twice gives each record a ``receipt``
  (gateway/buffer/identity.py), so a copy is recognised and not stored again.
- Config is validated before construction; constructors do no I/O.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from gateway.records import Sink


class SourceStatus(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    FAILED = "failed"  # run() raised; the supervisor will restart it
    STOPPED = "stopped"


@dataclass
class SourceState:
    name: str
    kind: str  # "serial" | "modbus" | "mqtt"
    status: SourceStatus = SourceStatus.STARTING
    since: float = field(default_factory=time.time)  # wall time of the last status change
    last_reading_at: float | None = None
    last_error: str | None = None
    counters: dict[str, int] = field(default_factory=dict)
    # Per-device/per-node detail (frames, CRC failures, gaps, timeouts...).
    devices: dict[str, dict[str, int | float | str | None]] = field(default_factory=dict)

    # Futures of callers waiting in `wait_until`; resolved on every change (event loop only).
    _waiters: list[asyncio.Future[None]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def set_status(self, status: SourceStatus, error: str | None = None) -> None:
        if status != self.status:
            self.status = status
            self.since = time.time()
        if error is not None:
            self.last_error = error
        self.changed()

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n
        self.changed()

    def changed(self) -> None:
        """Wake everyone in :meth:`wait_until` (call after changing fields directly)."""
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_until(
        self, cond: Callable[[SourceState], bool], timeout: float | None = None
    ) -> None:
        """Return once ``cond(self)`` holds, re-checking on every state change.

        For supervisors, status pages and tests: an event, not a polling loop.
        """
        async with asyncio.timeout(timeout):
            while not cond(self):
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._waiters.append(fut)
                await fut


class Source(Protocol):
    name: str
    state: SourceState

    async def run(self, sink: Sink) -> None: ...
