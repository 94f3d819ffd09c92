"""Rich rendering for the installer commands: doctor checks, ports, status, tail lines."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from gateway.control_protocol import EdgeInfo, Health, StatusSnapshot, TailLine, UplinkState
from gateway.installer.doctor import Check, Outcome
from gateway.installer.ports import PortInfo
from gateway.sources.base import SourceStatus

_STYLE = {Outcome.PASS: "green", Outcome.FAIL: "bold red", Outcome.WARN: "yellow",
          Outcome.SKIP: "dim"}  # fmt: skip
_SOURCE_STYLE = {SourceStatus.RUNNING: "green", SourceStatus.RECONNECTING: "yellow",
                 SourceStatus.FAILED: "bold red", SourceStatus.STARTING: "cyan",
                 SourceStatus.STOPPED: "dim"}  # fmt: skip
# Every state the uplink reports has a colour (a test checks the table is complete).
UPLINK_STYLE = {UplinkState.UP: "green", UplinkState.STARTING: "cyan",
                UplinkState.DOWN: "yellow", UplinkState.AUTH_FAILED: "bold red"}  # fmt: skip


def doctor_table(checks: Sequence[Check]) -> Table:
    t = Table(title="hamlet gateway doctor", show_lines=False)
    t.add_column("check / kiểm tra")
    t.add_column("result")
    t.add_column("found / what to do next — việc cần làm")
    for c in checks:
        detail = Text(c.detail)
        if c.fix_en:
            detail.append(f"\n→ {c.fix_en}", style="bold")
        if c.fix_vi:
            detail.append(f"\n→ {c.fix_vi}", style="italic")
        t.add_row(c.name, Text(c.outcome.value.upper(), style=_STYLE[c.outcome]), detail)
    return t


def ports_table(ports: Sequence[PortInfo]) -> Table:
    t = Table(title="Serial ports / Cổng nối tiếp")
    for col in ("device", "by-id path (use this in the config)", "USB id", "maker / product"):
        t.add_column(col)
    for p in ports:
        maker = " ".join(x for x in (p.manufacturer, p.product) if x) or p.description
        t.add_row(p.device, "\n".join(p.by_id) or "—", p.usb_id or "—", maker)
    return t


def _age(ts: Any, now: float) -> str:
    if not isinstance(ts, int | float):
        return "—"
    s = max(0.0, now - float(ts))
    if s < 120:
        return f"{s:.0f} s ago"
    if s < 7200:
        return f"{s / 60:.0f} min ago"
    return f"{s / 3600:.1f} h ago"


def _kv(d: Mapping[str, Any] | None) -> str:
    if not d:
        return ""
    return ", ".join(f"{k}={v}" for k, v in d.items())


def health_line(health: Health) -> Text:
    """Red when a component died or a source failed; what the installer should know."""
    if health.failures:
        parts = "; ".join(f"{k}: {v}" for k, v in health.failures.items())
        return Text(
            f"FAILED / LỖI: {parts} — the gateway exits and its service restarts it",
            style="bold red",
        )
    line = Text()
    if health.sources_failed:
        line.append(
            f"{health.sources_failed} source(s) failed / nguồn bị lỗi (see Sources)",
            style="bold red",
        )
    else:
        line.append("all components running / mọi thành phần đang chạy", style="green")
    prev = health.previous_failure
    if isinstance(prev, dict) and prev.get("failures"):
        gone = "; ".join(f"{k}: {v}" for k, v in dict(prev["failures"]).items())
        line.append(f"\nprevious run ended in a failure / lần chạy trước bị lỗi: {gone}",
                    style="yellow")  # fmt: skip
    return line


def uplink_line(st: StatusSnapshot, now: float) -> Text:
    up = st.uplink
    line = Text(up.state.value, style=UPLINK_STYLE[up.state])
    line.append(f"  last upload {_age(up.last_upload_at, now)}, uploaded {up.uploaded}")
    if up.backoff_s:
        line.append(f", retry in {up.backoff_s:.0f} s")
    if up.last_error:
        line.append(f"\nlast error: {up.last_error}", style="red")
    return line


def edge_line(edge: EdgeInfo) -> Text:
    """Can this gateway warn farmers by SMS while its uplink is down, and what it sent."""
    if not edge.modem_ready:
        line = Text("modem NOT ready / modem chưa sẵn sàng", style="bold red")
        line.append(" — check its power, SIM and the port in [edge_alerts.modem]")
    elif edge.plan_version is None:
        line = Text("no subscriber list yet / chưa có danh sách người nhận", style="yellow")
        line.append(" — fetched from the server once the uplink is up")
    else:
        line = Text("ready / sẵn sàng", style="green")
    line.append(
        f"  {edge.open_alerts} alert(s) going on, {edge.sms_sent} SMS sent "
        f"({edge.sms_unreported} not yet reported to the server)"
    )
    if edge.sms_in_modem:
        line.append(f", {edge.sms_in_modem} waiting in the modem", style="yellow")
    if edge.errors:
        line.append(f"\nlast error: {edge.errors[-1]}", style="red")
    return line


def status_view(st: StatusSnapshot, now: float | None = None) -> Group:
    now = time.time() if now is None else now
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    buf = st.buffer
    head.add_row("gateway", f"{st.gateway}  (up {st.uptime_s:.0f} s)")
    head.add_row(
        "clock / đồng hồ",
        Text("synchronized", style="green") if st.clock.synced
        else Text("NOT synchronized", style="yellow"),
    )  # fmt: skip
    oldest = buf.oldest_unsent_age_s
    head.add_row(
        "buffer / bộ đệm",
        f"{buf.depth} records unsent, {buf.bytes // 1024} KiB "
        f"of {buf.max_bytes // 2**20} MiB; oldest unsent "
        + ("—" if oldest is None else f"{oldest:.0f} s"),
    )
    head.add_row("uplink / gửi lên", uplink_line(st, now))
    if st.counters:
        head.add_row("counters", _kv(st.counters))
    head.add_row("health / tình trạng", health_line(st.health))
    if st.edge is not None:
        head.add_row("SMS alerts / cảnh báo SMS", edge_line(st.edge))

    src = Table(title="Sources / Nguồn dữ liệu")
    for col in ("name", "kind", "status", "since", "last reading", "counters"):
        src.add_column(col)
    devs = Table(title="Devices / Thiết bị")
    for col in ("source", "device", "detail"):
        devs.add_column(col)
    for s in st.sources:
        cell = Text(s.status.value, style=_SOURCE_STYLE[s.status])
        if s.last_error and s.status is not SourceStatus.RUNNING:
            cell.append(f"\n{s.last_error}", style="dim")
        src.add_row(s.name, s.kind, cell, _age(s.since, now), _age(s.last_reading_at, now),
                    _kv(s.counters))  # fmt: skip
        for dev, detail in s.devices.items():
            devs.add_row(s.name, dev, _kv(detail))

    dl = st.dead_letters
    dead = Table(title=f"Dead letters / Dữ liệu lỗi: {dl.count} ({_kv(dl.by_reason)})")
    for col in ("at", "source", "reason", "raw"):
        dead.add_column(col)
    for d in dl.recent[:10]:
        dead.add_row(_age(d.at, now), d.source, d.reason, d.raw[:60])
    parts: list[Any] = [head, src]
    if devs.row_count:
        parts.append(devs)
    parts.append(dead)
    return Group(*parts)


def tail_line(item: TailLine) -> Text:
    when = time.strftime("%H:%M:%S", time.localtime(item.t / 1000))
    line = Text(f"{when} #{item.seq} ", style="dim")
    line.append(f"{item.device} ", style="bold")
    if item.metric is not None:
        line.append(f"{item.metric}={item.value}")
        if item.kind != "reading":
            line.append(f" ({item.kind})", style="dim")
    else:
        line.append(f"{item.name} ", style="cyan")
        line.append(_kv(item.attrs))
    if item.source:
        line.append(f"  [{item.source}]", style="dim")
    return line


def console() -> Console:
    return Console(highlight=False)
