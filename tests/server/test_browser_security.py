"""Login throttling, trusted proxies, CSRF, security headers, rollup means and secret keys,
against a real ``hamlet server run`` process."""

from __future__ import annotations

import base64
import hashlib
import re
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from server import registry
from server.registry import Role
from tests.server.helpers import batch, block, now_ms, post
from tests.support.procs import ServerProcess, run_hamlet, start_server

PASSWORD = "correct horse battery staple"


def _add_user(server: ServerProcess, name: str, role: Role = Role.ADMIN) -> None:
    conn = sqlite3.connect(server.data_dir / "hamlet.sqlite3", isolation_level=None)
    try:
        registry.add_user(conn, name, role, PASSWORD)
    finally:
        conn.close()


def _login(
    c: httpx.Client, name: str, password: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return c.post(
        "/login",
        data={"username": name, "password": password},
        headers=headers or {},
        follow_redirects=False,
    )


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def test_parallel_wrong_passwords_are_throttled(server: ServerProcess) -> None:
    """Finding 6: 30 wrong passwords in parallel were all checked; none got 429."""
    _add_user(server, "ana")

    def attempt(_: int) -> int:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            return _login(c, "ana", "wrong password 123").status_code

    with ThreadPoolExecutor(30) as pool:
        codes = list(pool.map(attempt, range(30)))
    assert codes.count(401) == 5, codes
    assert codes.count(429) == 25, codes


@pytest.fixture
def behind_proxy(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {"HAMLET_SERVER__HTTP__TRUSTED_PROXIES": '["127.0.0.1"]'}
    with start_server(tmp_path / "srv", env=env) as proc:
        yield proc


def test_limits_count_per_user_and_per_address_behind_a_trusted_proxy(
    behind_proxy: ServerProcess,
) -> None:
    """Design gap: the limit was keyed on (address, user) only, so one password tried across
    many users was never limited, and behind a proxy five failures locked a user out for all."""
    _add_user(behind_proxy, "ana")
    with httpx.Client(base_url=behind_proxy.url, timeout=60) as c:
        # One address, five failures for ana: that address is held back for ana...
        for _ in range(5):
            assert (
                _login(c, "ana", "nope nope nope", {"X-Forwarded-For": "10.0.0.1"}).status_code
                == 401
            )
        assert (
            _login(c, "ana", "nope nope nope", {"X-Forwarded-For": "10.0.0.1"}).status_code == 429
        )
        # ...but ana from her own address still logs in (the proxy's address is not the key).
        assert _login(c, "ana", PASSWORD, {"X-Forwarded-For": "10.0.0.2"}).status_code == 303
        # Spraying one password across many users from one address: the address is limited.
        codes = [
            _login(c, f"user{i}", "Winter2026!!", {"X-Forwarded-For": "10.9.9.9"}).status_code
            for i in range(35)
        ]
        assert codes.count(401) == 30, codes
        assert codes[30:] == [429] * 5
        # Many addresses against one user: the user is limited (20 a window by default).
        codes = [
            _login(c, "ana", "guess guess guess", {"X-Forwarded-For": f"10.1.{i}.1"}).status_code
            for i in range(25)
        ]
        assert codes.count(401) == 20, codes
        assert codes[20:] == [429] * 5


def test_forwarded_for_is_ignored_without_a_trusted_proxy(server: ServerProcess) -> None:
    _add_user(server, "ana")
    with httpx.Client(base_url=server.url, timeout=60) as c:
        codes = [
            _login(c, "ana", "nope nope nope", {"X-Forwarded-For": f"10.0.0.{i}"}).status_code
            for i in range(7)
        ]
    assert codes == [401] * 5 + [429] * 2


def test_cross_origin_cookie_requests_are_refused(
    server: ServerProcess, client: httpx.Client
) -> None:
    """Finding 7: a form from another port of the same host revoked a gateway."""
    _add_user(server, "ana")
    server.add_gateway("gw-csrf")
    assert _login(client, "ana", PASSWORD).status_code == 303
    assert "hamlet_session" in client.cookies
    origin = server.url  # e.g. http://127.0.0.1:PORT
    other = re.sub(r":(\d+)$", lambda m: f":{int(m.group(1)) + 1}", origin)
    path = "/api/v1/gateways/gw-csrf/revoke"
    for hdrs in (
        {"Origin": other},
        {"Origin": "null"},
        {"Origin": other, "Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        r = client.post(path, headers=hdrs)
        assert r.status_code == 403, (hdrs, r.status_code)
        assert "cross-site" in r.json()["detail"]
    listing = client.get("/api/v1/gateways").json()
    assert [g["id"] for g in listing] == ["gw-csrf"]
    gws = run_hamlet("server", "list-gateways", "--data-dir", str(server.data_dir), "--json")
    assert '"revoked": false' in gws
    # Logging in from another origin is refused too (login CSRF).
    with httpx.Client(base_url=server.url, timeout=30) as fresh:
        assert _login(fresh, "ana", PASSWORD, {"Origin": other}).status_code == 403
    # The same origin, as the server's own pages send it, works.
    r = client.post(path, headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 204
    gws = run_hamlet("server", "list-gateways", "--data-dir", str(server.data_dir), "--json")
    assert '"revoked": true' in gws


def test_security_headers_on_html_and_json(server: ServerProcess, client: httpx.Client) -> None:
    """Finding 8: no Content-Security-Policy on the pages."""
    page = client.get("/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    # The pages run no inline script (their JS is in /static); any that appears must be
    # allowed by its hash, and nothing else inline.
    assert re.findall(r'<script src="/static/', page.text)
    for body in re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]
    for resp in (page, client.get("/api/v1/hamlets"), client.get("/healthz"), client.get("/nope")):
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["x-frame-options"] == "DENY"
        assert "content-security-policy" in resp.headers


def test_rollup_means_are_never_null(server: ServerProcess, client: httpx.Client) -> None:
    """Finding 8: two readings of 1e308 gave hourly/daily points with "v": null."""
    token = server.add_gateway("gw-big")
    # Ten minutes into an hour that began at least an hour ago: the readings (a minute apart)
    # share one hourly and one daily bucket whatever the time of day the test runs.
    t0 = (now_ms() - 7_200_000) // 3_600_000 * 3_600_000 + 600_000
    r = post(
        client,
        token,
        batch("gw-big", [block("d", "custom", [1, 2, 3], values=[1e308, 1e308, 9e14], t0=t0)]),
    )
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["accepted"] == 1
    assert [x["seq"] for x in res["rejected"]] == [1, 2]
    assert "beyond" in res["rejected"][0]["reason"]
    post(client, token, batch("gw-big", [block("d", "custom", [4], values=[9e14], t0=t0 + 1)]))
    for res_name in ("hour", "day"):
        got = client.get(
            "/api/v1/hamlets/dinh-phuoc/series",
            params={
                "device": "d",
                "metric": "custom",
                "start": t0 - 86_400_000 * 2,
                "end": now_ms() + 1,
                "resolution": res_name,
            },
        ).json()
        assert [p["v"] for p in got["points"]] == [9e14], got
    # Buckets written before values were bounded (a sum that overflowed) still give a number.
    from server.store.sqlite_series import bucket_mean

    assert bucket_mean(float("inf"), 2, 1e308, 1e308) == 1e308
    assert bucket_mean(float("-inf"), 2, -1e308, -1e307) == -1e308
    assert bucket_mean(3.0, 2, 1.0, 2.0) == 1.5


def test_numeric_secret_key_is_text_and_never_printed(tmp_path: Path) -> None:
    """Finding 8: a numeric secret key was read as a number and printed at start-up."""
    digits = "4" * 40
    env = {"HAMLET_SERVER__ENVIRONMENT": "production", "HAMLET_SERVER__AUTH__SECRET_KEY": digits}
    with start_server(tmp_path / "a", env=env) as srv:
        assert httpx.get(f"{srv.url}/healthz").status_code == 200
        assert digits not in "\n".join(srv.process.lines)
    # Unquoted in the TOML file: still the digits as text.
    cfg = tmp_path / "server.toml"
    cfg.write_text(f'environment = "production"\n[auth]\nsecret_key = {digits}\n')
    with start_server(
        tmp_path / "b", "--config", str(cfg), env={"HAMLET_SERVER__ENVIRONMENT": "production"}
    ) as srv:
        assert httpx.get(f"{srv.url}/healthz").status_code == 200
    # Too short: refused, and the error does not show it.
    short = "98765432109"
    with pytest.raises(RuntimeError) as err:
        run_hamlet(
            "server",
            "run",
            "--data-dir",
            str(tmp_path / "c"),
            "--port",
            "0",
            env={
                "HAMLET_SERVER__ENVIRONMENT": "production",
                "HAMLET_SERVER__AUTH__SECRET_KEY": short,
            },
        )
    assert "secret_key" in str(err.value)
    assert short not in str(err.value)
    cfg.write_text(f'environment = "production"\n[auth]\nsecret_key = {short}.5\n')
    with pytest.raises(RuntimeError) as err:
        run_hamlet("server", "run", "--config", str(cfg), "--data-dir", str(tmp_path / "d"))
    assert "quotes" in str(err.value)
    assert short not in str(err.value)
