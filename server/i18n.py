"""User-facing words of the web pages, Vietnamese first, English on request."""

from __future__ import annotations

from typing import Final, Literal

Lang = Literal["vi", "en"]

STRINGS: Final[dict[str, dict[str, str]]] = {
    "title": {"vi": "Ấp thông minh", "en": "Smart hamlet"},
    "latest": {"vi": "Số liệu mới nhất", "en": "Latest readings"},
    "gateways": {"vi": "Bộ thu (gateway)", "en": "Gateways"},
    "device": {"vi": "Thiết bị", "en": "Device"},
    "measure": {"vi": "Chỉ số", "en": "Measurement"},
    "value": {"vi": "Giá trị", "en": "Value"},
    "age": {"vi": "Cập nhật", "en": "Updated"},
    "last_seen": {"vi": "Liên lạc lần cuối", "en": "Last seen"},
    "received": {"vi": "Đã nhận", "en": "Received"},
    "missing": {"vi": "Còn thiếu", "en": "Missing"},
    "duplicates": {"vi": "Trùng lặp", "en": "Duplicates"},
    "no_data": {"vi": "Chưa có số liệu.", "en": "No data yet."},
    "never": {"vi": "chưa bao giờ", "en": "never"},
    "hamlet": {"vi": "Ấp", "en": "Hamlet"},
    "login": {"vi": "Đăng nhập", "en": "Log in"},
    "logout": {"vi": "Đăng xuất", "en": "Log out"},
    "username": {"vi": "Tên đăng nhập", "en": "User name"},
    "password": {"vi": "Mật khẩu", "en": "Password"},
    "bad_login": {
        "vi": "Sai tên đăng nhập hoặc mật khẩu.",
        "en": "Wrong user name or password.",
    },
    "too_many": {
        "vi": "Thử sai quá nhiều lần. Vui lòng đợi một phút rồi thử lại.",
        "en": "Too many failed attempts. Please wait a minute and try again.",
    },
    "need_login": {
        "vi": "Đăng nhập để xem số liệu của ấp.",
        "en": "Log in to see your hamlet's data.",
    },
    "unconfirmed": {"vi": "chưa đăng ký", "en": "unconfirmed"},
    "change_pw": {"vi": "Đổi mật khẩu", "en": "Change password"},
    "change_pw_why": {
        "vi": "Mật khẩu này là mật khẩu tạm do quản trị viên đặt. Hãy đặt mật khẩu của riêng bạn.",
        "en": "This is a temporary password set by an administrator. Choose your own.",
    },
    "pw_current": {"vi": "Mật khẩu hiện tại", "en": "Current password"},
    "pw_new": {"vi": "Mật khẩu mới (ít nhất 10 ký tự)", "en": "New password (10+ characters)"},
    "pw_again": {"vi": "Nhập lại mật khẩu mới", "en": "New password again"},
    "pw_differ": {"vi": "Hai mật khẩu mới không giống nhau.", "en": "The new passwords differ."},
    "pw_weak": {
        "vi": "Mật khẩu mới phải có ít nhất 10 ký tự và khác mật khẩu cũ.",
        "en": "The new password needs 10+ characters and must differ from the old one.",
    },
    "other_lang": {"vi": "English", "en": "Tiếng Việt"},
    "unsynced": {"vi": "giờ chưa đồng bộ", "en": "clock not synced"},
}


def pick_lang(value: str | None) -> Lang:
    return "en" if value == "en" else "vi"


def t(key: str, lang: Lang) -> str:
    return STRINGS[key][lang]


def age(ms: int, lang: Lang) -> str:
    """'2 phút trước' / '2 min ago'."""
    s = max(0, ms // 1000)
    if s < 10:
        return "vừa xong" if lang == "vi" else "just now"
    for size, vi, en in ((86400, "ngày", "d"), (3600, "giờ", "h"), (60, "phút", "min")):
        if s >= size:
            n = s // size
            return f"{n} {vi} trước" if lang == "vi" else f"{n} {en} ago"
    return f"{s} giây trước" if lang == "vi" else f"{s} s ago"


def number(v: float, lang: Lang) -> str:
    """Vietnamese writes a decimal comma."""
    text = f"{v:.2f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:.3g}"
    return text.replace(".", ",") if lang == "vi" else text
