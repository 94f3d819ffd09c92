"""Alerts the engine opened or closed become notifier events.

Woken after each ingest batch has settled (the same hook that feeds the alert engine) and
when the engine's sweeper opens an alert by itself (a gateway silent, a kiosk down), it
waits for the engine to evaluate what is queued, reads the alerts changed since its cursor and
enqueues their start and end. The cursor is kept in the notifier's database; enqueuing is
idempotent, so a crash between the two only repeats work, never a message.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3

from hamlet.contract import IngestResult, UplinkBatch
from hamlet.tasks import TaskOwner
from server.alerts.engine import AlertEngine, AlertEngineDown
from server.notify.bridge import UnknownAlertShape, event_from_alert
from server.notify.dispatcher import Dispatcher
from server.notify.model import Phase
from server.registry import GatewayRow
from server.store.base import Store

log = logging.getLogger(__name__)
MAX_ROWS = 1000  # per read; the next wake continues


def changed_alerts(conn: sqlite3.Connection, since_ms: int) -> list[dict[str, object]]:
    cur = conn.execute(
        "SELECT * FROM alerts WHERE updated_ms > ? AND state = 'active'"
        " ORDER BY updated_ms LIMIT ?",
        (since_ms, MAX_ROWS),
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


class AlertFeed(TaskOwner):
    def __init__(self, engine: AlertEngine, store: Store, dispatcher: Dispatcher) -> None:
        super().__init__()
        self.engine = engine
        self.store = store
        self.dispatcher = dispatcher
        self._wake = asyncio.Event()
        self.events = 0
        # Silences the engine's sweeper opens (gateway silent, device down) come with no
        # ingest batch: the engine says so, and they go out at once.
        engine.on_sweep_opened.append(self._wake.set)

    async def on_settled(
        self, gw: GatewayRow, batch: UplinkBatch, result: IngestResult, now_ms: int
    ) -> None:
        self._wake.set()

    def _start(self) -> None:
        self._wake.set()  # catch up with what changed while the server was down
        self._spawn(self._run(), "notify-alert-feed")

    async def _run(self) -> None:
        nstore = self.dispatcher.store
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.engine.flush()
            except AlertEngineDown:
                log.error("notify: the alert engine has stopped; no new alerts to send")  # noqa: TRY400
                return
            cursor = await asyncio.to_thread(nstore.get_cursor, "alerts")
            rows = await self.store.db.read(changed_alerts, cursor)
            for row in rows:
                try:
                    await self.dispatcher.enqueue(event_from_alert(row, Phase.START))
                    if row.get("end_ms") is not None:
                        await self.dispatcher.enqueue(event_from_alert(row, Phase.END))
                    self.events += 1
                except UnknownAlertShape as err:
                    log.warning("notify: %s", err)
                cursor = max(cursor, int(str(row["updated_ms"])))
            await asyncio.to_thread(nstore.set_cursor, "alerts", cursor)
            if len(rows) == MAX_ROWS:
                self._wake.set()
