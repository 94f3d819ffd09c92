"""The alert engine: evaluates settled batches off the request path, and silences on a timer.

An async context manager owned by the app's lifespan. It owns two tasks:

- *evaluate*: takes settled batches from a bounded queue (a full queue makes ingest wait:
  back-pressure, never a dropped evaluation) and evaluates them in arrival order. New data
  later than what a series was evaluated up to continues from the saved episode; data at or
  before it (a gateway's late backlog) makes the series replay from stored readings, from the
  last reading before it at which no episode was in progress. Either way the alerts equal
  those of evaluating every reading once in time order.
- *sweep*: sleeps until the next moment a silence (sensor stale, device down in service
  hours, gateway silent) becomes due, opens those alerts, and computes the next due time.
  New subjects and closed alerts wake it early.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
import time
from bisect import bisect_left
from collections.abc import Callable
from types import TracebackType
from typing import Final, Self

from hamlet.alerteval import replay, restart_index
from hamlet.alertrules import (
    RULES,
    AlertSettings,
    Params,
    RuleKind,
    resolve,
    rules_for_metric,
)
from hamlet.contract import (
    MAX_FUTURE_SKEW_MS,
    IngestResult,
    TimeQuality,
    UplinkBatch,
    delta_decode,
)
from hamlet.tasks import stop_tasks
from server.alerts import apply, table
from server.alerts.apply import BatchWork, Replay
from server.alerts.table import Key
from server.models import Resolution
from server.registry import GatewayRow
from server.store.base import Store, StoreError
from server.store.schema import StoreUnavailable

log = logging.getLogger("hamlet.server.alerts")
_UNSYNCED: Final = int(TimeQuality.UNSYNCED)
Points = list[tuple[int, float]]
_READ_LIMIT: Final = 100_000
_MAX_SLEEP_S: Final = 6 * 3600.0  # re-derive the schedule at least this often
_REPLAY_TRIES: Final = 5
_WINDOWS_MS: Final = (3_600_000, 86_400_000, 7 * 86_400_000)
_AHEAD: Final = 32  # readings read past a late batch before trying to settle


class AlertEngineDown(Exception):
    """The evaluator task ended (a bug): alerts are not being evaluated."""


def _settled_to(kind: RuleKind, mark: table.Mark | None) -> int:
    """The latest reset point a replay may stop at: within what was evaluated, and before
    the episode in progress (whose saved state must stay true)."""
    if mark is None:
        return -1
    if mark.state is None:
        return mark.hwm
    # A stuck run may be cut where it starts; a threshold episode only before it.
    return mark.state.start if kind == RuleKind.STUCK else mark.state.start - 1


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def work_of(gw: GatewayRow, batch: UplinkBatch, result: IngestResult, now_ms: int) -> BatchWork:
    """The records of a settled batch the rules look at: not rejected, clock trusted.

    Columnar, like the wire format: the common case (nothing rejected, every clock synced)
    touches no point one by one in Python.
    """
    rejected = {r.seq for r in result.rejected}
    values: dict[tuple[str, str], list[tuple[int, float]]] = {}
    life: dict[str, list[int]] = {}
    for block in batch.series:
        times = delta_decode(block.t)
        vals: list[float] = block.v
        if rejected or (block.q is not None and _UNSYNCED in block.q):
            seqs = delta_decode(block.seq)
            qs = block.q or [0] * len(times)
            keep = [i for i, s in enumerate(seqs) if s not in rejected and qs[i] != _UNSYNCED]
            times, vals = [times[i] for i in keep], [vals[i] for i in keep]
        if not times:
            continue
        life.setdefault(block.device, []).extend(times)
        if rules_for_metric(block.metric):
            values.setdefault((block.device, block.metric), []).extend(
                zip(times, vals, strict=True)
            )
    for ev in batch.events:
        if ev.seq in rejected or ev.q == _UNSYNCED:
            continue
        if ev.name == "status" and ev.attrs.get("state") == "offline":
            continue  # a last will says the device is gone, not alive
        life.setdefault(ev.device, []).append(ev.t)
    return BatchWork(hamlet=gw.hamlet, gateway=gw.id, values=values, life=life, now_ms=now_ms)


Settled = tuple[GatewayRow, UplinkBatch, IngestResult, int]


class AlertEngine:
    def __init__(
        self,
        settings: AlertSettings,
        store: Store,
        *,
        clock: Callable[[], int] = wall_ms,
        queue_size: int = 64,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self._queue: asyncio.Queue[Settled | Replay] = asyncio.Queue(queue_size)
        self._wake = asyncio.Event()
        # Sweeps asked for and done, so flush() waits for a sweep that began after it asked.
        self._sweeps_asked = 0
        self._sweeps_done = 0
        self._swept = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self.batches_evaluated = 0
        self.points_evaluated = 0
        self.replays = 0
        self.failures = 0
        self.busy_s = 0.0
        # Called after a sweep that opened alerts by itself (a gateway silent, a kiosk down:
        # no batch arrives to announce them), so the notifier need not wait for the next one.
        self.on_sweep_opened: list[Callable[[], None]] = []
        # Set on start: the server's own downtime is nobody's silence.
        self.listening_since = 0  # time spent evaluating (the evaluator's own cost, for benches)

    async def __aenter__(self) -> Self:
        self.listening_since = self.clock()
        db = self.store.db
        await db.write(table.ensure_schema)
        self._tasks = [
            asyncio.create_task(self._evaluate(), name="alerts-evaluate"),
            asyncio.create_task(self._sweep(), name="alerts-sweep"),
        ]
        # Batches stored but not evaluated when the last process stopped: replay them.
        for r in await db.read(apply.behind):
            await self._queue.put(r)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(TimeoutError):
            # Finish what was promised; a stuck store must not hold shutdown forever.
            async with asyncio.timeout(10):
                await self._queue.join()
        await stop_tasks(self._tasks)
        self._tasks = []

    # --- the hook ----------------------------------------------------------------------

    async def submit(
        self, gw: GatewayRow, batch: UplinkBatch, result: IngestResult, now_ms: int
    ) -> None:
        """Called by ingest once a batch is settled (stored): queue it for evaluation."""
        if not self.settings.enabled:
            return
        if not self.alive:
            # A bug stopped the evaluator (its traceback is logged by asyncio): ingest must
            # not wait forever on a queue nobody drains. The data is stored; alerts are not.
            self.failures += 1
            return
        # Only a reference is queued: building the work is the evaluator's, not the request's.
        await self._queue.put((gw, batch, result, now_ms))

    @property
    def alive(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def flush(self) -> None:
        """Return once every batch queued so far is evaluated and due silences are open."""
        if not self.alive:
            raise AlertEngineDown("the alert evaluator has stopped; see the server log")
        await self._queue.join()
        self._sweeps_asked += 1
        want = self._sweeps_asked
        self._wake.set()
        async with self._swept:
            await self._swept.wait_for(lambda: self._sweeps_done >= want)

    # --- evaluation --------------------------------------------------------------------

    async def _evaluate(self) -> None:
        while True:
            item = await self._queue.get()
            started = time.perf_counter()
            try:
                if isinstance(item, Replay):
                    await self._replay(item)
                else:
                    await self._batch(work_of(*item))
            except (sqlite3.Error, StoreError, StoreUnavailable) as err:
                # The batch is stored; its series are replayed when the next data arrives
                # (or at start-up): count it and keep evaluating the others.
                self.failures += 1
                log.error("alert evaluation failed: %s", err)  # noqa: TRY400 -- reason suffices
            finally:
                self.busy_s += time.perf_counter() - started
                self._queue.task_done()

    async def _batch(self, w: BatchWork) -> None:
        replays, resched = await self.store.db.write(
            apply.apply_batch, self.settings, w, self.listening_since
        )
        self.batches_evaluated += 1
        self.points_evaluated += sum(len(v) for v in w.values.values())
        for r in replays:
            await self._replay(r)
        if resched:
            self._wake.set()

    async def _page(self, key: Key, start: int, end: int, limit: int) -> tuple[Points, bool]:
        """Up to ``limit`` stored readings from ``start`` (trusted clocks), and whether more."""
        res = await self.store.series(
            key.hamlet, key.device, key.metric,
            start=start, end=end, resolution=Resolution.RAW, limit=limit,
        )  # fmt: skip
        return [(p.t, p.v) for p in res.points if p.q != _UNSYNCED], res.truncated

    async def _points(
        self, key: Key, start: int, end: int, limit: int = _READ_LIMIT
    ) -> list[tuple[int, float]]:
        """A series' stored readings in [start, end), clock-trusted ones, oldest first."""
        out: list[tuple[int, float]] = []
        while start < end:
            res = await self.store.series(
                key.hamlet, key.device, key.metric,
                start=start, end=end, resolution=Resolution.RAW, limit=limit,
            )  # fmt: skip
            out.extend((p.t, p.v) for p in res.points if p.q != _UNSYNCED)
            if not res.truncated or not res.points:
                break
            start = res.points[-1].t + 1
        return out

    async def _restarts(self, key: Key, r: Replay, params: dict[str, Params]) -> dict[str, int]:
        """Per rule, the time to replay from: the last reset point before ``r.t0`` (reading
        each look-back window once for all the series' rules; bounded look-back)."""
        lookback = int(self.settings.max_lookback_s * 1000)
        out: dict[str, int] = {}
        for span in (*[w for w in _WINDOWS_MS if w < lookback], lookback):
            window = await self._points(key, r.t0 - span, r.t0)
            for rid, p in params.items():
                if rid in out:
                    continue
                rule = RULES[rid]
                found = restart_index(rule.kind, rule.op, p, window)
                if found is not None:
                    i, inclusive = found
                    out[rid] = window[i][0] if inclusive else window[i][0] + 1
                elif span == lookback:
                    out[rid] = window[0][0] if window else r.t0
            if len(out) == len(params):
                break
        return out

    async def _replay(self, r: Replay) -> None:
        """Re-evaluate a series' rules from stored readings around a late batch."""
        self.replays += 1
        series = Key("", r.hamlet, r.device, r.metric)
        ctx = await self.store.db.read(apply.load_context, r.hamlet)
        s = ctx.subject(r.device, r.metric)
        params = {rid: resolve(self.settings, rid, s) for rid in r.rules}
        forced: dict[str, int] = {}
        todo = set(r.rules)
        for _ in range(_REPLAY_TRIES):
            marks = {
                rid: await self.store.db.read(table.load_mark, Key(rid, *series.args()[1:]))
                for rid in todo
            }
            since = await self._restarts(series, r, {k: params[k] for k in todo if k not in forced})
            since.update({k: v for k, v in forced.items() if k in todo})
            # Read up to the late batch and a little past it: the replay usually settles
            # within a few readings; only if it does not is more read (4 times more a step).
            end = self.clock() + MAX_FUTURE_SKEW_MS + 1
            pts = await self._points(series, min(since.values()), r.t1 + 1)
            step = _AHEAD
            ahead, more = await self._page(series, r.t1 + 1, end, step)
            pts += ahead
            for rid in sorted(todo):
                rule, p, mark = RULES[rid], params[rid], marks[rid]
                settled_to = _settled_to(rule.kind, mark)
                while True:
                    mine = pts[bisect_left(pts, (since[rid], -math.inf)) :]
                    done, cur, until = replay(
                        rule.kind, rule.op, p, mine, after=r.t1, settled_to=settled_to
                    )
                    if until is not None or not more or not pts:
                        break
                    step = min(step * 4, _READ_LIMIT)
                    ahead, more = await self._page(series, max(r.t1, pts[-1][0]) + 1, end, step)
                    pts += ahead
                self.points_evaluated += len(mine)
                if not mine:
                    todo.discard(rid)
                    continue
                result = apply.ReplayResult(
                    since[rid], until, apply.value_drafts(rule, s, p, done, cur),
                    mine[-1][0], cur,
                )  # fmt: skip
                again = await self.store.db.write(
                    apply.commit_replay, Key(rid, *series.args()[1:]),
                    mark.version if mark else 0, result, self.clock(),
                )  # fmt: skip
                if again is None:
                    todo.discard(rid)
                elif again < since[rid]:
                    # An alert recorded before spans the restart point: replay from its start.
                    forced[rid] = again
            if not todo:
                return
        log.warning("alerts: %s kept changing while being replayed; next data retries", series)

    # --- silences ----------------------------------------------------------------------

    async def _sweep(self) -> None:
        while True:
            self._wake.clear()
            asked = self._sweeps_asked
            try:
                nxt, opened = await self.store.db.write(
                    _sweep_counting, self.settings, self.clock(), self.listening_since
                )
            except (sqlite3.Error, StoreUnavailable) as err:
                self.failures += 1
                log.error("alert sweep failed: %s", err)  # noqa: TRY400 -- reason suffices
                nxt, opened = None, False
            if opened:
                for listener in self.on_sweep_opened:
                    listener()
            async with self._swept:
                self._sweeps_done = asked
                self._swept.notify_all()
            delay = _MAX_SLEEP_S if nxt is None else (nxt - self.clock()) / 1000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(max(delay, 0.05), _MAX_SLEEP_S)):
                    await self._wake.wait()


def _sweep_counting(
    conn: sqlite3.Connection, settings: AlertSettings, now: int, listening_since: int
) -> tuple[int | None, bool]:
    """``apply.sweep``, and whether it wrote anything (it writes only alerts it opens)."""
    before = conn.total_changes
    nxt = apply.sweep(conn, settings, now, listening_since)
    return nxt, conn.total_changes > before
