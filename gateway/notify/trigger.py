"""The edge trigger: the hamlet's threshold rules on readings as they are committed, and danger
alerts handed to :class:`EdgeSender` while the uplink has been down long enough.

Readings come from the pipeline's tail (what was committed, in commit order); thresholds from
the cached plan through :func:`hamlet.alertrules.resolve`, evaluated by the same pure functions
as the server (:mod:`hamlet.alerteval`), and alerts are named with the server's natural ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import httpx

from gateway.control_protocol import EdgeInfo, UplinkState
from gateway.notify.episodes import EpisodeFile, Series
from gateway.notify.plan import EdgePlanCache, PlanUnavailable
from gateway.notify.sender import DANGER, EdgeAlert, EdgeSender
from hamlet.alerteval import feed_threshold, fired
from hamlet.alertmessages import message
from hamlet.alertrules import RuleKind, Severity, Subject, resolve, rules_for_metric
from hamlet.edgeplan import EdgePlan, natural_alert_id
from hamlet.sms.errors import ModemError
from hamlet.sms.modem import AsyncGsmModem
from hamlet.tasks import stop_tasks

if TYPE_CHECKING:
    from gateway.notify.config import EdgeAlertsConfig
    from gateway.pipeline import Pipeline, TailItem
    from gateway.uplink import Uplink

log = logging.getLogger(__name__)

SEVERITY = {Severity.WATCH: 1, Severity.WARNING: 2, Severity.DANGER: DANGER}


@dataclass
class EdgeTriggerCounters:
    readings: int = 0
    alerts_opened: int = 0
    reports: int = 0
    errors: list[str] = field(default_factory=list)  # newest last, bounded


class EdgeTrigger:
    """Async context manager owning the modem and the evaluation task; reports through the
    uplink's ``before_post`` hook."""

    def __init__(  # noqa: PLR0917 -- wired once, in gateway/app.py
        self,
        config: EdgeAlertsConfig,
        pipeline: Pipeline,
        uplink: Uplink,
        server_url: str,
        token: str,
        hamlet: str | None,
        data_dir: Path,
    ) -> None:
        assert config.modem is not None  # EdgeAlertsConfig checks it when enabled
        self.config = config
        self._pipeline = pipeline
        self._uplink = uplink
        self._url = server_url
        self._token = token
        self._hamlet = hamlet
        self._dir = data_dir / "notify"
        self.modem = AsyncGsmModem(config.modem)
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(30.0))
        self.cache = EdgePlanCache(self._dir / "edge-plan.json", server_url, token, self._client)
        self.sender = EdgeSender(
            self.modem, self._dir / "edge-sent.jsonl",
            uplink_down_after_s=config.uplink_down_after_s,
        )  # fmt: skip
        self.counters = EdgeTriggerCounters()
        self.plan: EdgePlan | None = None
        self._plan_at = 0.0
        self._episodes = EpisodeFile(self._dir / "edge-episodes.json")
        self._series = self._episodes.load()
        self._tasks: list[asyncio.Task[None]] = []
        self.sms_sent = asyncio.Event()  # set once an SMS was sent and journalled
        self.offered = asyncio.Event()  # set whenever the sender was offered an alert
        self.modem_ready = False  # opened, prepared and swept at start-up
        self.plan_asked = asyncio.Event()  # set once the server was asked for the plan

    async def __aenter__(self) -> Self:
        try:
            await self.modem.__aenter__()
            await self.modem.prepare()
            # Before anything is sent: what a crash left in the modem's storage.
            if swept := await self.sender.sweep():
                log.info("edge alerts: deleted %d leftover SMS from the modem's storage", swept)
            self.modem_ready = True
        except ModemError as err:
            # The gateway's data matters more than its SMS: run on, the server still sends.
            log.error("edge alerts: modem not ready (%s); the gateway will not send SMS", err)  # noqa: TRY400
            self._note(f"modem: {err}")
        # The cached plan at once; the server's in the evaluation task, so a dead link
        # never delays the gateway's start (its sources start after this).
        with contextlib.suppress(PlanUnavailable):
            self.plan = self.cache.load()
        self._sub = self._pipeline.subscribe()
        self._tasks = [asyncio.create_task(self._evaluate(self._sub.queue), name="edge-evaluate")]
        self._uplink.before_post.append(self.before_post)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await stop_tasks(self._tasks)
        if self._tasks:
            self._uplink.before_post.remove(self.before_post)
            self._pipeline.unsubscribe(self._sub)
        await self._client.aclose()
        await self.modem.__aexit__(exc_type, exc, tb)

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The long-lived tasks, for the gateway's supervision."""
        return self._tasks

    def info(self) -> EdgeInfo:
        """For ``hamlet gateway status``: can the gateway warn anyone, and what it did."""
        sender = self.sender
        return EdgeInfo(
            modem_ready=self.modem_ready,
            plan_version=self.plan.version if self.plan is not None else None,
            open_alerts=sum(1 for s in self._series.values() if s.episode is not None),
            sms_sent=len(sender.sent),
            sms_unreported=len(sender.unreported()),
            sms_in_modem=len(sender.stored),
            repeats=sender.repeats,
            errors=[*self.counters.errors, *sender.errors][-5:],
        )

    def _note(self, err: str) -> None:
        self.counters.errors = [*self.counters.errors[-49:], err]

    async def _refresh_plan(self) -> None:
        try:
            self.plan = await self.cache.refresh()
        except (PlanUnavailable, httpx.HTTPError, ValueError) as err:
            log.warning("edge alerts: no plan yet (%s)", err)
            self._note(f"plan: {err}")
        self._plan_at = time.monotonic()

    def _down_for(self) -> float:
        since = self._uplink.status.down_since
        return 0.0 if since is None else time.monotonic() - since

    # -- evaluation ---------------------------------------------------------------------
    async def _evaluate(self, queue: asyncio.Queue[TailItem]) -> None:
        await self._refresh_plan()
        self.plan_asked.set()
        while True:
            item = await queue.get()
            if item.get("kind") != "reading" or item.get("value") is None or self.plan is None:
                continue
            self.counters.readings += 1
            await self.on_reading(
                self.plan, str(item["device"]), str(item["metric"]), int(item["t"]),
                float(item["value"]),
            )  # fmt: skip

    async def on_reading(
        self, plan: EdgePlan, device: str, metric: str, t: int, value: float
    ) -> None:
        hamlet = self._hamlet or plan.hamlet
        dev = plan.devices.get(device)
        subject = Subject(
            hamlet=hamlet, device=device, metric=metric, commune=plan.commune,
            crop=dev.crop if dev is not None else None,
        )  # fmt: skip
        for rule in rules_for_metric(metric):
            if rule.kind != RuleKind.THRESHOLD:
                continue
            p = resolve(plan.alerts, rule.id, subject)
            if not p.enabled:
                continue
            s = self._series.setdefault((rule.id, device, metric), Series())
            before = s.identity()
            had = s.episode is not None and fired(s.episode, p)
            _done, s.episode = feed_threshold(rule.op, p, s.episode, [(t, value)])
            ep = s.episode
            if ep is not None and fired(ep, p) and not had:
                self.counters.alerts_opened += 1
                # Up: the server got these readings and sends. Starting or down: ours.
                s.ours = self._uplink.status.state != UplinkState.UP
            if s.identity() != before:
                # On disk before any SMS it names goes out: a restart goes on with it.
                await asyncio.to_thread(self._episodes.save, self._series)
            if ep is None or not fired(ep, p):
                continue  # ended, or not yet an alert: the server decides about the past
            severity = SEVERITY[rule.severity]
            if not s.ours or severity < DANGER:
                continue
            # Offered at every reading while it lasts: the sender sends once the uplink has
            # been down long enough, and never twice (its journal).
            kw = {"device": device, "metric": metric, "peak": ep.peak, "params": p}
            alert = EdgeAlert(
                alert_id=natural_alert_id(rule.id, hamlet, device, metric, ep.start),
                rule=rule.id, severity=severity, phase="start", at_ms=ep.start,
                message_vi=message(rule.id, "vi", **kw),  # type: ignore[arg-type]
                message_en=message(rule.id, "en", **kw),  # type: ignore[arg-type]
                device=device,
            )  # fmt: skip
            if await self.sender.on_alert(alert, plan, self._down_for()):
                self.sms_sent.set()
            self.offered.set()

    # -- the uplink is back -------------------------------------------------------------
    async def before_post(self) -> None:
        """Run by the uplink before each post: what the gateway sent reaches the server
        before the readings that open the same alerts there (or it would send them too)."""
        if time.monotonic() - self._plan_at >= self.config.plan_refresh_s:
            await self._refresh_plan()
        hamlet = self._hamlet or (self.plan.hamlet if self.plan else None)
        if hamlet is None or not self.sender.unreported():
            return
        try:
            n = await self.sender.report(self._client, self._url, self._token, hamlet)
        except (httpx.HTTPError, KeyError, ValueError) as err:  # incl. an odd 200 body
            # Never raised into the uplink's task: the readings go up anyway. Unreachable is
            # the uplink's own warning already, at every retry: not repeated here.
            level = logging.DEBUG if isinstance(err, httpx.TransportError) else logging.WARNING
            log.log(level, "edge alerts: report failed (%s); retried before the next post", err)
            self._note(f"report: {err}")
            return
        self.counters.reports += 1
        log.info("edge alerts: reported %d SMS sent while the uplink was down", n)
