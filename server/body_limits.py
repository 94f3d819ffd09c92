"""Request body size per route, enforced before anything reads, parses or authenticates.

FastAPI reads and parses a JSON body before any dependency (authentication included) runs,
so without a bound an anonymous 256 MB body is parsed in full. This middleware refuses a
body whose Content-Length is over the route's limit at the first read, and stops a chunked
one as soon as it crosses it (413). Ingest has its own, larger limit: its handler streams
and inflates the body under :mod:`server.body`, which also bounds what gzip inflates to.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.middleware.body_limit import RequestBodyLimitResponder
from starlette.types import ASGIApp, Receive, Scope, Send


class BodyLimits:
    """ASGI middleware: ``limits[path]`` bytes for listed paths, ``default`` for the rest."""

    def __init__(self, app: ASGIApp, *, default: int, limits: Mapping[str, int]) -> None:
        self.app = app
        self.default = default
        self.limits = dict(limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope.get("path", ""), self.default)
        await RequestBodyLimitResponder(self.app, limit)(scope, receive, send)
