"""Admin pages for staff, installers and admins: devices (confirm, name, crop, reporting
interval, service hours) and hamlets. Every choice is picked from a list and checked again
here; plain HTML forms posted to this origin (the CSRF checks see a same-origin browser form).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from hamlet.thresholds import CROP_SALINITY
from server import registry
from server.auth import PrincipalKind, is_admin
from server.i18n import Lang
from server.models import DeviceIn, DeviceKind
from server.pagekit import read_form_body, render
from server.views import Viewer, _ctx, _viewer

router = APIRouter(include_in_schema=False)
MAX_FORM_BYTES: Final = 4096
# (seconds, vi, en): what a sensor or kiosk is set to report at; nothing else is accepted.
INTERVALS: Final = (
    (60, "1 phút", "1 min"),
    (120, "2 phút", "2 min"),
    (300, "5 phút", "5 min"),
    (600, "10 phút", "10 min"),
    (900, "15 phút", "15 min"),
    (1800, "30 phút", "30 min"),
    (3600, "1 giờ", "1 h"),
)
# Service-hours presets (hamlet/vncalendar.ServiceHours text).
SERVICE_HOURS: Final = (
    ("Mon-Fri 07:00-11:30,13:30-17:00", "Giờ hành chính (T2–T6)", "Office hours (Mon–Fri)"),
    ("Mon-Sat 07:00-11:30,13:30-17:00", "Giờ hành chính, cả thứ Bảy", "Office hours incl. Sat"),
    ("Mon-Sun 06:00-22:00; holidays", "6:00–22:00 mọi ngày", "06:00–22:00 every day"),
    ("Mon-Sun 00:00-24:00; holidays", "Suốt ngày đêm", "Around the clock"),
)
_WORDS: Final = {
    "admin_devices": {"vi": "Quản lý thiết bị", "en": "Manage devices"},
    "admin_hamlets": {"vi": "Quản lý ấp", "en": "Manage hamlets"},
    "save": {"vi": "Lưu và xác nhận", "en": "Save and confirm"},
    "saved": {"vi": "Đã lưu", "en": "Saved"},
    "name": {"vi": "Tên hiển thị", "en": "Display name"},
    "kind": {"vi": "Loại", "en": "Kind"},
    "interval": {"vi": "Chu kỳ gửi", "en": "Reporting interval"},
    "hours": {"vi": "Giờ phục vụ", "en": "Service hours"},
    "none": {"vi": "— không —", "en": "— none —"},
    "forbidden": {
        "vi": "Tài khoản của bạn không được sửa mục này.",
        "en": "Your account may not change this.",
    },
    "commune": {"vi": "Xã", "en": "Commune"},
    "public": {"vi": "Công khai (xem không cần đăng nhập)", "en": "Public (no login to read)"},
    "add": {"vi": "Thêm / cập nhật", "en": "Add / update"},
    "id": {"vi": "Mã (chữ không dấu, số, -)", "en": "Id (letters, digits, -)"},
}


def w(key: str, lang: Lang) -> str:
    return _WORDS[key][lang]


async def _form(request: Request) -> dict[str, str] | None:
    raw = await read_form_body(request, MAX_FORM_BYTES)
    if raw is None:
        return None
    parsed = parse_qs(raw.decode("utf-8", "replace"), max_num_fields=20, keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def _login(v: Viewer, path: str) -> Response:
    return RedirectResponse(f"/login?lang={v.lang}&next={quote(path)}", status_code=303)


def gate(v: Viewer, path: str) -> Response | None:
    """Log in first; with an admin-set temporary password, change it first."""
    if v.p.kind != PrincipalKind.USER or v.p.user is None:
        return _login(v, path)
    if v.p.must_change_password:
        return RedirectResponse(f"/password?lang={v.lang}", status_code=303)
    return None


async def _editable(v: Viewer) -> list[str]:
    reg = v.st.registry
    return [h.id for h in await reg.hamlets() if await reg.can_edit_devices(v.p, h.id)]


async def _devices_page(
    request: Request, v: Viewer, *, error: str = "", status: int = 200
) -> Response:
    hamlets = await _editable(v)
    devices = sorted(
        [d for d in await v.st.store.devices(hamlets) if d.hamlet in hamlets],
        key=lambda d: (d.confirmed, d.hamlet, d.id),
    )
    gw_ids = {g.id for g in await v.st.registry.gateways(hamlets)}
    return form_page(
        request,
        v,
        "admin_devices.html",
        error=error,
        status=status,
        devices=[d for d in devices if d.id not in gw_ids],
        kinds=[k.value for k in DeviceKind],
        crops=[(c.crop, c.vi if v.lang == "vi" else c.en) for c in CROP_SALINITY.values()],
        intervals=[(s, vi if v.lang == "vi" else en) for s, vi, en in INTERVALS],
        hours=[(t, vi if v.lang == "vi" else en) for t, vi, en in SERVICE_HOURS],
    )


def form_page(
    request: Request,
    v: Viewer,
    template: str,
    *,
    words: Callable[[str, Lang], str] = w,
    error: str,
    status: int,
    **extra: Any,
) -> Response:
    """An admin form page: its words, the error to show, and what was just saved."""
    ctx = _ctx(
        request,
        v,
        w=lambda k: words(k, v.lang),
        error=error,
        saved=request.query_params.get("saved", ""),
        **extra,
    )
    return render(request, template, ctx, status=status)


@router.get("/admin/devices", response_class=HTMLResponse)
async def devices_page(request: Request) -> Response:
    v = await _viewer(request)
    if (stop := gate(v, "/admin/devices")) is not None:
        return stop
    return await _devices_page(request, v)


def _device_in(device_id: str, form: dict[str, str]) -> DeviceIn:
    """The form as a DeviceIn; only listed choices pass (ValueError says which field)."""
    kind = form.get("kind", "sensor")
    if kind not in {k.value for k in DeviceKind}:
        raise ValueError(f"kind {kind!r} is not one of the choices")
    crop = form.get("crop") or None
    if crop is not None and crop not in CROP_SALINITY:
        raise ValueError(f"crop {crop!r} is not one of the choices")
    interval_text = form.get("interval") or ""
    allowed = {str(s) for s, _, _ in INTERVALS}
    if interval_text and interval_text not in allowed:
        raise ValueError(f"interval {interval_text!r} is not one of the choices")
    hours = form.get("hours") or None
    if hours is not None and hours not in {t for t, _, _ in SERVICE_HOURS}:
        raise ValueError(f"service hours {hours!r} are not one of the choices")
    return DeviceIn.model_validate(
        {
            "id": device_id,
            "kind": kind,
            "name": (form.get("name") or "").strip()[:200],
            "crop": crop,
            "expected_interval_s": int(interval_text) if interval_text else None,
            "service_hours": hours,
            "gateway": form.get("gateway") or None,
        }
    )


@router.post("/admin/devices/{hamlet_id}/{device_id}")
async def save_device(request: Request, hamlet_id: str, device_id: str) -> Response:
    v = await _viewer(request)
    if (stop := gate(v, "/admin/devices")) is not None:
        return stop
    if not await v.st.registry.can_edit_devices(v.p, hamlet_id):
        return await _devices_page(request, v, error=w("forbidden", v.lang), status=403)
    form = await _form(request)
    if form is None:
        return await _devices_page(request, v, error="form too large", status=413)
    try:
        dev = _device_in(device_id, form)
        await v.st.registry.upsert_device(hamlet_id, dev)
    except (ValueError, ValidationError, registry.RegistryError) as err:
        return await _devices_page(request, v, error=f"{device_id}: {err}", status=400)
    return RedirectResponse(
        f"/admin/devices?lang={v.lang}&saved={quote(hamlet_id)}/{quote(device_id)}",
        status_code=303,
    )


async def _hamlets_page(
    request: Request, v: Viewer, *, error: str = "", status: int = 200
) -> Response:
    hamlets = await v.st.registry.hamlets()
    return form_page(request, v, "admin_hamlets.html", error=error, status=status, hamlets=hamlets)


@router.get("/admin/hamlets", response_class=HTMLResponse)
async def hamlets_page(request: Request) -> Response:
    v = await _viewer(request)
    if (stop := gate(v, "/admin/hamlets")) is not None:
        return stop
    if not is_admin(v.p):
        return await _hamlets_page(request, v, error=w("forbidden", v.lang), status=403)
    return await _hamlets_page(request, v)


@router.post("/admin/hamlets")
async def save_hamlet(request: Request) -> Response:
    v = await _viewer(request)
    if (stop := gate(v, "/admin/hamlets")) is not None:
        return stop
    if not is_admin(v.p):
        return await _hamlets_page(request, v, error=w("forbidden", v.lang), status=403)
    form = await _form(request)
    if form is None:
        return await _hamlets_page(request, v, error="form too large", status=413)
    hid = (form.get("id") or "").strip()
    commune = (form.get("commune") or "").strip() or None
    try:
        if commune is not None:
            await v.st.registry.add_commune(commune, form.get("commune_name", "")[:200])
        await v.st.registry.add_hamlet(
            hid,
            commune=commune,
            name=(form.get("name") or "").strip()[:200],
            public=form.get("public") == "1",
        )
    except (ValueError, registry.RegistryError) as err:
        return await _hamlets_page(request, v, error=str(err), status=400)
    return RedirectResponse(f"/admin/hamlets?lang={v.lang}&saved={quote(hid)}", status_code=303)
