"""Error answers that cannot fail themselves, whatever the client sent.

FastAPI's stock validation handler echoes each offending input back; an input JSON cannot
carry (NaN, 1e999 parsed to infinity, a lone surrogate, undecodable bytes) made the error
handler itself crash into an anonymous 500. Here no input is ever echoed, every string
that goes out is made encodable, and a 422 has the documented shape: ``detail`` a
sentence, ``errors`` the list of (where, what) pairs.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

log = logging.getLogger("hamlet.server.http")

MAX_ERRORS: Final = 20
_MAX_TEXT: Final = 200


class ErrorOut(BaseModel):
    detail: str


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(examples=[["body", "hamlet"]])
    msg: str = Field(examples=["String should match pattern '^[A-Za-z0-9]...'"])
    type: str = Field(examples=["string_pattern_mismatch"])


class ValidationErrorOut(BaseModel):
    """A structurally invalid request: what was wrong, never the input itself."""

    detail: str = Field(examples=["invalid request: body.hamlet: Field required"])
    errors: list[ErrorItem] = Field(default_factory=list)


def clean_text(value: object, limit: int = _MAX_TEXT) -> str:
    """A short string that encodes as UTF-8 (lone surrogates become escapes)."""
    text = value if isinstance(value, str) else repr(value)
    text = text[:limit]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value, 10_000)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {clean_text(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


class SafeJSONResponse(Response):
    """JSON that always renders: non-finite numbers become null, strings are made encodable."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:
            return json.dumps(
                content, ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ).encode("utf-8")
        except (ValueError, TypeError, UnicodeEncodeError):
            return json.dumps(_clean(content), separators=(",", ":"), default=str).encode()


def error_items(errors: Iterable[Mapping[str, Any]]) -> list[ErrorItem]:
    out: list[ErrorItem] = []
    for e in errors:
        loc: Sequence[object] = e.get("loc") or ()
        out.append(
            ErrorItem(
                loc=[x if isinstance(x, int) else clean_text(x, 64) for x in loc],
                msg=clean_text(e.get("msg", "")),
                type=clean_text(e.get("type", ""), 64),
            )
        )
        if len(out) >= MAX_ERRORS:
            break
    return out


def validation_body(errors: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    items = error_items(errors)
    first = items[0] if items else None
    where = ".".join(str(x) for x in first.loc) if first else ""
    detail = f"invalid request: {where}: {first.msg}" if first else "invalid request"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return ValidationErrorOut(detail=detail, errors=items).model_dump()


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return SafeJSONResponse(validation_body(exc.errors()), status_code=422)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return SafeJSONResponse(
        {"detail": _clean(exc.detail)}, status_code=exc.status_code, headers=exc.headers
    )


async def _disconnect(request: Request, exc: Exception) -> Response:
    # The client went away (or was cut off by a read timeout) before its body arrived:
    # nobody is left to answer, and it is not a server fault worth a traceback.
    client = request.client.host if request.client else "?"
    log.info("client %s went away during %s %s", client, request.method, request.url.path)
    return Response(status_code=400)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(ClientDisconnect, _disconnect)


def unify_422(schema: dict[str, Any]) -> None:
    """Every 422 in the OpenAPI document points at :class:`ValidationErrorOut`."""
    comps = schema.setdefault("components", {}).setdefault("schemas", {})
    comps["ValidationErrorOut"] = ValidationErrorOut.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    defs = comps["ValidationErrorOut"].pop("$defs", {})
    for name, sub in defs.items():
        comps.setdefault(name, sub)
    ref = {"$ref": "#/components/schemas/ValidationErrorOut"}
    for ops in schema.get("paths", {}).values():
        for op in ops.values():
            resp = op.get("responses", {}).get("422") if isinstance(op, dict) else None
            if resp is not None:
                resp["content"] = {"application/json": {"schema": ref}}
    for stale in ("HTTPValidationError", "ValidationError"):
        comps.pop(stale, None)
