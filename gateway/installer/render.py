"""Rich rendering for the installer commands: doctor checks, ports, status, tail lines."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from gateway.installer.doctor import Check, Outcome
from gateway.installer.ports import PortInfo

_STYLE = {Outcome.PASS: "green", Outcome.FAIL: "bold red", Outcome.WARN: "yellow",
          Outcome.SKIP: "dim"}  # fmt: skip
_SOURCE_STYLE = {"running": "green", "reconnecting": "yellow", "failed": "bold red",
                 "starting": "cyan", "stopped": "dim"}  # fmt: skip


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


def health_line(health: Mapping[str, Any]) -> Text:
    """Red when a component died or a source failed; what the installer should know."""
    failures = health.get("failures") or {}
    if failures:
        parts = "; ".join(f"{k}: {v}" for k, v in failures.items())
        return Text(
            f"FAILED / LỖI: {parts} — the gateway exits and its service restarts it",
            style="bold red",
        )
    line = Text()
    if health.get("sources_failed"):
        line.append(
            f"{health['sources_failed']} source(s) failed / nguồn bị lỗi (see Sources)",
            style="bold red",
        )
    else:
        line.append("all components running / mọi thành phần đang chạy", style="green")
    prev = health.get("previous_failure")
    if isinstance(prev, dict) and prev.get("failures"):
        gone = "; ".join(f"{k}: {v}" for k, v in dict(prev["failures"]).items())
        line.append(f"\nprevious run ended in a failure / lần chạy trước bị lỗi: {gone}",
                    style="yellow")  # fmt: skip
    return line


def status_view(st: Mapping[str, Any], now: float | None = None) -> Group:
    now = time.time() if now is None else now
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    clock = st.get("clock") or {}
    buf = st.get("buffer") or {}
    up = st.get("uplink") or {}
    head.add_row(
        "gateway", f"{st.get('gateway', '?')}  (up {float(st.get('uptime_s') or 0):.0f} s)"
    )
    head.add_row(
        "clock / đồng hồ",
        Text("synchronized", style="green") if clock.get("synced")
        else Text("NOT synchronized", style="yellow"),
    )  # fmt: skip
    oldest = buf.get("oldest_unsent_age_s")
    head.add_row(
        "buffer / bộ đệm",
        f"{buf.get('depth', 0)} records unsent, {int(buf.get('bytes') or 0) // 1024} KiB "
        f"of {int(buf.get('max_bytes') or 0) // 2**20} MiB; oldest unsent "
        + ("—" if oldest is None else f"{float(oldest):.0f} s"),
    )
    ustate = str(up.get("state", "?"))
    uline = Text(ustate, style="green" if ustate in ("ok", "idle", "connected") else "yellow")
    uline.append(f"  last upload {_age(up.get('last_upload_at'), now)}, "
                 f"uploaded {up.get('uploaded', 0)}")  # fmt: skip
    if up.get("backoff_s"):
        uline.append(f", retry in {float(up['backoff_s']):.0f} s")
    if up.get("last_error"):
        uline.append(f"\nlast error: {up['last_error']}", style="red")
    head.add_row("uplink / gửi lên", uline)
    if st.get("counters"):
        head.add_row("counters", _kv(st["counters"]))
    head.add_row("health / tình trạng", health_line(st.get("health") or {}))

    src = Table(title="Sources / Nguồn dữ liệu")
    for col in ("name", "kind", "status", "since", "last reading", "counters"):
        src.add_column(col)
    devs = Table(title="Devices / Thiết bị")
    for col in ("source", "device", "detail"):
        devs.add_column(col)
    for s in st.get("sources") or []:
        status = str(s.get("status", "?"))
        cell = Text(status, style=_SOURCE_STYLE.get(status, ""))
        if s.get("last_error") and status != "running":
            cell.append(f"\n{s['last_error']}", style="dim")
        src.add_row(str(s.get("name")), str(s.get("kind")), cell, _age(s.get("since"), now),
                    _age(s.get("last_reading_at"), now), _kv(s.get("counters")))  # fmt: skip
        for dev, detail in (s.get("devices") or {}).items():
            devs.add_row(str(s.get("name")), str(dev), _kv(detail))

    dl = st.get("dead_letters") or {}
    dead = Table(
        title=f"Dead letters / Dữ liệu lỗi: {dl.get('count', 0)} ({_kv(dl.get('by_reason'))})"
    )
    for col in ("at", "source", "reason", "raw"):
        dead.add_column(col)
    for d in (dl.get("recent") or [])[:10]:
        dead.add_row(_age(d.get("at"), now), str(d.get("source")), str(d.get("reason")),
                     str(d.get("raw"))[:60])  # fmt: skip
    parts: list[Any] = [head, src]
    if devs.row_count:
        parts.append(devs)
    parts.append(dead)
    return Group(*parts)


def tail_line(item: Mapping[str, Any]) -> Text:
    t = item.get("t")
    when = (
        time.strftime("%H:%M:%S", time.localtime(t / 1000)) if isinstance(t, int | float) else "?"
    )
    line = Text(f"{when} #{item.get('seq')} ", style="dim")
    line.append(f"{item.get('device')} ", style="bold")
    if "metric" in item:
        line.append(f"{item.get('metric')}={item.get('value')}")
        if item.get("kind") not in (None, "reading"):
            line.append(f" ({item.get('kind')})", style="dim")
    else:
        line.append(f"{item.get('name')} ", style="cyan")
        line.append(_kv(item.get("attrs")))
    if item.get("source"):
        line.append(f"  [{item['source']}]", style="dim")
    return line


def console() -> Console:
    return Console(highlight=False)
