"""Browser-facing protections on every response and every state-changing request.

- Cross-site request forgery: SameSite=Lax cookies still ride along on a form posted from
  another port of the same host (same *site*, different *origin*). So every unsafe request
  (POST, PUT, PATCH, DELETE) that carries the session cookie, and every login, must come
  from this very origin: ``Sec-Fetch-Site`` (sent by every current browser) must be
  ``same-origin`` or ``none``, and an ``Origin`` header must match the Host the request was
  sent to. Requests with neither header are not from a browser form or script (curl, the
  gateway, API clients with tokens) and pass.
- Security headers on every HTML and JSON response: a Content-Security-Policy that allows
  only this origin and the pages' own inline script (by hash), no framing, no sniffing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.auth import SESSION_COOKIE

UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SAFE_FETCH_SITES: Final = frozenset({"same-origin", "none"})
_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
# /docs is Swagger UI from vendored files started by a static script: the same policy holds.


def inline_script_hashes(template_dir: Path) -> list[str]:
    """CSP sources for the static inline scripts of our templates."""
    out: list[str] = []
    for path in sorted(template_dir.glob("*.html")):
        for body in _SCRIPT.findall(path.read_text(encoding="utf-8")):
            if "{{" in body or "{%" in body:
                continue  # a templated script could not be hashed ahead of time
            digest = hashlib.sha256(body.encode()).digest()
            out.append(f"'sha256-{base64.b64encode(digest).decode()}'")
    return out


def content_security_policy(script_hashes: Iterable[str]) -> str:
    scripts = " ".join(["'self'", *script_hashes])
    return (
        f"default-src 'self'; script-src {scripts}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )


def same_origin(headers: Headers) -> bool:
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site.lower() in _SAFE_FETCH_SITES
    origin = headers.get("origin")
    if origin is None:
        return True  # not a browser form or script: nothing to forge with
    if origin == "null":
        return False
    host = headers.get("host", "")
    return urlsplit(origin).netloc.lower() == host.lower()


class BrowserGuard:
    """ASGI middleware: refuse cross-origin unsafe cookie requests; add security headers."""

    def __init__(self, app: ASGIApp, *, csp: str) -> None:
        self.app = app
        self.headers = {
            "content-security-policy": csp,
            "x-content-type-options": "nosniff",
            "x-frame-options": "DENY",
            "referrer-policy": "same-origin",
            "cross-origin-opener-policy": "same-origin",
            "cross-origin-resource-policy": "same-origin",
            "permissions-policy": "camera=(), microphone=(), geolocation=()",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path = scope.get("path", "")
        if scope["method"] in UNSAFE_METHODS and not same_origin(headers):
            cookie = SESSION_COOKIE in headers.get("cookie", "")
            if (cookie and "authorization" not in headers) or path == "/login":
                await self._refuse(send)
                return
        extra = dict(self.headers)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in extra.items():
                    if name not in out:
                        out[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "detail": "cross-site request refused: send it from this server's own pages "
                "(or use an API token)"
            }
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        headers += [(k.encode(), v.encode()) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})
