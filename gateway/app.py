"""The gateway: buffer, pipeline, uplink, heartbeat, control socket and supervised sources.

Shutdown order matters: sources stop first (they ack nothing more), then the pipeline's
last group commit lands, then the uplink and the buffer close. Nothing unconfirmed is
deleted on the way out: the next start sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING

from gateway.buffer import DurableBuffer
from gateway.clock import Clock
from gateway.control import ControlServer
from gateway.control_protocol import socket_path
from gateway.heartbeat import Heartbeat
from gateway.notify.trigger import EdgeTrigger
from gateway.pipeline import Pipeline
from gateway.sources.base import Source, SourceStatus
from gateway.status_report import StatusReporter
from gateway.supervision import EXIT_FAILED, Supervision
from gateway.uplink import Uplink
from hamlet.backoff import Backoff
from hamlet.tasks import stop_tasks

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

log = logging.getLogger(__name__)

# A source that ran this long before failing was healthy: restart backoff starts afresh.
_HEALTHY_AFTER_S = 30.0
# A source that failed this often in a row, never healthy in between, is not recovering in
# this process: the gateway exits for a clean restart (its other sources lose nothing by it).
_MAX_QUICK_FAILURES = 5
# How long a dying gateway waits for its last heartbeat to commit.
_LAST_WORD_S = 5.0


def _build_sources(config: GatewayConfig) -> list[Source]:
    from gateway.sources.registry import build_sources

    return build_sources(config.sources)


class Gateway:
    """Async context manager owning every component and task of a running gateway."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        sources: list[Source] | None = None,
        source_backoff_s: float = 1.0,
    ) -> None:
        self.config = config
        self._source_backoff_s = source_backoff_s
        self.clock = Clock(config.clock)
        self.buffer = DurableBuffer(config.buffer, config.data_dir, self.clock.boot_id)
        self.pipeline = Pipeline(self.buffer, self.clock)
        self.uplink = Uplink(config.uplink, config.id, self.buffer, self.clock)
        self.sources: list[Source] = sources if sources is not None else _build_sources(config)
        self.started_mono = time.monotonic()
        self.started_loop = 0.0
        self.tail_dropped = 0
        self.edge: EdgeTrigger | None = None  # [edge_alerts]: SMS while the uplink is down
        self._stack = AsyncExitStack()
        self._source_tasks: list[asyncio.Task[None]] = []
        self.supervision = Supervision(config.data_dir)

    @property
    def control_path(self) -> str:
        return str(socket_path(self.config.data_dir))

    async def __aenter__(self) -> Gateway:
        self.started_loop = asyncio.get_running_loop().time()
        try:
            sv = self.supervision
            await self._stack.enter_async_context(self.buffer)
            sv.start()  # after the buffer made sure data_dir exists
            sv.watch("committer", self.buffer.task)
            edge = self.config.edge_alerts
            # Before the uplink: its first post must already report what was sent.
            if edge.enabled and edge.modem is not None:
                self.edge = await self._stack.enter_async_context(
                    EdgeTrigger(
                        edge, self.pipeline, self.uplink, str(self.config.uplink.url),
                        self.config.uplink.token.get_secret_value(), self.config.hamlet,
                        self.config.data_dir,
                    )
                )  # fmt: skip
                for task in self.edge.tasks:
                    sv.watch(task.get_name(), task)
            await self._stack.enter_async_context(self.uplink)
            sv.watch("uplink", self.uplink.task)
            await self._stack.enter_async_context(
                ControlServer(self, socket_path(self.config.data_dir))
            )
            self.heartbeat = await self._stack.enter_async_context(
                Heartbeat(self, self.config.heartbeat_interval_s)
            )
            sv.watch("heartbeat", self.heartbeat.task)
            self.status_report = await self._stack.enter_async_context(
                StatusReporter(self, self.config.status_report)
            )
            sv.watch("status report", self.status_report.task)
            # Registered last, so it runs first on exit: sources stop before anything else.
            self._stack.push_async_callback(self._stop_sources)
            for src in self.sources:
                task = asyncio.create_task(self._supervise(src), name=f"source-{src.name}")
                self._source_tasks.append(task)
                sv.watch(f"source {src.name}", task)
        except BaseException:
            self.supervision.closing = True
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.supervision.closing = True  # from here on, tasks ending is the plan
        await self._stack.aclose()

    async def last_word(self) -> None:
        """A component died: a last heartbeat that says so, if the committer still runs."""
        if "committer" in self.supervision.failures or "heartbeat" in self.supervision.failures:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_LAST_WORD_S):
                await self.heartbeat.beat()
                if "status report" not in self.supervision.failures:
                    await self.status_report.send()  # which component died, for the page

    async def _stop_sources(self) -> None:
        await stop_tasks(self._source_tasks)
        for src in self.sources:
            src.state.set_status(SourceStatus.STOPPED)

    async def _supervise(self, src: Source) -> None:
        """Run a source forever; on failure record why and restart after a backoff."""
        backoff = Backoff(base_s=self._source_backoff_s, cap_s=60.0)
        quick = 0
        while True:
            began = time.monotonic()
            try:
                await src.run(self.pipeline)
                reason = "run() returned"
            except asyncio.CancelledError:
                raise
            except Exception as err:
                reason = f"{type(err).__name__}: {err}"
                log.exception("source %s failed", src.name)
            if time.monotonic() - began > _HEALTHY_AFTER_S:
                backoff.reset()
                quick = 0
            quick += 1
            src.state.set_status(SourceStatus.FAILED, reason)
            if quick >= _MAX_QUICK_FAILURES:
                self.supervision.fail(f"source {src.name}", f"failed {quick} times: {reason}")
                return
            delay = backoff.next_delay()
            src.state.count("restarts")
            log.error("source %s stopped (%s); restarting in %.1f s", src.name, reason, delay)
            await asyncio.sleep(delay)


async def run_gateway(
    config: GatewayConfig, *, ready: Callable[[Gateway], None] | None = None
) -> None:
    """Run until SIGTERM or SIGINT, then shut down cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            gateway = Gateway(config)
        except ValueError as err:  # e.g. two sources with one name: a config mistake
            log.error("gateway: %s", err)  # noqa: TRY400 - the message is the whole story
            raise SystemExit(2) from err
        try:
            async with gateway as gw:
                print(f"gateway {config.id} running", flush=True)
                sys.stdout.flush()
                if ready is not None:
                    ready(gw)
                await _first(stop, gw.supervision.failed)
                if gw.supervision.failures:
                    await gw.last_word()
                log.info("gateway %s stopping", config.id)
        except PermissionError as err:
            log.error(  # noqa: TRY400
                "gateway: no permission for %s (%s). Run as the hamlet user or fix the owner "
                "of data_dir. / Không có quyền ghi vào thư mục dữ liệu.",
                err.filename,
                err.strerror,
            )
            raise SystemExit(2) from err
        except Exception as err:
            if gateway.supervision.failures:
                # The dead component's error, re-raised on the way out: already reported.
                raise SystemExit(EXIT_FAILED) from err
            raise
        if gateway.supervision.failures:
            raise SystemExit(EXIT_FAILED)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _first(*events: asyncio.Event) -> None:
    """Return as soon as any of ``events`` is set."""
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
