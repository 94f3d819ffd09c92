"""deploy/caddy/Caddyfile run for real: Caddy with its internal CA in front of a real
``hamlet server run`` in production mode (secure cookies). A browser logs in over HTTPS;
plain HTTP is redirected; oversized bodies are refused at the proxy."""

from __future__ import annotations

import gzip
import json
import random
import re
import socket
import sqlite3
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO as ROOT
from tests.conftest import require_tool
from tests.server.helpers import batch, block, body
from tests.support.procs import ManagedProcess, run_hamlet, start_server

CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"
SECRET = "s" * 48
PASSWORD = "correct horse battery staple"


def _free_port() -> int:
    # Caddy must know its ports up front (redirects name the HTTPS port), so the test asks
    # the kernel for ephemeral ports and hands them over.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """(https URL, http URL, a gateway token): Caddy before a production-mode server."""
    env = {
        "HAMLET_SERVER__ENVIRONMENT": "production",
        "HAMLET_SERVER__AUTH__SECRET_KEY": SECRET,
        # The server's own body limit above the proxy's, so only the proxy can refuse.
        "HAMLET_SERVER__INGEST__MAX_BODY_BYTES": str(64 * 1024 * 1024),
    }
    data = tmp_path / "server"
    run_hamlet(
        "server", "add-user", "chi-lan", "--role", "admin", "--password-env", "HAMLET_TEST_PW",
        "--data-dir", str(data), env={"HAMLET_TEST_PW": PASSWORD},
    )  # fmt: skip
    with start_server(data, env=env) as server, _caddy(tmp_path, [server.url]) as (https, http, _):
        yield https, http, server.add_gateway("gw-proxy")


@contextmanager
def _caddy(tmp_path: Path, upstreams: list[str]) -> Iterator[tuple[str, str, ManagedProcess]]:
    """deploy/caddy/Caddyfile run by Caddy with its internal CA; (https URL, http URL)."""
    caddy = require_tool("caddy")
    http_port, https_port = _free_port(), _free_port()
    home = tmp_path / "caddy-home"
    home.mkdir()
    caddy_env = {
        # Caddy keeps its CA and certificates under HOME/XDG dirs: a scratch dir here.
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "HAMLET_DOMAIN": "localhost",
        "HAMLET_TLS": "internal",
        "HAMLET_UPSTREAMS": " ".join(u.removeprefix("http://") for u in upstreams),
        "HAMLET_HTTP_PORT": str(http_port),
        "HAMLET_HTTPS_PORT": str(https_port),
    }
    proc = ManagedProcess(
        [caddy, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=caddy_env,
        cwd=tmp_path,
    ).start()
    try:
        # Caddy issues the certificate from its internal CA just after it starts serving.
        proc.wait_for(r"certificate obtained successfully", timeout=60)
        yield f"https://localhost:{https_port}", f"http://localhost:{http_port}", proc
    finally:
        proc.stop()


@contextmanager
def _webdriver(tmp_path: Path) -> Iterator[tuple[httpx.Client, str]]:
    driver = require_tool("chromedriver")
    chromium = require_tool("chromium")
    mp = ManagedProcess([driver, "--port=0"]).start()
    try:
        port = mp.wait_for(r"started successfully on port (\d+)", timeout=30).group(1)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        caps: dict[str, Any] = {
            "browserName": "chrome",
            "acceptInsecureCerts": True,  # Caddy's internal CA is not in this machine's store
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'chromium-profile'}",
                ],
            },
        }  # fmt: skip
        r = client.post("/session", json={"capabilities": {"alwaysMatch": caps}})
        assert r.status_code == 200, r.text
        sid = r.json()["value"]["sessionId"]
        # Element look-ups wait for the next page to load (after a click) instead of failing.
        client.post(f"/session/{sid}/timeouts", json={"implicit": 15_000})
        try:
            yield client, sid
        finally:
            client.delete(f"/session/{sid}")
            client.close()
    finally:
        mp.stop()


def _wd(client: httpx.Client, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    r = client.request(method, path, json=body)
    assert r.status_code == 200, f"{method} {path}: {r.text[:500]}"
    return r.json()["value"]


ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C WebDriver element key


@pytest.mark.browser
def test_browser_login_over_https_sets_a_secure_session(
    proxied: tuple[str, str, str], tmp_path: Path
) -> None:
    https_url, _, _ = proxied
    with _webdriver(tmp_path) as (client, sid):
        s = f"/session/{sid}"
        _wd(client, "POST", f"{s}/url", {"url": f"{https_url}/login?lang=en"})

        def find(css: str) -> str:
            el = _wd(client, "POST", f"{s}/element", {"using": "css selector", "value": css})
            assert ELEMENT in el, el
            return str(el[ELEMENT])

        _wd(client, "POST", f"{s}/element/{find('#u')}/value", {"text": "chi-lan"})
        _wd(client, "POST", f"{s}/element/{find('#p')}/value", {"text": PASSWORD})
        _wd(client, "POST", f"{s}/element/{find('form button')}/click", {})
        # The login redirects to the board, which shows a logout button only to a session.
        find("form[action='/logout'] button")
        assert _wd(client, "GET", f"{s}/url").startswith(f"{https_url}/")
        cookies = {c["name"]: c for c in _wd(client, "GET", f"{s}/cookie")}
        session = cookies["hamlet_session"]
        assert session["secure"] is True
        assert session["httpOnly"] is True


def test_plain_http_redirects_to_https(proxied: tuple[str, str, str]) -> None:
    https_url, http_url, _ = proxied
    r = httpx.get(f"{http_url}/login?lang=vi", follow_redirects=False, timeout=30)
    assert r.status_code in {301, 308}
    assert r.headers["location"] == f"{https_url}/login?lang=vi"
    assert httpx.post(f"{http_url}/login", timeout=30).status_code == 308  # method kept


def test_proxy_refuses_an_oversized_body_and_serves_through_tls(
    proxied: tuple[str, str, str], tmp_path: Path
) -> None:
    https_url, _, token = proxied
    # Trust exactly Caddy's internal root, as an operator installs it on a browser.
    root = tmp_path / "caddy-home" / "data" / "caddy" / "pki" / "authorities" / "local"
    ctx = ssl.create_default_context(cafile=root / "root.crt")
    with httpx.Client(verify=ctx, timeout=30) as c:
        health = c.get(f"{https_url}/healthz")
        assert health.status_code == 200
        assert health.headers["strict-transport-security"].startswith("max-age=")
        headers = {
            "content-type": "application/json",
            "content-encoding": "gzip",
            "authorization": f"Bearer {token}",
        }

        def post(mib: int) -> httpx.Response:
            # Valid gzip the server reads to the end (random bytes barely compress).
            body = gzip.compress(random.randbytes(mib * 1024 * 1024), compresslevel=1)
            return c.post(f"{https_url}/api/v1/ingest", content=body, headers=headers)

        # Under the proxy's 10 MB the server reads it all and answers (not JSON: 4xx).
        under = post(9)
        assert 400 <= under.status_code < 500, under.text[:300]
        assert under.status_code != 413
        # Over it the proxy cuts the body off: 413 (Caddy >= 2.7) or 502 (Caddy 2.6).
        r = post(11)
        assert r.status_code in {413, 502}, r.text[:300]


def test_two_upstreams_share_the_load_and_a_stopped_one_is_skipped(tmp_path: Path) -> None:
    # Two server processes on one data directory, as two workers or containers would be.
    data = tmp_path / "server"
    with (
        start_server(data) as one,
        start_server(data) as two,
        _caddy(tmp_path, [one.url, two.url]) as (https_url, _, caddy),
        httpx.Client(verify=False, timeout=30) as c,
    ):
        token = one.add_gateway("gw-two")
        seq = 0

        def ingest() -> httpx.Response:
            nonlocal seq
            seq += 1
            data, headers = body(batch("gw-two", [block("sal-1", "salinity", [seq])]))
            return c.post(
                f"{https_url}/api/v1/ingest",
                content=data,
                headers={**headers, "Authorization": f"Bearer {token}"},
            )

        for _ in range(10):
            assert ingest().status_code == 200
        one.process.stop()
        # The proxy's health check (every 10 s, /healthz) finds it gone and takes it out of
        # rotation: from then on every request goes to the other server and succeeds.
        dead = one.url.removeprefix("http://")
        caddy.wait_for(rf"health_checker.*{re.escape(dead)}", timeout=30)
        for _ in range(10):
            r = ingest()
            assert r.status_code == 200, r.text
    # Every one of the 20 records reached the shared store exactly once.
    conn = sqlite3.connect(data / "hamlet.sqlite3")
    assert conn.execute("SELECT count(*) FROM points").fetchone()[0] == 20
    conn.close()


def test_proxy_time_and_header_limits_are_what_the_guide_says(tmp_path: Path) -> None:
    # Slow-client limits, read from Caddy's own adaptation of the Caddyfile (waiting them
    # out live would cost minutes): docs/operator-guide.md section 3 quotes these numbers.
    caddy = require_tool("caddy")
    res = subprocess.run(
        [caddy, "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
        env={"HOME": str(tmp_path), "HAMLET_TLS": "internal", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    servers = json.loads(res.stdout)["apps"]["http"]["servers"]
    assert len(servers) == 2  # HTTPS, and HTTP that only redirects
    second = 1_000_000_000
    for srv in servers.values():
        assert srv["read_header_timeout"] == 10 * second
        assert srv["read_timeout"] == 60 * second
        assert srv["idle_timeout"] == 120 * second
        assert srv["max_header_bytes"] == 16_000
    guide = (ROOT / "docs" / "operator-guide.md").read_text()
    for promise in ("bodies over 10 MB", "10 s to send its headers", "60 s for the whole request",
                    "after 2 minutes", "16 KB"):  # fmt: skip
        assert promise in guide, promise
