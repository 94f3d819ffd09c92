"""Plain-language alert messages in Vietnamese and English (Vietnamese number format).

"Độ mặn 0,7‰ — vượt ngưỡng sầu riêng 0,5‰" / "Salinity 0.7‰ — above the durian limit 0.5‰".
Pure and shared: the server stores them with each alert; the gateway can text the same words.
"""

from __future__ import annotations

from typing import Final, Literal

from hamlet.alertrules import RULES, Params, RuleKind
from hamlet.metrics import METRICS

Lang = Literal["vi", "en"]
_DECIMALS: Final = {"water_level": 2, "field_water": 2}
_KIND_VI: Final = {"kiosk": "Ki-ốt", "radio": "Cụm loa", "wifi": "Điểm Wi-Fi"}
_KIND_EN: Final = {"kiosk": "Kiosk", "radio": "Radio cluster", "wifi": "Wi-Fi hotspot"}
MINUS: Final = "\u2212"  # a real minus sign reads better than a hyphen on a phone


def number(v: float, lang: Lang, decimals: int | None = None) -> str:
    """0.7 → "0,7" (vi) / "0.7" (en); thousands "1.234,5" / "1,234.5"; fixed decimals if given."""
    if decimals is None:
        text = f"{abs(v):,.3f}".rstrip("0").rstrip(".")
    else:
        text = f"{abs(v):,.{decimals}f}"
    negative = v < 0 and any(c not in "0,." for c in text)
    if lang == "vi":
        text = text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    return (MINUS if negative else "") + text


def _value(metric: str, v: float, lang: Lang) -> str:
    m = METRICS.get(metric)
    unit = m.unit if m else ""
    num = number(v, lang, _DECIMALS.get(metric))
    if not unit:
        return num
    return f"{num}{unit}" if unit == "‰" else f"{num} {unit}"


def duration(ms: int, lang: Lang) -> str:
    """90 phút / 3 giờ 30 phút / 2 ngày 4 giờ (rounded down to the minute)."""
    minutes = max(0, ms) // 60_000
    vi = lang == "vi"
    if minutes < 120:
        return f"{minutes} phút" if vi else f"{minutes} min"
    if minutes < 48 * 60:
        h, m = divmod(minutes, 60)
        big, small = (f"{h} giờ", f"{m} phút") if vi else (f"{h} h", f"{m} min")
    else:
        d, h = divmod(minutes // 60, 24)
        big, small = (f"{d} ngày", f"{h} giờ") if vi else (f"{d} d", f"{h} h")
    return f"{big} {small}" if not small.startswith("0 ") else big


def message(
    rule_id: str,
    lang: Lang,
    *,
    device: str,
    metric: str,
    peak: float,
    params: Params,
    device_kind: str | None = None,
) -> str:
    """The sentence for an alert. ``peak`` is the worst value (or, for silences, ms)."""
    rule = RULES[rule_id]
    vi = lang == "vi"
    m = METRICS.get(metric)
    label = (m.vi if vi else m.en) if m else metric
    if rule.kind == RuleKind.THRESHOLD:
        val = _value(metric, peak, lang)
        thr = _value(metric, params.threshold, lang)
        what = params.label_vi if vi else params.label_en
        if rule_id == "salinity.watch":
            return (
                f"{label} {val} — gần ngưỡng {what} (theo dõi từ {thr})"
                if vi
                else f"{label} {val} — nearing the {what} limit (watch from {thr})"
            )
        if rule_id.startswith("salinity."):
            return (
                f"{label} {val} — vượt ngưỡng {what} {thr}"
                if vi
                else f"{label} {val} — above the {what} limit {thr}"
            )
        if rule.op in ("<", "<="):
            return (
                f"{label} {val} — dưới {what} {thr}"
                if vi
                else f"{label} {val} — below the {what} {thr}"
            )
        return f"{label} {val} — vượt {what} {thr}" if vi else f"{label} {val} — above {what} {thr}"
    if rule.kind == RuleKind.STUCK:
        val = _value(metric, peak, lang)
        span = duration(int(params.min_duration_s * 1000), lang)
        return (
            f"Cảm biến {device} ({label}) đứng yên ở {val} từ {span} trở lên — cần kiểm tra"
            if vi
            else f"Sensor {device} ({label}) stuck at {val} for {span} or more — needs a check"
        )
    span = duration(int(peak), lang)
    if rule.kind == RuleKind.STALE:
        every = duration(int(params.threshold * 1000), lang)
        return (
            f"Cảm biến {device} không gửi số liệu {span} (chu kỳ {every})"
            if vi
            else f"Sensor {device} sent no data for {span} (every {every} expected)"
        )
    if rule.kind == RuleKind.DOWN:
        name = (_KIND_VI if vi else _KIND_EN).get(device_kind or "", "Thiết bị" if vi else "Device")
        return (
            f"{name} {device} ngừng hoạt động {span} trong giờ phục vụ"
            if vi
            else f"{name} {device} down for {span} of service hours"
        )
    return f"Gateway {device} mất liên lạc {span}" if vi else f"Gateway {device} silent for {span}"
