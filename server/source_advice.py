"""What an installer should do about a gateway source's state: plain words, vi and en.

A declarative table read top to bottom: the first row whose source kind, state and error
pattern match gives the advice (the error text itself comes from gateway/sources/*).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from hamlet.status_report import SourceReport
from server.i18n import Lang


@dataclass(frozen=True, slots=True)
class Rule:
    kinds: frozenset[str]  # empty: any kind
    states: frozenset[str]  # empty: reconnecting or failed
    error: re.Pattern[str] | None
    vi: str
    en: str


def _rule(kinds: str, states: str, error: str | None, vi: str, en: str) -> Rule:
    return Rule(
        frozenset(kinds.split()),
        frozenset(states.split()),
        re.compile(error, re.IGNORECASE) if error else None,
        vi,
        en,
    )


RULES: Final = (
    _rule(
        "serial modbus",
        "",
        r"permission denied",
        "Cổng không cho phép đọc: thêm người dùng hamlet vào nhóm dialout "
        "(sudo usermod -aG dialout hamlet) rồi khởi động lại gateway.",
        "No permission to open the port: add the hamlet user to the dialout group "
        "(sudo usermod -aG dialout hamlet), then restart the gateway.",
    ),
    _rule(
        "serial modbus",
        "",
        r"went away|port lost|disconnected",
        "Cổng vừa mất khi đang đọc: cáp USB hoặc bộ thu bị lỏng hay mất điện. Cắm lại chắc chắn.",
        "The port vanished while reading: the USB cable or receiver came loose or lost power. "
        "Plug it back in firmly.",
    ),
    _rule(
        "serial modbus",
        "",
        r"cannot open|no such file|could not open",
        "Không thấy cổng: kiểm tra bộ thu sóng / cáp USB đã cắm, rồi chạy "
        "'hamlet gateway doctor' để tìm đúng cổng và sửa cấu hình.",
        "The port is missing: check the radio receiver / USB cable is plugged in, then run "
        "'hamlet gateway doctor' to find the right port and fix the config.",
    ),
    _rule(
        "modbus",
        "",
        r"timeout|no response|did not answer",
        "Thiết bị Modbus không trả lời: kiểm tra nguồn điện, dây A/B, địa chỉ và tốc độ baud.",
        "The Modbus device does not answer: check its power, the A/B wiring, its address and "
        "baud rate.",
    ),
    _rule(
        "mqtt",
        "",
        r"not authori[sz]ed|bad user ?name|password|refused the connection",
        "Broker MQTT từ chối đăng nhập: kiểm tra tên và mật khẩu MQTT trong cấu hình gateway.",
        "The MQTT broker refused the gateway's login: check the MQTT user name and password in "
        "the gateway config.",
    ),
    _rule(
        "mqtt",
        "",
        r"cannot reach|connection refused|disconnected",
        "Không kết nối được broker MQTT: kiểm tra mosquitto đang chạy "
        "(systemctl status mosquitto) và host/cổng trong cấu hình.",
        "Cannot reach the MQTT broker: check mosquitto runs (systemctl status mosquitto) and "
        "the host and port in the config.",
    ),
    _rule(
        "",
        "failed",
        None,
        "Nguồn bị lỗi và gateway đang tự khởi động lại. Nếu lỗi lặp lại, xem nhật ký: "
        "journalctl -u hamlet-gateway.",
        "The source stopped with an error; the gateway restarts it by itself. If it keeps "
        "failing, read the log: journalctl -u hamlet-gateway.",
    ),
    _rule(
        "",
        "reconnecting",
        None,
        "Gateway đang tự thử lại. Nếu kéo dài, kiểm tra thiết bị và dây nối.",
        "The gateway keeps retrying by itself. If this lasts, check the device and its cable.",
    ),
)


def _first(kind: str, state: str | None, error: str | None, lang: Lang) -> str:
    for r in RULES:
        if r.kinds and kind not in r.kinds:
            continue
        if r.states and state not in r.states:
            continue
        if r.error is not None and not r.error.search(error or ""):
            continue
        return r.vi if lang == "vi" else r.en
    return ""


def advice(src: SourceReport, lang: Lang) -> str:
    """One line of what to do while a source is down, or "" (an error a running source
    recovered from is history, not a task)."""
    if src.state not in ("reconnecting", "failed"):
        return ""
    return _first(src.kind, src.state, src.last_error, lang)


def device_advice(src: SourceReport, lang: Lang) -> str:
    """What to do about the devices behind a running source that stopped answering."""
    for d in src.devices_down:
        if line := _first(src.kind, None, d.error or "timeout", lang):
            return line
    return ""
