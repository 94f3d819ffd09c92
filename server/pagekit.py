"""What every page shares: templates, the page's language, ETag/304, static files, gzip.

An open page asks for its fragment again every few seconds; an unchanged fragment is answered
with a 304 of a few hundred bytes, so a phone on 3G can leave a page open all day.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Final

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from server import i18n
from server.i18n import LANG_COOKIE, Lang

STATIC_DIR: Final = Path(__file__).parent / "static"
STATIC_PREFIX: Final = "/static"
# Pages are never framed (clickjacking on the login form) nor content-sniffed.
PAGE_HEADERS: Final = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# Revalidate every time (ETag), never serve another user's copy from a shared cache.
_REVALIDATE: Final = "private, no-cache"
_LANG_COOKIE_AGE_S: Final = 365 * 86400
# Ingest answers are tiny and a gateway's link may be metered per request: leave them alone.
_NO_GZIP_PATHS: Final = ("/api/v1/ingest",)


@cache
def static_version() -> str:
    """A digest of the static files: part of their URLs, so they can be cached for a year
    and still change the moment a new release ships."""
    h = hashlib.sha256()
    for p in sorted(STATIC_DIR.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(STATIC_DIR).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


def static_url(path: str) -> str:
    return f"{STATIC_PREFIX}/{path}?v={static_version()}"


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(["html"]),
        auto_reload=False,
    )
    env.globals["static"] = static_url
    env.filters["num"] = i18n.number
    env.filters["datetime"] = i18n.datetime
    return env


TEMPLATES: Final = _env()


def page_lang(request: Request) -> Lang:
    return i18n.negotiate(
        request.query_params.get("lang"),
        request.cookies.get(LANG_COOKIE),
        request.headers.get("accept-language"),
    )


def other_lang_url(request: Request, lang: Lang) -> str:
    """This page in the other language, keeping its other parameters (range, device)."""
    params = {k: v for k, v in request.query_params.items() if k not in ("lang", "partial")}
    params["lang"] = "en" if lang == "vi" else "vi"
    return str(request.url.path) + "?" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))


def base_context(request: Request, lang: Lang) -> dict[str, Any]:
    return {
        "lang": lang,
        "t": lambda k: i18n.t(k, lang),
        "other_lang_url": other_lang_url(request, lang),
        "path": request.url.path,
        "status_words": lambda s: i18n.status_words(s, lang),
        "status_icon": i18n.status_icon,
    }


def render(
    request: Request, template: str, ctx: Mapping[str, Any], *, status: int = 200
) -> Response:
    """Render ``template``; answer 304 when the browser already holds these exact bytes."""
    body = TEMPLATES.get_template(template).render(**ctx).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    headers = {
        **PAGE_HEADERS,
        "ETag": etag,
        "Cache-Control": _REVALIDATE,
        "Vary": "Cookie, Accept-Language",
    }
    inm = request.headers.get("if-none-match", "")
    if status == 200 and etag in (s.strip().removeprefix("W/") for s in inm.split(",")):
        resp: Response = Response(status_code=304, headers=headers)
    else:
        resp = HTMLResponse(body, status_code=status, headers=headers)
    given = request.query_params.get("lang")
    if given in ("vi", "en") and request.cookies.get(LANG_COOKIE) != given:
        resp.set_cookie(LANG_COOKIE, given, max_age=_LANG_COOKIE_AGE_S, samesite="lax")
    return resp


class CachedStatic(StaticFiles):
    """Static files with a year's cache: their URLs carry the content version."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        resp = await super().get_response(path, scope)
        if resp.status_code in (200, 304):
            resp.headers["Cache-Control"] = "public, max-age=31536000, immutable"
            resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp


class CompressExceptIngest:
    """gzip for pages, JSON, JS and CSS; ingest answers pass untouched."""

    def __init__(self, app: ASGIApp, minimum_size: int = 500) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size, compresslevel=6)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path", "") in _NO_GZIP_PATHS:
            await self.app(scope, receive, send)
            return
        await self.gzip(scope, receive, send)


async def read_form_body(request: Request, limit: int) -> bytes | None:
    """A posted form's body, read up to ``limit`` bytes; None if it is larger."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            return None
    return raw
