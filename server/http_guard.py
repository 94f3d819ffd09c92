"""Connection-level bounds uvicorn lacks: a deadline for a request's head and body, limits on
head size and header count, and a cap on open connections that never starves new clients.

uvicorn times out idle keep-alive connections only *after* a response: a client that opens
a connection and trickles its headers (or a body) holds a socket, a file descriptor and
memory forever, and a thousand of them exhaust the default 1,024-descriptor limit. So:

- from the moment a connection opens (or a keep-alive request's first byte arrives) the
  head must be complete within ``header_timeout_s``, the body within ``body_timeout_s``;
- the request line plus headers may not exceed ``max_head_bytes`` nor ``max_headers``
  lines (431), counted as the parser hands them over, before anything is allocated for
  the request;
- at most ``max_connections`` connections are open; when a new one would exceed that, the
  connection that has waited longest for its *client* (half-sent head or body, or idle
  keep-alive) is closed to make room. A flood of slow clients therefore evicts itself,
  while a client that sends its request at once is served. Only when every connection is
  busy with a request the server is working on is the newcomer turned away (503).

Used as uvicorn's ``http`` protocol class (see :mod:`server.runner`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

log = logging.getLogger("hamlet.server.http")

# Descriptors kept free for the database (writer + readers, each with -wal and -shm),
# logs, the listening socket and the event loop.
FD_RESERVE: Final = 100
_LOG_EVERY_S: Final = 10.0
# After refusing a request, read and discard what the client is still sending for this long
# (or this many bytes) before closing: closing a socket with unread input makes the kernel
# send a reset, which can destroy our answer before the client has read it.
_LINGER_S: Final = 2.0
_LINGER_MAX_BYTES: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class ConnLimits:
    max_connections: int
    max_head_bytes: int
    max_headers: int
    header_timeout_s: float
    body_timeout_s: float


def fd_budget(reserve: int = FD_RESERVE) -> int:
    """Connections this process can hold without running out of file descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(8, soft - reserve)


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing and answer ``status``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _raw_response(status: int, reason: str, detail: str) -> bytes:
    body = json.dumps({"detail": detail}).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: application/json\r\n"
        "x-content-type-options: nosniff\r\n"
        "content-security-policy: default-src 'none'; frame-ancestors 'none'\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


@dataclass
class Guard:
    """Per-process bookkeeping shared by every connection of one uvicorn server."""

    limits: ConnLimits
    # Connections waiting for bytes from their client, longest-waiting first.
    waiting: OrderedDict[GuardedProtocol, None] = field(default_factory=OrderedDict)
    evicted: int = 0
    refused: int = 0
    timed_out: int = 0
    _logged: tuple[float, int, int, int] = (0.0, 0, 0, 0)

    def make_room(self, newcomer: GuardedProtocol, open_now: int) -> bool:
        """Close the longest-waiting connection if the cap is exceeded; False if none could."""
        if open_now <= self.limits.max_connections:
            return True
        for victim in self.waiting:
            if victim is not newcomer:
                self.waiting.pop(victim)
                self.evicted += 1
                victim.evict()
                self.report()
                return True
        self.refused += 1
        self.report()
        return False

    def report(self) -> None:
        """One summary line per interval, however hard the server is pushed."""
        now = time.monotonic()
        at, ev, rf, to = self._logged
        if now - at < _LOG_EVERY_S:
            return
        if (self.evicted, self.refused, self.timed_out) != (ev, rf, to):
            log.warning(
                "slow or excess clients: %d connections closed to make room, %d turned away "
                "(cap %d), %d timed out sending their request (totals)",
                self.evicted,
                self.refused,
                self.limits.max_connections,
                self.timed_out,
            )
        self._logged = (now, self.evicted, self.refused, self.timed_out)


class GuardedConfig(uvicorn.Config):
    """uvicorn's config plus our connection limits (picklable for worker processes)."""

    def __init__(self, app: Any, *, conn_limits: ConnLimits, **kwargs: Any) -> None:
        super().__init__(app, http=GuardedProtocol, **kwargs)
        self.conn_limits = conn_limits
        self.guard: Guard | None = None

    def guard_for(self) -> Guard:
        # Built in the serving process: each worker counts its own connections.
        if self.guard is None:
            self.guard = Guard(self.conn_limits)
        return self.guard

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["guard"] = None
        return state


class GuardedProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if not isinstance(config, GuardedConfig):
            raise TypeError("GuardedProtocol needs a GuardedConfig")
        self.guard = config.guard_for()
        self.limits = self.guard.limits
        self._timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._head_lines = 0
        self._message_done = True
        self._lingering = -1  # bytes discarded since a refusal; -1 while not lingering

    # --- waiting for the client -----------------------------------------------------------

    def _await_client(self, phase: str | None, seconds: float = 0.0) -> None:
        """Mark this connection as waiting for its client (evictable, newest last); with a
        phase, close it if the client has not delivered within ``seconds``."""
        self._cancel_timer()
        self.guard.waiting.pop(self, None)
        self.guard.waiting[self] = None
        if phase is not None:
            self._timer = self.loop.call_later(seconds, self._expired, phase)

    def _client_done(self) -> None:
        self._cancel_timer()
        self.guard.waiting.pop(self, None)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, phase: str) -> None:
        self._timer = None
        self.guard.waiting.pop(self, None)
        self.guard.timed_out += 1
        self.guard.report()
        if self.transport.is_closing():
            return
        if phase == "head":
            self.transport.write(
                _raw_response(408, "Request Timeout", "request head not received in time")
            )
        # Mid-body the request handler sees the client go away (one info line).
        self.transport.close()

    def _refuse(self, answer: bytes) -> None:
        """Send a final answer and close gracefully: half-close, then drain what the client
        still sends (bounded in time and bytes) so no reset overtakes the answer. Evictable
        meanwhile, like any connection waiting for its client."""
        self._await_client(None)
        self._lingering = 0
        self.transport.write(answer)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.transport.resume_reading()
        # The client's FIN ends it sooner (eof_received returns None: asyncio closes).
        self._timer = self.loop.call_later(_LINGER_S, self.transport.abort)

    def evict(self) -> None:
        self._cancel_timer()
        if not self.transport.is_closing():
            self.transport.abort()  # frees the descriptor now, not after a flush

    # --- uvicorn protocol hooks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.guard.make_room(self, len(self.connections)):
            self._refuse(_raw_response(503, "Service Unavailable", "server busy; retry shortly"))
            return
        self._await_client("head", self.limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._client_done()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's own method, plus the answer to a head we refused in a parser callback.
        if self._lingering >= 0:
            self._lingering += len(data)
            if self._lingering > _LINGER_MAX_BYTES:
                self._cancel_timer()
                self.transport.abort()
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._client_done()
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as err:
            refused = err.__context__
            if isinstance(refused, _Refused):
                reason = "Request Header Fields Too Large" if refused.status == 431 else "Error"
                self._refuse(_raw_response(refused.status, reason, refused.reason))
                return
            msg = "Invalid HTTP request received."
            log.info("%s (%s)", msg, err)
            self.send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._head_lines = 0
        self._message_done = False
        if self._timer is None:  # a keep-alive connection's next request starts its clock
            self._await_client("head", self.limits.header_timeout_s)

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self.limits.max_head_bytes:
            raise _Refused(431, f"request head exceeds {self.limits.max_head_bytes} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        self._head_lines += 1
        if self._head_bytes > self.limits.max_head_bytes:
            raise _Refused(431, f"request head exceeds {self.limits.max_head_bytes} bytes")
        if self._head_lines > self.limits.max_headers:
            raise _Refused(431, f"more than {self.limits.max_headers} header lines")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._await_client("body", self.limits.body_timeout_s)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._message_done = True
        self._client_done()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._message_done:
            return  # answered early (e.g. 413): the rest of the body keeps its deadline
        if not self.transport.is_closing() and not self.pipeline:
            # Idle keep-alive: uvicorn's keep-alive timer closes it; evictable meanwhile.
            self._await_client(None)
