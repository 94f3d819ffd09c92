"""Hostile clients against a real ``hamlet server run`` process: bounded bodies and heads,
slow clients timed out, a connection cap that keeps the server answering, error answers
that never fail (no 500 for any input), and one info line for a client that goes away."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import select
import socket
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from server import registry
from server.registry import Role
from tests.server.helpers import batch, block, body, post
from tests.support.procs import ServerProcess, start_server, with_nofile_limit


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _admin_token(server: ServerProcess) -> str:
    conn = sqlite3.connect(server.data_dir / "hamlet.sqlite3", isolation_level=None)
    try:
        registry.add_user(conn, "root", Role.ADMIN, None)
        return registry.create_user_token(conn, "root")
    finally:
        conn.close()


def _addr(server: ServerProcess) -> tuple[str, int]:
    u = httpx.URL(server.url)
    assert u.host is not None
    assert u.port is not None
    return u.host, u.port


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (the socket has a timeout)."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


@pytest.fixture
def tight(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server with short timeouts and a small connection cap, so tests stay quick."""
    env = {
        "HAMLET_SERVER__HTTP__HEADER_TIMEOUT_S": "1",
        "HAMLET_SERVER__HTTP__BODY_TIMEOUT_S": "1",
        "HAMLET_SERVER__HTTP__MAX_CONNECTIONS": "20",
        "HAMLET_SERVER__HTTP__KEEP_ALIVE_S": "1",
    }
    with start_server(tmp_path / "srv", env=env) as proc:
        yield proc


def test_big_anonymous_bodies_are_refused_unread(server: ServerProcess) -> None:
    """Finding 1: a 256 MiB anonymous body was parsed before auth (~513 MiB of memory)."""
    pid = server.process.proc.pid
    with httpx.Client(base_url=server.url, timeout=60) as c:
        c.get("/healthz").raise_for_status()
        before = _rss_kib(pid)
        big = b'{"id": "' + b"a" * (32 * 1024 * 1024) + b'", "hamlet": "x"}'
        for path, method in (
            ("/api/v1/gateways", "POST"),
            ("/api/v1/hamlets/h/devices/d", "PUT"),
        ):
            r = c.request(method, path, content=big, headers={"Content-Type": "application/json"})
            assert r.status_code == 413, (path, r.status_code, r.text[:200])

            # Chunked (no Content-Length): cut off once it crosses the limit.
            def chunks() -> Iterator[bytes]:
                yield b'{"id": "'
                for _ in range(512):
                    yield b"a" * 65536
                yield b'"}'

            r = c.request(
                method, path, content=chunks(), headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 413, (path, r.status_code, r.text[:200])
        grown_mib = (_rss_kib(pid) - before) / 1024
    assert grown_mib < 16, f"server memory grew by {grown_mib:.0f} MiB"


def test_oversized_head_and_too_many_headers_get_431(server: ServerProcess) -> None:
    """Finding 1: a 16 MiB request header was accepted."""
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.get("/healthz", headers={"X-Big": "a" * (1024 * 1024)})
        assert r.status_code == 431, r.status_code
        r = c.get("/healthz", headers={f"X-H{i}": "1" for i in range(200)})
        assert r.status_code == 431, r.status_code
        # Normal requests still pass.
        assert c.get("/healthz", headers={f"X-H{i}": "1" for i in range(20)}).status_code == 200
    # The client is still sending when the server answers: the answer must not be lost to
    # a reset (closing with unread input resets the connection; CI saw it).
    for size in (100_000, 600_000):
        with socket.create_connection(_addr(server), timeout=30) as s:
            s.sendall(b"GET /" + b"a" * size + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_all(s).startswith(b"HTTP/1.1 431")


def test_upgrade_request_is_still_answered(server: ServerProcess) -> None:
    """curl --http2 on plain HTTP asks for h2c: the guard must not drop the answer."""
    with socket.create_connection(_addr(server), timeout=30) as s:
        s.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        )
        assert s.recv(65536).startswith(b"HTTP/1.1 200")


def test_trickled_head_is_timed_out(tight: ServerProcess) -> None:
    """Finding 2: a half-sent request held its connection forever."""
    with socket.create_connection(_addr(tight), timeout=30) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
        answer = _read_all(s)  # returns once the server closes it
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    # A connection that never sends a byte is closed too.
    with socket.create_connection(_addr(tight), timeout=30) as s:
        assert _read_all(s).startswith(b"HTTP/1.1 408")


def test_idle_keep_alive_connection_is_closed(tight: ServerProcess) -> None:
    with socket.create_connection(_addr(tight), timeout=30) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = _read_all(s)  # the response, then EOF once the idle keep-alive ends
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.count(b"HTTP/1.1") == 1


def test_trickled_body_is_cut_off_with_one_info_line(tight: ServerProcess) -> None:
    """Finding 2 and 3: a stalled body is cut off; the handler logs one line, no traceback."""
    token = tight.add_gateway("gw-slow")
    head = (
        "POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    with socket.create_connection(_addr(tight), timeout=30) as s:
        s.sendall(head + b'{"v": 1, ')
        _read_all(s)
    tight.process.wait_for(r"went away during POST /api/v1/ingest", timeout=30)
    out = "\n".join(tight.process.lines)
    assert "Traceback" not in out, out[-3000:]
    assert out.count("went away during POST /api/v1/ingest") == 1


def test_body_trickled_after_an_early_answer_is_cut_off(tight: ServerProcess) -> None:
    """A 413 answered before the body arrived does not let the client trickle on forever."""
    head = (
        b"POST /api/v1/gateways HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000\r\n\r\n"
    )
    with socket.create_connection(_addr(tight), timeout=30) as s:
        s.sendall(head)
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 413"), first[:80]
        closed = False
        for _ in range(200):  # bounded: the body deadline is 1 s, this trickles for 20+ s
            try:
                s.sendall(b"a")
            except OSError:
                closed = True
                break
            ready, _, _ = select.select([s], [], [], 0.1)
            if ready and not s.recv(65536):
                closed = True
                break
        assert closed


def test_client_that_disconnects_mid_body_is_one_info_line(server: ServerProcess) -> None:
    """Finding 3: ClientDisconnect logged a full traceback (500 of them under attack)."""
    token = server.add_gateway("gw-gone")
    head = (
        "POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    with socket.create_connection(_addr(server), timeout=30) as s:
        s.sendall(head + b'{"v": 1, "gateway": "gw-gone", ')
    server.process.wait_for(r"went away during POST /api/v1/ingest", timeout=30)
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    out = "\n".join(server.process.lines)
    assert "Traceback" not in out, out[-3000:]


HOSTILE_JSON = [
    b"NaN",
    b"-Infinity",
    b"1e999",
    b'{"id": "\\ud800", "hamlet": "h"}',
    b'{"\\udfff": 1, "id": "x", "hamlet": "h"}',
    b'{"id": "gw-1", "hamlet": "h", "extra\\ud800": 1e999}',
    b'["\\ud800", NaN, 1e999]',
    b'{"id": ' + b"[" * 5000 + b"]" * 5000 + b"}",
]


@pytest.mark.parametrize("as_admin", [False, True])
def test_hostile_bodies_get_a_4xx_with_a_string_detail(
    server: ServerProcess, as_admin: bool
) -> None:
    """Finding 3: NaN, 1e999, lone surrogates or random bytes gave 500 with a traceback."""
    headers = {"Authorization": f"Bearer {_admin_token(server)}"} if as_admin else {}
    rng = os.urandom
    bodies: list[tuple[bytes, str]] = [(b, "application/json") for b in HOSTILE_JSON]
    bodies += [(rng(512), "text/plain"), (rng(512), "application/json"), (rng(64), "")]
    bodies += [(b"\xff\xfe\x00\xd8", "application/json; charset=utf-16")]
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for path, method in (
            ("/api/v1/gateways", "POST"),
            ("/api/v1/hamlets/h/devices/d", "PUT"),
        ):
            for data, ctype in bodies:
                hdrs = dict(headers)
                if ctype:
                    hdrs["Content-Type"] = ctype
                r = c.request(method, path, content=data, headers=hdrs)
                assert 400 <= r.status_code < 500, (path, data[:40], r.status_code, r.text)
                detail = r.json()["detail"]
                assert isinstance(detail, str), (path, data[:40], r.text)
                if r.status_code == 422:
                    assert isinstance(r.json()["errors"], list)
    out = "\n".join(server.process.lines)
    assert "Traceback" not in out, out[-3000:]


def test_ingest_422_detail_is_a_string(server: ServerProcess) -> None:
    """Finding 8: every 422 had ``detail`` as a list where the OpenAPI says string."""
    token = server.add_gateway("gw-422")
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = post(c, token, json.dumps({"v": 1, "gateway": "gw-422"}).encode())
        assert r.status_code == 422
        assert isinstance(r.json()["detail"], str)
        assert r.json()["errors"][0]["loc"] == ["sent_at"]
        spec = c.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if "422" in op.get("responses", {}):
                schema = op["responses"]["422"]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ValidationErrorOut"}, (
                    method,
                    path,
                )


def test_seqs_above_2_63_are_rejected_per_record(server: ServerProcess) -> None:
    """Finding 4: a batch whose every seq is above 2^63 gave 500 (OverflowError)."""
    token = server.add_gateway("gw-big")
    huge = 2**63
    b = batch("gw-big", [block("d", "rain", [huge + 1, huge + 2]), block("e", "rain", [5])])
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = post(c, token, b)
        assert r.status_code == 200, r.text
        res = r.json()
        assert res["accepted"] == 1
        assert [x["seq"] for x in res["rejected"]] == [huge + 1, huge + 2]
        assert all("out of range" in x["reason"] for x in res["rejected"])
        only_huge = batch("gw-big", [block("d", "rain", [huge * 4, huge * 4 + 1])])
        r = post(c, token, only_huge)
        assert r.status_code == 200, r.text
        assert len(r.json()["rejected"]) == 2
        (g,) = c.get("/api/v1/gateways").json()
        assert (g["received"], g["rejected"], g["highest_seq"]) == (1, 4, 5)


def test_connection_cap_keeps_the_server_answering(tight: ServerProcess) -> None:
    """More idle connections than the cap: the longest-waiting ones make room."""
    socks = [socket.create_connection(_addr(tight), timeout=30) for _ in range(60)]
    try:
        for s in socks:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")  # a head that never ends
        with httpx.Client(base_url=tight.url, timeout=10) as c:
            for _ in range(10):
                assert c.get("/healthz", headers={"Connection": "close"}).status_code == 200
    finally:
        for s in socks:
            s.close()


def test_ingest_body_limit_still_applies(server: ServerProcess) -> None:
    token = server.add_gateway("gw-lim")
    data, hdrs = body(batch("gw-lim", [block("d", "rain", list(range(1, 200)))]))
    with httpx.Client(base_url=server.url, timeout=30) as c:
        # A normal batch bigger than the 64 KiB default for other routes still goes in.
        big = batch("gw-lim", [block("d", "rain", list(range(1, 20_001)))])
        r = post(c, token, big, compress=False)
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 20_000
        hdrs["Authorization"] = f"Bearer {token}"
        assert c.post("/api/v1/ingest", content=data, headers=hdrs).status_code == 200


async def _siege(
    addr: tuple[str, int], *, slots: int, seconds: float, probes: int
) -> tuple[int, int, int]:
    """``slots`` clients that each keep one half-sent request open (reconnecting at once
    whenever the server closes it) while ``probes`` GET /healthz are spread over
    ``seconds``. Returns (probes answered 200, attacker connections made, peak open)."""
    stop = asyncio.Event()
    made = 0
    open_now = 0
    peak = 0

    async def hold() -> None:
        nonlocal made, open_now, peak
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(*addr)
            except OSError:
                await asyncio.sleep(0.05)  # the listen backlog is full: try again
                continue
            made += 1
            open_now += 1
            peak = max(peak, open_now)
            try:
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
                while not stop.is_set():
                    # Trickle one header line every two seconds until the server hangs up.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(2):
                            if not await reader.read(4096):
                                break
                    writer.write(b"X-Slow: 1\r\n")
            except OSError:
                pass
            finally:
                open_now -= 1
                writer.close()

    async def probe() -> bool:
        try:
            async with asyncio.timeout(5):
                reader, writer = await asyncio.open_connection(*addr)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = await reader.read()
                writer.close()
        except (OSError, TimeoutError):
            return False
        return answer.startswith(b"HTTP/1.1 200")

    holders = [asyncio.create_task(hold()) for _ in range(slots)]
    answered = 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(probes):
        # Probes at fixed points of the siege (a schedule, not a wait for an event).
        await asyncio.sleep(max(0.0, start + (i + 1) * seconds / probes - loop.time()))
        answered += await probe()
    stop.set()
    for t in holders:
        t.cancel()
    await asyncio.gather(*holders, return_exceptions=True)
    return answered, made, peak


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_thousand_slow_connections_under_1024_files_leave_healthz_answering(
    tmp_path: Path,
) -> None:
    """Finding 2: at a 1,024 open-file limit, 1,000 half-sent requests held for a minute
    left /healthz answering 0 of 40 probes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.fail(f"the test runner needs {want} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        with start_server(tmp_path / "srv", argv_prefix=with_nofile_limit(1024)) as srv:
            # A server that has been working: its database readers hold files open.
            with ThreadPoolExecutor(16) as pool:
                urls = [f"{srv.url}/api/v1/gateways"] * 64
                assert all(r.status_code == 200 for r in pool.map(httpx.get, urls))
            answered, made, peak = asyncio.run(
                _siege(_addr(srv), slots=1000, seconds=60, probes=40)
            )
            print(f"\nprobes answered {answered}/40; attacker connections {made}, peak {peak}")
            assert answered == 40, (answered, made, peak)
            assert peak >= 900  # the siege really held (about) a thousand connections
            out = "\n".join(srv.process.lines)
            assert "Traceback" not in out, out[-3000:]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
