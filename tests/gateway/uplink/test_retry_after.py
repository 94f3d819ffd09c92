"""The uplink honours ``Retry-After`` on 429 and 503 (issue 9, finding 7), bounded by its cap.

The server side is a small real HTTP server on an ephemeral port (the boundary stand-in for a
busy server or a proxy in front of it); the gateway side is the real uplink, buffer and pipeline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import HttpUrl, SecretStr

from gateway.app import Gateway
from gateway.buffer import DurableBuffer
from gateway.buffer.config import BufferConfig
from gateway.clock import Clock, ClockConfig
from gateway.pipeline import Pipeline
from gateway.records import Reading
from gateway.uplink.client import Uplink
from gateway.uplink.config import UplinkConfig
from hamlet.retry_after import parse_retry_after
from tests.gateway.conftest import accounting_for, gateway_config
from tests.support.procs import start_server

# A header value may be a function: evaluated when the reply is sent (an HTTP-date "3 s
# from now" must be computed then, not when the test started).
Reply = tuple[int, dict[str, str | Callable[[], str]]]


class Stub:
    """Answers each POST with the next scripted reply (then 200 for ever); notes arrival."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = list(replies)
        self.arrivals: list[float] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                stub.arrivals.append(time.monotonic())
                code, headers = stub.replies.pop(0) if stub.replies else (200, {})
                body = (
                    json.dumps({"accepted": 1, "duplicates": 0, "rejected": []})
                    if code == 200
                    else json.dumps({"detail": "busy"})
                ).encode()
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v() if callable(v) else v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@contextmanager
def stub_server(replies: list[Reply]) -> Iterator[Stub]:
    stub = Stub(replies)
    t = threading.Thread(target=stub.httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield stub
    finally:
        stub.httpd.shutdown()
        stub.httpd.server_close()
        t.join(10)


async def _upload_one(tmp_path: Path, stub: Stub, cap_s: float = 30.0) -> None:
    """One reading through the real pipeline and uplink; returns once the server took it."""
    clock = Clock(ClockConfig(sync="always"))
    cfg = UplinkConfig(
        url=HttpUrl(stub.url),
        token=SecretStr("hgw_test"),
        backoff_base_s=0.01,  # the own backoff alone would retry within 10 ms
        backoff_cap_s=cap_s,
    )
    async with DurableBuffer(
        BufferConfig(durability_window_s=0.2), tmp_path, clock.boot_id
    ) as buffer:
        await Pipeline(buffer, clock).submit([Reading("wl-1", "water_level", 1.0)])
        async with Uplink(cfg, "gw-1", buffer, clock) as up:
            await asyncio.wait_for(up.uploaded.wait(), 60)


async def test_429_retry_after_seconds(tmp_path: Path) -> None:
    with stub_server([(429, {"Retry-After": "2"})]) as stub:
        await _upload_one(tmp_path, stub)
    assert len(stub.arrivals) == 2
    assert stub.arrivals[1] - stub.arrivals[0] >= 2.0


async def test_503_retry_after_http_date(tmp_path: Path) -> None:
    # HTTP dates have whole seconds: "3 s from now" is between 2 and 3 s away.
    def when() -> str:
        return formatdate(time.time() + 3, usegmt=True)

    with stub_server([(503, {"Retry-After": when})]) as stub:
        await _upload_one(tmp_path, stub)
    assert len(stub.arrivals) == 2
    assert stub.arrivals[1] - stub.arrivals[0] >= 1.9


async def test_retry_after_is_bounded_by_the_backoff_cap(tmp_path: Path) -> None:
    with stub_server([(429, {"Retry-After": "86400"})]) as stub:
        started = time.monotonic()
        await _upload_one(tmp_path, stub, cap_s=0.5)
    assert len(stub.arrivals) == 2
    assert time.monotonic() - started < 60  # a day's Retry-After did not park the uplink


NOW = 1_800_000_000.0


@settings(max_examples=300)
@given(st.one_of(st.none(), st.text(max_size=80)))
def test_parse_never_raises(value: str | None) -> None:
    out = parse_retry_after(value, NOW)
    assert out is None or out >= 0


@given(st.integers(0, 10**10 - 1))
def test_parse_seconds(n: int) -> None:
    assert parse_retry_after(f" {n} ", NOW) == n


@given(st.integers(-(10**6), 10**6))
def test_parse_http_date(offset: int) -> None:
    got = parse_retry_after(formatdate(NOW + offset, usegmt=True), NOW)
    assert got == max(0, offset)


def test_parse_refuses_what_is_not_a_delay() -> None:
    for bad in ["", "soon", "-5", "1.5", "\u0661\u0662", "9" * 11, "Wed, 99 Foo 2026"]:
        assert parse_retry_after(bad, NOW) is None, bad


async def test_real_server_rate_limit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A real server that allows one request per 2 s answers 429 with Retry-After; the
    gateway waits that long instead of hammering it with 10 ms retries."""
    env = {
        "HAMLET_SERVER__INGEST__RATE_PER_GATEWAY": "0.5",
        "HAMLET_SERVER__INGEST__BURST_PER_GATEWAY": "1",
    }
    caplog.set_level(logging.WARNING, logger="gateway.uplink.client")
    with start_server(tmp_path / "server", env=env) as srv:
        token = srv.add_gateway("gw-test")
        cfg = gateway_config(tmp_path / "gw", srv.url, token, backoff_base_s=0.01, backoff_cap_s=30)
        async with Gateway(cfg, sources=[]) as gw:
            for i in range(3):  # three posts: the 2nd and 3rd meet the rate limit
                await gw.pipeline.submit([Reading("wl-1", "water_level", 1.0 + i / 10)])
                gw.uplink.uploaded.clear()
                await asyncio.wait_for(gw.uplink.uploaded.wait(), 60)
            last = gw.buffer.last_seq
        acc = accounting_for(srv.url, "gw-test")
    limited = [r for r in caplog.records if "HTTP 429" in r.getMessage()]
    assert limited, "the server never rate-limited: the test proves nothing"
    # Honouring Retry-After, each limited post is retried about once (the server rounds
    # its Retry-After to whole seconds); with the 10 ms backoff alone it would be ~200 times.
    assert len(limited) <= 6, [r.getMessage() for r in limited]
    assert acc["received"] == last
    assert acc["missing"] == 0
