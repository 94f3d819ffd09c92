"""Login and logout pages (the boards are in server/views.py). No build step."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server import registry
from server.auth import SESSION_COOKIE, session_value
from server.i18n import Lang, t
from server.pagekit import TEMPLATES, page_lang
from server.secrets_ import verify_password
from server.state import AppState

router = APIRouter(include_in_schema=False)
_TEMPLATES = TEMPLATES
_MAX_FORM = 4096
# Pages are never framed (clickjacking on the login form) nor content-sniffed.
_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _state(request: Request) -> AppState:
    st: AppState = request.app.state.hamlet
    return st


def _login_page(lang: Lang, error: str | None = None, status: int = 200) -> HTMLResponse:
    html = _TEMPLATES.get_template("login.html").render(
        lang=lang, t=lambda k: t(k, lang), error=error
    )
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> HTMLResponse:
    return _login_page(page_lang(request))


@router.post("/login")
async def login(request: Request) -> Response:
    st = _state(request)
    lang = page_lang(request)
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > _MAX_FORM:
            return _login_page(lang, "form too large", 413)
    form = parse_qs(raw.decode("utf-8", "replace"), max_num_fields=10)
    name = (form.get("username") or [""])[0][:64]
    password = (form.get("password") or [""])[0][:1024]
    client = request.client.host if request.client else "?"
    key = f"{client}|{name}"
    if st.login_limiter.blocked_for(key) > 0:
        return _login_page(lang, t("too_many", lang), 429)
    user = await st.store.db.read(registry.user_by_name, name)
    ok = await _verify(user.pw_hash if user and not user.disabled else None, password)
    if user is None or not ok:
        st.login_limiter.fail(key)
        return _login_page(lang, t("bad_login", lang), 401)
    st.login_limiter.reset(key)
    resp = RedirectResponse(f"/?lang={lang}", status_code=303)
    resp.set_cookie(
        SESSION_COOKIE,
        session_value(st.config.secret, user.id, st.config.auth.session_hours),
        max_age=int(st.config.auth.session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=bool(st.config.auth.cookie_secure),
    )
    return resp


async def _verify(pw_hash: str | None, password: str) -> bool:
    import asyncio

    # argon2 takes tens of milliseconds of CPU: keep it off the event loop.
    return await asyncio.to_thread(verify_password, pw_hash, password)


@router.post("/logout")
async def logout() -> Response:
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(SESSION_COOKIE)
    return resp
