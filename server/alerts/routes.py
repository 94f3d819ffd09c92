"""The alerts API: list and filter, get one, acknowledge (staff), wait for evaluation."""

from __future__ import annotations

import sqlite3
import time
from enum import StrEnum
from typing import Annotated, Final

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from hamlet.alertrules import RULES, Severity
from hamlet.contract import IDENT_PATTERN
from hamlet.edgeplan import natural_alert_id
from server.alerts.engine import AlertEngine, AlertEngineDown
from server.alerts.table import ACTIVE
from server.deps import Caller, State, deny, readable, require_hamlet
from server.timeparam import TimeParamError, parse_time

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
MAX_LIMIT: Final = 10_000
_COLS: Final = (
    "id, rule, severity, hamlet, device, metric, start_ms, end_ms, peak, peak_ms, threshold, "
    "message_vi, message_en, state, created_ms, updated_ms, acked_by, acked_ms"
)


class Status(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    ALL = "all"


class AlertOut(BaseModel):
    id: int = Field(description="stable: an alert keeps its id as late data refines it")
    rule: str = Field(examples=["salinity.danger"])
    severity: Severity
    hamlet: str
    device: str
    metric: str = Field("", description="'' for device and gateway silences")
    start: int = Field(description="reading time the alert started, ms")
    end: int | None = Field(None, description="reading time it ended; null while open")
    peak: float = Field(description="worst value; minutes of silence for silences")
    peak_time: int
    threshold: float | None = None
    message_vi: str = Field(examples=["Độ mặn 0,7‰ — vượt ngưỡng sầu riêng 0,5‰"])
    message_en: str = Field(examples=["Salinity 0.7‰ — above the durian limit 0.5‰"])
    state: str = Field(description="active, or retracted when late data showed it never was")
    created: int = Field(description="server time first recorded, ms")
    updated: int
    acked_by: str | None = None
    acked: int | None = None


def _out(r: tuple[object, ...]) -> AlertOut:
    keys = (
        "id", "rule", "severity", "hamlet", "device", "metric", "start", "end", "peak",
        "peak_time", "threshold", "message_vi", "message_en", "state", "created", "updated",
        "acked_by", "acked",
    )  # fmt: skip
    return AlertOut.model_validate(dict(zip(keys, r, strict=True)))


def _when(name: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        # A date alone as the end means the end of that day, as everywhere in the API.
        return parse_time(text, end=name == "end")
    except TimeParamError as err:
        raise HTTPException(422, f"{name}: {err}") from err


Ident = Annotated[str | None, Query(pattern=IDENT_PATTERN)]
TimeQ = Annotated[
    str | None,
    Query(
        max_length=40,
        description="ISO 8601 (Vietnam time unless an offset is given) or epoch ms",
        examples=["2026-11-28", "2026-11-28T10:00+07:00", "1764309600000"],
    ),
]


@router.get("", response_model=list[AlertOut], summary="Alerts you may read, newest first")
async def list_alerts(  # noqa: PLR0917 -- FastAPI passes them by name
    state: State,
    caller: Caller,
    hamlet: Ident = None,
    device: Ident = None,
    rule: Annotated[str | None, Query(max_length=64, examples=["salinity.danger"])] = None,
    severity: Severity | None = None,
    status: Status = Status.ALL,
    start: TimeQ = None,
    end: TimeQ = None,
    include_retracted: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 1000,
) -> list[AlertOut]:
    """Alerts overlapping [start, end) (by reading time), filtered."""
    if rule is not None and rule not in RULES and rule not in {r.split(".")[0] for r in RULES}:
        raise HTTPException(422, f"unknown rule {rule!r}; one of {sorted(RULES)}")
    t0, t1 = _when("start", start), _when("end", end)
    allowed = await readable(state, caller)
    if hamlet is not None and allowed is not None and hamlet not in allowed:
        raise deny(caller)
    where = ["1"]
    args: list[object] = []
    if hamlet is not None:
        where.append("hamlet = ?")
        args.append(hamlet)
    elif allowed is not None:
        where.append(f"hamlet IN ({','.join('?' * len(allowed))})" if allowed else "0")
        args += allowed
    for col, val in (("device", device), ("severity", severity)):
        if val is not None:
            where.append(f"{col} = ?")
            args.append(str(val))
    if rule is not None:
        where.append("(rule = ? OR rule LIKE ?)")
        args += [rule, f"{rule}.%"]
    if status == Status.OPEN:
        where.append("end_ms IS NULL")
    elif status == Status.CLOSED:
        where.append("end_ms IS NOT NULL")
    if not include_retracted:
        where.append("state = ?")
        args.append(ACTIVE)
    if t1 is not None:
        where.append("start_ms < ?")
        args.append(t1)
    if t0 is not None:
        where.append("(end_ms IS NULL OR end_ms >= ?)")
        args.append(t0)
    sql = (
        f"SELECT {_COLS} FROM alerts WHERE {' AND '.join(where)} "
        "ORDER BY start_ms DESC, id DESC LIMIT ?"
    )
    args.append(limit)

    def run(conn: sqlite3.Connection) -> list[AlertOut]:
        return [_out(r) for r in conn.execute(sql, args).fetchall()]

    return await state.store.db.read(run)


AlertId = Annotated[int, Path(ge=1, le=2**62)]


def _one(conn: sqlite3.Connection, alert_id: int) -> AlertOut | None:
    r = conn.execute(f"SELECT {_COLS} FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    return _out(r) if r else None


async def _get(state: State, caller: Caller, alert_id: int) -> AlertOut:
    a = await state.store.db.read(_one, alert_id)
    if a is None:
        raise HTTPException(404, f"no alert {alert_id}")
    await require_hamlet(state, caller, a.hamlet)
    return a


@router.get("/{alert_id}", response_model=AlertOut, summary="One alert")
async def get_alert(state: State, caller: Caller, alert_id: AlertId) -> AlertOut:
    return await _get(state, caller, alert_id)


@router.post(
    "/{alert_id}/ack",
    response_model=AlertOut,
    summary="Acknowledge an alert (staff of its commune, installers, admins)",
)
async def ack_alert(state: State, caller: Caller, alert_id: AlertId) -> AlertOut:
    a = await _get(state, caller, alert_id)
    if caller.user is None or not await state.registry.can_edit_devices(caller, a.hamlet):
        raise deny(caller)
    name = caller.user.name

    def run(conn: sqlite3.Connection) -> None:
        # The first acknowledgement stands: who saw it first is what escalation needs.
        conn.execute(
            "UPDATE alerts SET acked_by = ?, acked_ms = ? WHERE id = ? AND acked_by IS NULL",
            (name, time.time_ns() // 1_000_000, alert_id),
        )

    await state.store.db.write(run)
    a = await _get(state, caller, alert_id)
    # Delivery names alerts by their natural id; an acknowledged one is not escalated.
    natural = natural_alert_id(a.rule, a.hamlet, a.device, a.metric or "", a.start)
    for hook in state.on_alert_acked:
        await hook(natural, a.acked_by or name)
    return a


class SyncOut(BaseModel):
    """This worker's evaluator since it started."""

    batches_evaluated: int
    points_evaluated: int
    replays: int
    failures: int
    busy_seconds: float = Field(description="time this worker spent evaluating")


@router.post(
    "/sync",
    response_model=SyncOut,
    summary="Wait until every batch received so far is evaluated (any logged-in user)",
)
async def sync(request: Request, caller: Caller) -> SyncOut:
    if caller.user is None:
        raise deny(caller)
    engine: AlertEngine = request.app.state.alerts
    try:
        await engine.flush()
    except AlertEngineDown as err:
        raise HTTPException(503, str(err)) from err
    return SyncOut(
        batches_evaluated=engine.batches_evaluated,
        points_evaluated=engine.points_evaluated,
        replays=engine.replays,
        failures=engine.failures,
        busy_seconds=engine.busy_s,
    )
