"""The gateway's status report: source states and recent dead letters, carried to the server.

The heartbeat carries counts only (``gw.sources_failed``, ``gw.dead_lettered``); an installer
looking at the server's installer page needs *which* source is failing, why, and what the
rejected bytes looked like. This module builds a compact :class:`GatewayReport` from the
control plane's :class:`StatusSnapshot` (bounded to ``MAX_REPORT_BYTES`` whatever the gateway
holds, bytes escaped, secrets from the config masked) and submits it as an event of the
gateway itself through the pipeline, so it is buffered through outages and stored once.

Sent at start, when a source's state or error, a component's state or the dead letters
change (a burst of changes within ``min_gap_s`` goes out as one report), and re-sent
unchanged every ``refresh_s``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final, cast

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from gateway import status
from gateway.buffer import BufferError
from gateway.control_protocol import DeadLetterInfo, DeadLetters, Health, SourceInfo
from gateway.records import Event
from gateway.sources.base import SourceState
from hamlet.status_report import (
    MAX_COMPONENTS,
    MAX_DEVICES_DOWN,
    MAX_EXCERPT,
    MAX_LETTERS,
    MAX_NAME,
    MAX_REASON_CODES,
    MAX_REPORT_BYTES,
    MAX_SOURCES,
    MAX_TEXT,
    REPORT_ATTR,
    STATUS_EVENT,
    ComponentReport,
    ComponentState,
    DeadLetterReport,
    DeadLetterSummary,
    DeviceReport,
    DeviceState,
    GatewayReport,
    SourceReport,
)
from hamlet.tasks import TaskOwner

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger(__name__)

SOURCE: Final = "status_report"
MASK: Final = "***"
# Detail given up step by step until a report fits: (dead letters, excerpt chars, text chars).
_LEVELS: Final = ((MAX_LETTERS, MAX_EXCERPT, MAX_TEXT), (MAX_LETTERS, 80, 200), (4, 40, 120))
_LAST_LEVEL: Final = (0, 0, 60)
# user:password@ in a URL an error message may quote
_USERINFO: Final = re.compile(r"(://[^/\s:@]*:)[^@\s/]*@")
_COMPONENT_STATES: Final = frozenset({"running", "failed", "stopped"})
_DEVICE_DOWN: Final = frozenset({"failing", "dead"})  # gateway/sources/modbus device status


class StatusReportConfig(BaseModel):
    """``[status_report]``: how often the installer page's source states are refreshed."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    refresh_s: float = Field(
        1800.0, ge=1.0, description="an unchanged report is re-sent at most this often"
    )
    min_gap_s: float = Field(
        10.0, ge=0.0, le=3600.0, description="at least this long between two reports on change"
    )
    dead_letters: int = Field(MAX_LETTERS, ge=0, le=MAX_LETTERS, description="recent, per report")


def config_secrets(model: BaseModel) -> list[str]:
    """Every secret (``SecretStr``) value in a config, longest first (masked before shorter)."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(model)
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def escape(text: str) -> str:
    """Control, format and unassigned characters as ``\\xNN``/``\\uNNNN``: what a page shows
    is what came in, and no byte can reorder (U+202E) or hide text."""
    out: list[str] = []
    for ch in text:
        if unicodedata.category(ch)[0] == "C":
            o = ord(ch)
            out.append(
                f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"
            )
        else:
            out.append(ch)
    return "".join(out)


class Scrubber:
    """Masks the config's secrets and URL passwords, escapes, and cuts to a length."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = list(secrets)

    def mask(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, MASK)
        return _USERINFO.sub(rf"\1{MASK}@", text)

    def text(self, text: str, limit: int) -> str:
        clean = escape(self.mask(text))
        return clean if len(clean) <= limit else clean[: max(limit - 1, 0)] + "…"


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else max(int(seconds * 1000), 0)


def _letter(
    d: DeadLetterInfo, kinds: dict[str, str], sc: Scrubber, excerpt: int, text: int
) -> DeadLetterReport:
    raw = d.raw
    topic: str | None = None
    if kinds.get(d.source) == "mqtt":
        # An MQTT dead letter keeps "<topic> <payload>" (gateway/sources/mqtt).
        head, sep, rest = raw.partition(" ")
        if sep:
            topic, raw = sc.text(head, MAX_NAME), rest
    clean = escape(sc.mask(raw))
    return DeadLetterReport(
        at=_ms(d.at) or 0,
        source=sc.text(d.source, MAX_NAME),
        topic=topic,
        reason=sc.text(d.reason, text),
        excerpt=clean[:excerpt] + ("…" if len(clean) > excerpt else ""),
        size=len(raw.encode("utf-8", errors="surrogatepass")),
        truncated=len(clean) > excerpt,
    )


def _devices_down(s: SourceInfo, sc: Scrubber, text: int) -> list[DeviceReport]:
    out = []
    for dev, st in s.devices.items():
        state = st.get("status")
        if state not in _DEVICE_DOWN:
            continue
        err = st.get("last_error")
        out.append(
            DeviceReport(
                device=sc.text(dev, MAX_NAME),
                state=cast("DeviceState", state),
                error=None if err is None else sc.text(str(err), text),
            )
        )
        if len(out) == MAX_DEVICES_DOWN:
            break
    return out


def _components(health: Health, sc: Scrubber, text: int) -> list[ComponentReport]:
    out = []
    for name, state in list(health.components.items())[:MAX_COMPONENTS]:
        err = health.failures.get(name)
        out.append(
            ComponentReport(
                name=sc.text(name, MAX_NAME),
                state=cast("ComponentState", state if state in _COMPONENT_STATES else "failed"),
                error=None if err is None else sc.text(err, text),
            )
        )
    return out


def build_report(
    at_ms: int,
    sources: Sequence[SourceInfo],
    health: Health,
    dead: DeadLetters,
    secrets: Iterable[str] = (),
) -> str:
    """The report as JSON text of at most ``MAX_REPORT_BYTES``, for any input."""
    sc = Scrubber(secrets)
    kinds = {s.name: s.kind for s in sources}
    codes = sorted(dead.by_reason.items(), key=lambda kv: -kv[1])[:MAX_REASON_CODES]
    by_reason: dict[str, int] = {}
    for code, n in codes:
        key = sc.text(code, 60)
        by_reason[key] = by_reason.get(key, 0) + n

    def make(level: tuple[int, int, int], keep_sources: int) -> str:
        letters, excerpt, text = level
        report = GatewayReport(
            at=max(at_ms, 0),
            sources=[
                SourceReport(
                    name=sc.text(s.name, MAX_NAME),
                    kind=sc.text(s.kind, 20),
                    state=s.status.value,
                    since=_ms(s.since) or 0,
                    last_reading_at=_ms(s.last_reading_at),
                    last_error=None if s.last_error is None else sc.text(s.last_error, text),
                    devices_down=_devices_down(s, sc, text),
                )
                for s in sources[:keep_sources]
            ],
            sources_omitted=len(sources) - keep_sources,
            components=_components(health, sc, text),
            dead=DeadLetterSummary(
                stored=dead.count,
                by_reason=by_reason,
                recent=[_letter(d, kinds, sc, excerpt, text) for d in dead.recent[:letters]],
            ),
        )
        return report.encode()

    keep = min(len(sources), MAX_SOURCES)
    for level in _LEVELS:
        out = make(level, keep)
        if len(out.encode()) <= MAX_REPORT_BYTES:
            return out
    # Last resort: no dead letters, short texts, and as many sources as fit.
    while True:
        out = make(_LAST_LEVEL, keep)
        if len(out.encode()) <= MAX_REPORT_BYTES or keep == 0:
            return out
        keep -= 1


class StatusReporter(TaskOwner):
    """Async context manager owning the task that sends the gateway's status reports."""

    def __init__(self, gw: Gateway, cfg: StatusReportConfig) -> None:
        super().__init__()
        self._gw = gw
        self._cfg = cfg
        self._secrets = config_secrets(gw.config)
        self.sent = 0

    def _start(self) -> None:
        if self._cfg.enabled:
            self._spawn(self._run(), "status-report")

    def fingerprint(self) -> tuple[object, ...]:
        """What a change is: a source's state or error, a component's state, a dead letter."""
        gw = self._gw
        return (
            tuple((s.name, *_source_key(s.state)) for s in gw.sources),
            tuple(sorted(gw.supervision.components.items())),
            gw.pipeline.counters.dead_lettered + gw.buffer.counters.dead_lettered,
        )

    async def send(self) -> None:
        """One report now, committed like any record (none when disabled)."""
        if not self._cfg.enabled:
            return
        gw = self._gw
        snap = await status.snapshot(gw, recent=self._cfg.dead_letters)
        try:
            text = build_report(
                gw.clock.wall_ms(), snap.sources, snap.health, snap.dead_letters, self._secrets
            )
        except ValidationError as err:
            # A diagnostic that cannot be built must never stop the data: said, then skipped.
            log.error("status report: cannot build it: %s", err)  # noqa: TRY400
            return
        event = Event(gw.config.id, STATUS_EVENT, {REPORT_ATTR: text}, source=SOURCE)
        try:
            await gw.pipeline.submit([event])
        except BufferError as err:
            log.error("status report: could not commit: %s", err)  # noqa: TRY400
            return
        self.sent += 1

    async def _run(self) -> None:
        while True:
            self._gw.pipeline.dead_letter_added.clear()
            sent = self.fingerprint()
            await self.send()
            await self._changed(sent)
            # A burst (a port flapping, a poison stream) goes out as one report.
            await asyncio.sleep(self._cfg.min_gap_s)

    async def _changed(self, sent: tuple[object, ...]) -> None:
        """Return on a change since ``sent``, or after ``refresh_s``."""
        if self.fingerprint() != sent:
            return
        waits: list[asyncio.Task[object]] = [
            asyncio.create_task(_state_changes(s.state)) for s in self._gw.sources
        ]
        waits.append(asyncio.create_task(self._gw.pipeline.dead_letter_added.wait()))
        try:
            await asyncio.wait(
                waits, timeout=self._cfg.refresh_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for w in waits:
                w.cancel()


def _source_key(state: SourceState) -> tuple[object, ...]:
    """What of a source's state a report is about: not its counters, not its readings."""
    # Checked on every change of the state (each reading): only a Modbus bus has devices
    # that go down, and only a handful of them.
    if state.kind != "modbus":
        return (state.status, state.last_error)
    down = tuple(
        (dev, st.get("status"))
        for dev, st in state.devices.items()
        if st.get("status") in _DEVICE_DOWN
    )
    return (state.status, state.last_error, down)


async def _state_changes(state: SourceState) -> object:
    """Return when the source's state, error or devices down differ from now."""
    was = _source_key(state)

    def moved(st: SourceState) -> bool:
        return _source_key(st) != was

    await state.wait_until(moved)
    return None
