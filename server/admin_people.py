"""Admin page for people: admins manage everyone; commune staff create and look after the
farmer (viewer) accounts of their commune's hamlets. The same functions as the people API
(server/people.py), so every change is audited and ends the person's sessions where it must.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server.admin_pages import _form, form_page, gate
from server.auth import is_admin
from server.clientaddr import client_address
from server.i18n import Lang
from server.pagekit import render
from server.registry import RegistryError, Role, UserRow
from server.secrets_ import MIN_PASSWORD_LEN
from server.views import Viewer, _ctx, _viewer

router = APIRouter(include_in_schema=False)
_WORDS: Final = {
    "people": {"vi": "Tài khoản người dùng", "en": "People"},
    "new": {"vi": "Tạo tài khoản", "en": "New account"},
    "role": {"vi": "Vai trò", "en": "Role"},
    "temp_pw": {
        "vi": f"Mật khẩu tạm (ít nhất {MIN_PASSWORD_LEN} ký tự; người dùng đổi khi đăng nhập)",
        "en": f"Temporary password (at least {MIN_PASSWORD_LEN} characters; changed at login)",
    },
    "reset": {"vi": "Đặt lại mật khẩu", "en": "Reset password"},
    "disable": {"vi": "Khóa", "en": "Disable"},
    "enable": {"vi": "Mở khóa", "en": "Enable"},
    "disabled": {"vi": "đã khóa", "en": "disabled"},
    "must_change": {"vi": "chưa đổi mật khẩu tạm", "en": "temporary password"},
    "create": {"vi": "Tạo", "en": "Create"},
    "saved": {"vi": "Đã lưu", "en": "Saved"},
    "forbidden": {
        "vi": "Tài khoản của bạn không được sửa mục này.",
        "en": "Your account may not change this.",
    },
    "name": {"vi": "Tên đăng nhập", "en": "User name"},
    "hamlet": {"vi": "Ấp (nông dân)", "en": "Hamlet (farmer)"},
    "commune": {"vi": "Xã (cán bộ)", "en": "Commune (staff)"},
    "none": {"vi": "— không —", "en": "— none —"},
}
ROLE_WORDS: Final = {
    Role.VIEWER: ("Nông dân (xem một ấp)", "Farmer (one hamlet)"),
    Role.STAFF: ("Cán bộ xã", "Commune staff"),
    Role.INSTALLER: ("Kỹ thuật viên", "Installer"),
    Role.ADMIN: ("Quản trị", "Admin"),
}


_SHORT: Final = f"password too short: at least {MIN_PASSWORD_LEN} characters"


def w(key: str, lang: Lang) -> str:
    return _WORDS[key][lang]


async def _scope(v: Viewer) -> tuple[list[str], list[str], list[Role]] | None:
    """(hamlets, communes, roles) this person may give accounts; None: may not manage."""
    hamlets = await v.st.registry.hamlets()
    if is_admin(v.p):
        communes = sorted({h.commune for h in hamlets if h.commune})
        return [h.id for h in hamlets], communes, list(Role)
    u = v.p.user
    if u is not None and u.role == Role.STAFF and u.commune:
        return [h.id for h in hamlets if h.commune == u.commune], [], [Role.VIEWER]
    return None


def _may_touch(scope: tuple[list[str], list[str], list[Role]], u: UserRow, admin: bool) -> bool:
    return admin or (u.role == Role.VIEWER and u.hamlet in scope[0])


async def _page(request: Request, v: Viewer, *, error: str = "", status: int = 200) -> Response:
    scope = await _scope(v)
    if scope is None:
        denied = _ctx(request, v, w=lambda k: w(k, v.lang), error=w("forbidden", v.lang))
        denied |= {"users": [], "scope": None}
        return render(request, "admin_people.html", denied, status=403)
    admin = is_admin(v.p)
    users = [u for u in await v.st.registry.users() if _may_touch(scope, u, admin)]
    hamlets, communes, roles = scope
    return form_page(
        request,
        v,
        "admin_people.html",
        words=w,
        error=error,
        status=status,
        users=users,
        scope=scope,
        hamlets=hamlets,
        communes=communes,
        roles=[(str(r), ROLE_WORDS[r][0 if v.lang == "vi" else 1]) for r in roles],
        role_words={str(r): ROLE_WORDS[r][0 if v.lang == "vi" else 1] for r in Role},
        min_pw=MIN_PASSWORD_LEN,
        me=v.p.user.name if v.p.user else "",
    )


@router.get("/admin/people", response_class=HTMLResponse)
async def people_page(request: Request) -> Response:
    v = await _viewer(request)
    if (stop := gate(v, "/admin/people")) is not None:
        return stop
    return await _page(request, v)


def _done(v: Viewer, name: str) -> Response:
    return RedirectResponse(f"/admin/people?lang={v.lang}&saved={quote(name)}", status_code=303)


async def _editor(request: Request) -> tuple[Viewer, str] | Response:
    """The logged-in person managing accounts, with their name; or where to send them."""
    v = await _viewer(request)
    if (stop := gate(v, "/admin/people")) is not None or v.p.user is None:
        return stop or RedirectResponse("/login", status_code=303)
    return v, v.p.user.name


async def _editor_of(request: Request, name: str) -> tuple[Viewer, str] | Response:
    """As ``_editor``, for an account this person may look after (a 403 page otherwise)."""
    got = await _editor(request)
    if isinstance(got, Response):
        return got
    v = got[0]
    scope = await _scope(v)
    user = await v.st.registry.user(name)
    if scope is None or user is None or not _may_touch(scope, user, is_admin(v.p)):
        return await _page(request, v, error=w("forbidden", v.lang), status=403)
    return got


@router.post("/admin/people")
async def create(request: Request) -> Response:
    got = await _editor(request)
    if isinstance(got, Response):
        return got
    v, actor = got
    scope = await _scope(v)
    form = await _form(request)
    if scope is None or form is None:
        return await _page(request, v, error=w("forbidden", v.lang), status=403)
    hamlets, communes, roles = scope
    name = (form.get("name") or "").strip()
    role_text = form.get("role") or ""
    hamlet = form.get("hamlet") or None
    commune = form.get("commune") or None
    password = form.get("password") or ""
    if role_text not in {str(r) for r in roles}:
        return await _page(request, v, error=f"role {role_text!r}: not yours to give", status=403)
    role = Role(role_text)
    if hamlet is not None and hamlet not in hamlets:
        return await _page(
            request, v, error=f"hamlet {hamlet!r} is not one of the choices", status=400
        )
    if commune is not None and commune not in communes:
        return await _page(
            request, v, error=f"commune {commune!r} is not one of the choices", status=400
        )
    if role == Role.VIEWER and hamlet is None:
        return await _page(request, v, error="a farmer account needs its hamlet", status=400)
    if role == Role.STAFF and commune is None:
        return await _page(request, v, error="a staff account needs its commune", status=400)
    if len(password) < MIN_PASSWORD_LEN:
        return await _page(request, v, error=_SHORT, status=400)
    try:
        await v.st.registry.create_user(
            name,
            role,
            password,
            commune=commune if role == Role.STAFF else None,
            hamlet=hamlet if role == Role.VIEWER else None,
            actor=actor,
            address=client_address(request, v.st.trusted_proxies),
        )
    except (RegistryError, ValueError) as err:
        return await _page(request, v, error=str(err), status=400)
    return _done(v, name)


@router.post("/admin/people/{name}/password")
async def reset(request: Request, name: str) -> Response:
    got = await _editor_of(request, name)
    if isinstance(got, Response):
        return got
    v, actor = got
    form = await _form(request) or {}
    password = form.get("password") or ""
    if len(password) < MIN_PASSWORD_LEN:
        return await _page(request, v, error=_SHORT, status=400)
    address = client_address(request, v.st.trusted_proxies)
    await v.st.registry.reset_password(name, password, actor=actor, address=address)
    return _done(v, name)


@router.post("/admin/people/{name}/disabled")
async def disable(request: Request, name: str) -> Response:
    got = await _editor_of(request, name)
    if isinstance(got, Response):
        return got
    v, actor = got
    if name == actor:
        return await _page(request, v, error="you cannot disable yourself", status=409)
    form = await _form(request) or {}
    address = client_address(request, v.st.trusted_proxies)
    await v.st.registry.set_disabled(
        name, form.get("disabled") == "1", actor=actor, address=address
    )
    return _done(v, name)
