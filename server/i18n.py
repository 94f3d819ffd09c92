"""User-facing words of the web pages, Vietnamese first, English on request."""

from __future__ import annotations

import datetime as dt
from typing import Final, Literal
from zoneinfo import ZoneInfo

Lang = Literal["vi", "en"]
LANG_COOKIE: Final = "lang"
VN_TZ: Final = ZoneInfo("Asia/Ho_Chi_Minh")

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
    "offline": {
        "vi": "Mất kết nối — số liệu không còn được cập nhật. Đang thử lại…",
        "en": "Connection lost — figures are no longer updating. Retrying…",
    },
    "stale": {"vi": "số liệu cũ", "en": "old data"},
    "technical": {"vi": "Thông số kỹ thuật", "en": "Technical figures"},
    "hamlets": {"vi": "Các ấp", "en": "Hamlets"},
    "services": {"vi": "Ki-ốt và dịch vụ", "en": "Kiosks and services"},
    "online": {"vi": "Đang hoạt động", "en": "Online"},
    "offline_dev": {"vi": "Mất liên lạc", "en": "Offline"},
    "trend": {"vi": "Diễn biến", "en": "Trend"},
    "range_24h": {"vi": "24 giờ", "en": "24 h"},
    "range_7d": {"vi": "7 ngày", "en": "7 days"},
    "range_30d": {"vi": "30 ngày", "en": "30 days"},
    "back": {"vi": "← Về ấp", "en": "← Back to hamlet"},
    "details": {"vi": "Xem diễn biến", "en": "See trend"},
    "installer": {"vi": "Kỹ thuật viên", "en": "Installer"},
    "buffer_depth": {"vi": "Chờ gửi", "en": "Buffered"},
    "oldest_unsent": {"vi": "Cũ nhất chưa gửi", "en": "Oldest unsent"},
    "gaps": {"vi": "Khoảng thiếu", "en": "Missing ranges"},
    "declared": {"vi": "Đã khai báo mất", "en": "Declared lost"},
    "sources": {"vi": "Nguồn dữ liệu", "en": "Sources"},
    "rejections": {"vi": "Bản ghi bị từ chối gần đây", "en": "Recent rejected records"},
    "raw": {"vi": "Số liệu thô", "en": "Raw readings"},
    "time": {"vi": "Thời điểm", "en": "Time"},
    "no_chart": {"vi": "Chưa có số liệu trong khoảng này.", "en": "No data in this range."},
    "crop": {"vi": "Cây trồng", "en": "Crop"},
    "limit_line": {"vi": "vạch đỏ: ngưỡng nguy hiểm", "en": "red line: danger level"},
    "manage": {"vi": "Quản lý", "en": "Manage"},
    "alert_subscriptions": {"vi": "Nhận cảnh báo", "en": "Alert messages"},
    "staff": {"vi": "Cán bộ xã", "en": "Commune staff"},
    "commune": {"vi": "Xã", "en": "Commune"},
    "state": {"vi": "Tình trạng", "en": "State"},
    "sessions_today": {"vi": "Lượt dùng hôm nay", "en": "Sessions today"},
    "dossiers_today": {"vi": "Hồ sơ hôm nay", "en": "Dossiers today"},
    "online_dossiers": {"vi": "trực tuyến", "en": "online"},
    "satisfaction": {"vi": "Hài lòng hôm nay", "en": "Satisfaction today"},
    "avail_today": {"vi": "Sẵn sàng hôm nay", "en": "Available today"},
    "avail_month": {"vi": "Sẵn sàng tháng này", "en": "Available this month"},
    "report_card": {"vi": "Bảng chỉ số tháng — xã", "en": "Monthly report card — commune"},
    "printable": {"vi": "Bản in", "en": "Printable"},
    "target": {"vi": "Chỉ tiêu", "en": "Target"},
    "met": {"vi": "Đạt?", "en": "Met?"},
    "yes_met": {"vi": "Đạt", "en": "Met"},
    "not_met": {"vi": "Chưa đạt", "en": "Not met"},
    "change": {"vi": "So với tháng trước", "en": "Change"},
    "sources_failed": {"vi": "Nguồn hỏng", "en": "Sources failed"},
    "components_failed": {"vi": "Thành phần hỏng", "en": "Components failed"},
    "previous_run_failed": {"vi": "Lần chạy trước lỗi", "en": "Previous run failed"},
    "dead_letters": {
        "vi": "Bản ghi hỏng giữ lại trên gateway",
        "en": "Dead letters kept on the gateway",
    },
    "people": {"vi": "Tài khoản người dùng", "en": "People"},
    "alerts_open": {"vi": "Cảnh báo đang diễn ra", "en": "Active alerts"},
    "alerts_history": {"vi": "Cảnh báo 30 ngày qua", "en": "Alerts, last 30 days"},
    "since": {"vi": "bắt đầu", "en": "started"},
    "ended": {"vi": "kết thúc", "en": "ended"},
    "loading": {"vi": "Đang tải…", "en": "Loading…"},
    "source_states": {"vi": "Trạng thái từng nguồn", "en": "Each source's state"},
    "kind": {"vi": "Loại", "en": "Kind"},
    "last_reading": {"vi": "Số liệu cuối", "en": "Last reading"},
    "last_error": {"vi": "Lỗi gần nhất", "en": "Last error"},
    "what_to_do": {"vi": "Việc cần làm", "en": "What to do"},
    "components": {"vi": "Thành phần của gateway", "en": "Gateway components"},
    "recent_dead": {"vi": "Bản ghi hỏng gần đây", "en": "Recent dead letters"},
    "reason": {"vi": "Lý do", "en": "Reason"},
    "source": {"vi": "Nguồn", "en": "Source"},
    "excerpt": {"vi": "Dữ liệu nhận được (trích)", "en": "Bytes received (excerpt)"},
    "report_at": {"vi": "Báo cáo trạng thái của gateway lúc", "en": "Gateway status report of"},
    "no_report": {
        "vi": "Gateway chưa gửi báo cáo trạng thái (cần bản cài đặt mới hơn).",
        "en": "No status report from this gateway yet (it needs a newer release).",
    },
    "dev_failing": {"vi": "không trả lời, đang thử lại", "en": "not answering, retrying"},
    "dev_dead": {
        "vi": "mất liên lạc, thăm dò thưa dần",
        "en": "gone silent, probed less often",
    },
    "omitted": {"vi": "nguồn khác không hiển thị", "en": "more sources not shown"},
    "dead_login": {
        "vi": "Đăng nhập với vai trò kỹ thuật viên để xem nội dung bản ghi hỏng.",
        "en": "Log in as an installer to see what the dead letters held.",
    },
}

# A source's state (gateway/sources/base.py), shown as colour, word and icon together.
SOURCE_STATE_WORDS: Final[dict[str, dict[str, str]]] = {
    "running": {"vi": "Đang chạy", "en": "Running", "icon": "✓", "class": "safe"},
    "starting": {"vi": "Đang khởi động", "en": "Starting", "icon": "…", "class": "unknown"},
    "reconnecting": {"vi": "Đang kết nối lại", "en": "Reconnecting", "icon": "⚠", "class": "watch"},
    "failed": {"vi": "Hỏng", "en": "Failed", "icon": "✖", "class": "danger"},
    "stopped": {"vi": "Đã dừng", "en": "Stopped", "icon": "■", "class": "unknown"},
}

# A status is never shown by colour alone: words and an icon go with it.
STATUS_WORDS: Final[dict[str, dict[str, str]]] = {
    "safe": {"vi": "An toàn", "en": "Safe", "icon": "✓"},
    "watch": {"vi": "Cần theo dõi", "en": "Watch", "icon": "⚠"},
    "danger": {"vi": "Nguy hiểm", "en": "Danger", "icon": "✖"},
    "unknown": {"vi": "Chưa rõ", "en": "Unknown", "icon": "?"},
}

# One line of advice per (metric, status); {crop} is the crop's name in the page's language.
ADVICE: Final[dict[tuple[str, str], dict[str, str]]] = {
    ("salinity", "safe"): {
        "vi": "Nước dùng được cho {crop}.",
        "en": "Water is fine for {crop}.",
    },
    ("salinity", "watch"): {
        "vi": "Độ mặn đang lên gần ngưỡng {crop}: trữ nước ngọt, đo lại trước khi lấy nước.",
        "en": "Salinity is near the limit for {crop}: store fresh water, check before intake.",
    },
    ("salinity", "danger"): {
        "vi": "Không lấy nước này tưới {crop}: đóng cống, dùng nước ngọt đã trữ.",
        "en": "Do not water {crop} with this: close the sluice, use stored fresh water.",
    },
    ("water_level", "safe"): {"vi": "Mực nước bình thường.", "en": "Water level is normal."},
    ("water_level", "watch"): {
        "vi": "Nước đã tới báo động I: kiểm tra, gia cố bờ bao.",
        "en": "Water at alarm level I: check and strengthen the dykes.",
    },
    ("water_level", "danger"): {
        "vi": "Nước vượt báo động II: gia cố bờ bao, đưa người và tài sản lên chỗ cao.",
        "en": "Water above alarm level II: shore up dykes, move people and goods up high.",
    },
    ("field_water", "safe"): {
        "vi": "Ruộng còn đủ nước, chưa cần bơm.",
        "en": "The field has enough water; no pumping needed.",
    },
    ("field_water", "watch"): {
        "vi": "Nước ruộng đang rút: chuẩn bị bơm.",
        "en": "Field water is dropping: get ready to pump.",
    },
    ("field_water", "danger"): {
        "vi": "Nước ruộng dưới mặt đất 15 cm: bơm nước vào ruộng.",
        "en": "Field water 15 cm below the surface: irrigate now.",
    },
}


def advice(metric: str, status: str, crop_name: str, lang: Lang) -> str:
    line = ADVICE.get((metric, status))
    return line[lang].format(crop=crop_name) if line else ""


def status_words(status: str, lang: Lang) -> str:
    return STATUS_WORDS[status][lang]


def status_icon(status: str) -> str:
    return STATUS_WORDS[status]["icon"]


def negotiate(query: str | None, cookie: str | None, accept_language: str | None) -> Lang:
    """``?lang=`` first, then the remembered cookie, then the browser's Accept-Language
    (highest q of vi/en), else Vietnamese."""
    for given in (query, cookie):
        if given in ("vi", "en"):
            return "en" if given == "en" else "vi"
    best: tuple[float, Lang] | None = None
    for i, part in enumerate((accept_language or "")[:512].split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in ("vi", "en"):
            continue
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        if q <= 0:
            continue
        # Earlier wins among equal q (the browser's own order).
        lang: Lang = "en" if primary == "en" else "vi"
        if best is None or q - i * 1e-6 > best[0]:
            best = (q - i * 1e-6, lang)
    return best[1] if best else "vi"


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
    """Vietnamese writes a decimal comma and groups thousands with dots: 0,7 and 1.350."""
    if abs(v) >= 1e9:
        text = f"{v:.3g}"
        return text.replace(".", ",") if lang == "vi" else text
    text = f"{v:,.2f}".rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    if lang == "vi":
        return text.translate(str.maketrans(",.", ".,"))
    return text


def date(ms: int, lang: Lang) -> str:
    """Vietnam's calendar day: 28/11/2026 (en: 2026-11-28)."""
    d = dt.datetime.fromtimestamp(ms / 1000, VN_TZ)
    return d.strftime("%d/%m/%Y") if lang == "vi" else d.strftime("%Y-%m-%d")


def datetime(ms: int, lang: Lang) -> str:
    """Vietnam time of day and date: 14:05 28/11/2026."""
    d = dt.datetime.fromtimestamp(ms / 1000, VN_TZ)
    return d.strftime("%H:%M %d/%m/%Y") if lang == "vi" else d.strftime("%Y-%m-%d %H:%M")
