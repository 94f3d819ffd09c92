"""Which of the gateway's long-lived tasks are alive, and what to do when one dies.

The committer, the uplink, the heartbeat and each source's supervisor must run for as long as
the gateway does. A task that ends on its own (an exception, or returning) is a fault the
process cannot repair from inside: it is recorded (for ``status`` and the heartbeat), written
to ``last-failure.json`` in the data directory (so the next start reports it), and
:attr:`Supervision.failed` is set, on which ``run_gateway`` exits non-zero for systemd to
restart the process. A restart is safe: nothing acknowledged is lost, nothing committed is
stored twice (docs/store-and-forward.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Final

log = logging.getLogger(__name__)

FAILURE_FILE: Final = "last-failure.json"
EXIT_FAILED: Final = 3  # the process exit status when a component died


class Supervision:
    """Watches named tasks; owned by the gateway (no task of its own)."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / FAILURE_FILE
        self.failed = asyncio.Event()
        self.failures: dict[str, str] = {}
        self.components: dict[str, str] = {}
        self.closing = False
        self.previous: dict[str, Any] | None = None

    def start(self) -> None:
        """Take over what ended the previous run: reported for all of this one, then gone."""
        self.previous = read_failure(self._path)
        try:
            self._path.unlink(missing_ok=True)
        except OSError as err:
            log.warning("gateway: cannot remove %s: %s", self._path, err)

    def watch(self, name: str, task: asyncio.Task[Any] | None) -> None:
        if task is None:
            return
        self.components[name] = "running"
        task.add_done_callback(lambda t: self._ended(name, t))

    def fail(self, name: str, reason: str) -> None:
        """Declare ``name`` dead: status, heartbeat and the exit status will say so."""
        if self.closing or name in self.failures:
            return  # the first reason is the one that tells what happened
        self.components[name] = "failed"
        self.failures[name] = reason[:500]
        log.error(
            "gateway: %s died (%s); exiting so that the service manager restarts the gateway. "
            "/ Thành phần %s bị lỗi; cổng sẽ khởi động lại.",
            name,
            reason,
            name,
        )
        write_failure(self._path, {"at": time.time(), "failures": dict(self.failures)})
        self.failed.set()

    def _ended(self, name: str, task: asyncio.Task[Any]) -> None:
        if self.closing or task.cancelled():
            self.components[name] = "stopped"
            return
        err = task.exception()
        self.fail(name, "returned" if err is None else f"{type(err).__name__}: {err}")

    def as_json(self) -> dict[str, Any]:
        return {
            "components": dict(self.components),
            "failures": dict(self.failures),
            "previous_failure": self.previous,
        }


def read_failure(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_failure(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:  # a full disk must not hide the failure itself
        log.error("gateway: cannot record the failure in %s: %s", path, err)  # noqa: TRY400
