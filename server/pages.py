"""Login, logout and password pages (the boards are in server/views.py). No build step."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server.audit import Action
from server.auth import SESSION_COOKIE, Principal
from server.clientaddr import client_address
from server.deps import principal_of
from server.i18n import Lang, t
from server.pagekit import TEMPLATES, page_lang, read_form_body
from server.secrets_ import MIN_PASSWORD_LEN, verify_password
from server.state import AppState

router = APIRouter(include_in_schema=False)
TEMPLATE_DIR = Path(__file__).parent / "templates"
_TEMPLATES = TEMPLATES
MAX_FORM_BYTES = 4096
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


def _form_page(template: str, lang: Lang, error: str | None, status: int) -> HTMLResponse:
    html = _TEMPLATES.get_template(template).render(lang=lang, t=lambda k: t(k, lang), error=error)
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _login_page(lang: Lang, error: str | None = None, status: int = 200) -> HTMLResponse:
    return _form_page("login.html", lang, error, status)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> HTMLResponse:
    return _login_page(page_lang(request))


@router.post("/login")
async def login(request: Request) -> Response:
    st = _state(request)
    lang = page_lang(request)
    form = await _read_form(request)
    if form is None:
        return _login_page(lang, "form too large", 413)
    name = (form.get("username") or [""])[0][:64]
    password = (form.get("password") or [""])[0][:1024]
    client = client_address(request, st.trusted_proxies)
    wait = st.login_throttle.admit(client, name)  # counted before any await: atomic
    if wait > 0:
        busy = _login_page(lang, t("too_many", lang), 429)
        busy.headers["Retry-After"] = str(max(1, round(wait)))
        return busy
    user = await st.registry.user(name)
    ok = await _verify(user.pw_hash if user and not user.disabled else None, password)
    if user is None or not ok:
        await st.registry.audit(name or "?", Action.LOGIN_FAILED, name, address=client)
        return _login_page(lang, t("bad_login", lang), 401)
    st.login_throttle.succeeded(client, name)
    session = await st.registry.create_session(user, st.config.auth.session_hours, client)
    after = "/password" if user.must_change_password else "/"
    resp = RedirectResponse(f"{after}?lang={lang}", status_code=303)
    resp.set_cookie(
        SESSION_COOKIE,
        session,
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
async def logout(request: Request) -> Response:
    st = _state(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        # Ends the session on the server: a copied cookie stops working at once.
        address = client_address(request, st.trusted_proxies)
        await st.registry.end_session(cookie, address)
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(SESSION_COOKIE)
    return resp


async def _caller(request: Request) -> Principal:
    return await principal_of(request, _state(request))


def _password_page(lang: Lang, error: str | None = None, status: int = 200) -> HTMLResponse:
    return _form_page("password.html", lang, error, status)


@router.get("/password", response_class=HTMLResponse)
async def password_form(request: Request) -> Response:
    lang = page_lang(request)
    p = await _caller(request)
    if p.session is None:
        return RedirectResponse(f"/login?lang={lang}", status_code=303)
    return _password_page(lang)


@router.post("/password")
async def password_change(request: Request) -> Response:
    st = _state(request)
    lang = page_lang(request)
    p = await _caller(request)
    if p.session is None or p.user is None:
        return RedirectResponse(f"/login?lang={lang}", status_code=303)
    form = await _read_form(request)
    if form is None:
        return _password_page(lang, "form too large", 413)
    current = (form.get("current") or [""])[0][:1024]
    new = (form.get("new") or [""])[0][:1024]
    again = (form.get("again") or [""])[0][:1024]
    if new != again:
        return _password_page(lang, t("pw_differ", lang), 422)
    if len(new) < MIN_PASSWORD_LEN or new == current:
        return _password_page(lang, t("pw_weak", lang), 422)
    client = client_address(request, st.trusted_proxies)
    if st.login_throttle.admit(client, p.user.name) > 0:
        return _password_page(lang, t("too_many", lang), 429)
    if not await _verify(p.user.pw_hash, current):
        return _password_page(lang, t("bad_login", lang), 403)
    st.login_throttle.succeeded(client, p.user.name)
    await st.registry.change_own_password(p.user.id, new, keep_session=p.session, address=client)
    return RedirectResponse(f"/?lang={lang}", status_code=303)


async def _read_form(request: Request) -> dict[str, list[str]] | None:
    raw = await read_form_body(request, MAX_FORM_BYTES)
    if raw is None:
        return None
    return parse_qs(raw.decode("utf-8", "replace"), max_num_fields=10)
