"""Reading an ingest body with hard bounds on what arrives and what it inflates to."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator


class BodyError(Exception):
    """A body the server refuses; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_bounded(
    chunks: AsyncIterator[bytes],
    *,
    encoding: str | None,
    content_length: str | None,
    max_body: int,
    max_inflated: int,
) -> bytes:
    """Collect the body, inflating gzip as it streams, refusing oversized or bomb bodies."""
    enc = (encoding or "identity").strip().lower()
    if enc not in ("gzip", "identity", ""):
        raise BodyError(415, f"Content-Encoding {enc!r} not supported; send gzip or identity")
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError as err:
            raise BodyError(400, "Content-Length is not a number") from err
        if declared > max_body:
            raise BodyError(413, f"body of {declared} bytes exceeds the limit of {max_body}")
    gz = zlib.decompressobj(16 + zlib.MAX_WBITS) if enc == "gzip" else None
    received = 0
    out = bytearray()
    async for chunk in chunks:
        received += len(chunk)
        if received > max_body:
            raise BodyError(413, f"body exceeds the limit of {max_body} bytes")
        if gz is None:
            out += chunk
            continue
        try:
            # Inflate at most one byte past the limit: a bomb never materializes in memory.
            data = chunk
            while data:
                piece = gz.decompress(data, max_inflated - len(out) + 1)
                out += piece
                if len(out) > max_inflated:
                    raise BodyError(413, f"body inflates beyond the limit of {max_inflated} bytes")
                data = gz.unconsumed_tail
        except zlib.error as err:
            raise BodyError(400, f"body is not valid gzip: {err}") from err
    if gz is not None:
        try:
            out += gz.flush()
        except zlib.error as err:
            raise BodyError(400, f"body is not valid gzip: {err}") from err
        if not gz.eof:
            raise BodyError(400, "gzip body is truncated")
        if len(out) > max_inflated:
            raise BodyError(413, f"body inflates beyond the limit of {max_inflated} bytes")
    return bytes(out)
