"""Every route x every kind of caller, against a real server with open reading turned off."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server import registry
from server.registry import Role
from tests.conftest import REPO
from tests.server.helpers import batch, block, body, now_ms, status_event
from tests.support.procs import ServerProcess, run_hamlet, start_server

ANON, REVOKED, GATEWAY = "anonymous", "revoked-token", "gateway-token"
VIEWER, VIEWER2, STAFF, STAFF2 = "viewer-h1", "viewer-h2", "staff-c1", "staff-c2"
INSTALLER, ADMIN = "installer", "admin"
USERS = [VIEWER, VIEWER2, STAFF, STAFF2, INSTALLER, ADMIN]
EVERYONE = [ANON, REVOKED, GATEWAY, *USERS]


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    data = tmp_path_factory.mktemp("authz")
    env = {"HAMLET_SERVER__AUTH__OPEN_READ": "false"}
    with start_server(data / "server", env=env) as srv:
        conn = sqlite3.connect(srv.data_dir / "hamlet.sqlite3", isolation_level=None)
        try:
            registry.add_hamlet(conn, "h1", commune="c1")
            registry.add_hamlet(conn, "h2", commune="c2")
            registry.add_hamlet(conn, "hpub", commune="c2", public=True)
            scopes = {
                VIEWER: (Role.VIEWER, None, "h1"),
                VIEWER2: (Role.VIEWER, None, "h2"),
                STAFF: (Role.STAFF, "c1", None),
                STAFF2: (Role.STAFF, "c2", None),
                INSTALLER: (Role.INSTALLER, None, None),
                ADMIN: (Role.ADMIN, None, None),
            }
            tokens: dict[str, str] = {}
            for name, (role, commune, hamlet) in scopes.items():
                registry.add_user(conn, name, role, None, commune=commune, hamlet=hamlet)
                tokens[name] = registry.create_user_token(conn, name)
            registry.add_user(conn, "gone", Role.ADMIN, None)
            tokens[REVOKED] = registry.create_user_token(conn, "gone")
            assert registry.revoke_user_token(conn, tokens[REVOKED])
        finally:
            conn.close()
        # Gateways through the real CLI, one per hamlet, with some data each.
        with httpx.Client(base_url=srv.url) as c:
            for h in ("h1", "h2", "hpub"):
                tok = srv.add_gateway(f"gw-{h}", hamlet=h)
                # gw-h1 also sends its status report (the installer's view of it, by API).
                events = [status_event(f"gw-{h}", 3)] if h == "h1" else []
                data_, hdrs = body(
                    batch(f"gw-{h}", [block("d1", "salinity", [1, 2])], events=events)
                )
                r = c.post(
                    "/api/v1/ingest",
                    content=data_,
                    headers={**hdrs, "Authorization": f"Bearer {tok}"},
                )
                assert r.status_code == 200
                tokens[GATEWAY] = tok
        yield srv, tokens


def _headers(tokens: dict[str, str], who: str) -> dict[str, str]:
    return {} if who == ANON else {"Authorization": f"Bearer {tokens[who]}"}


def _expect(default: int, **by_who: int) -> dict[str, int]:
    out = dict.fromkeys(EVERYONE, default)
    out[REVOKED] = 401
    out[GATEWAY] = 403
    out.update({k.replace("_", "-"): v for k, v in by_who.items()})
    return out


PRIVATE_H1 = _expect(200, anonymous=401, viewer_h2=403, staff_c2=403)
T = now_ms()
SERIES_Q = f"?device=d1&metric=salinity&start={T - 86_400_000}&end={T + 1}"

MATRIX: list[tuple[str, str, dict[str, int]]] = [
    ("GET", "/api/v1/gateways", _expect(200)),
    ("GET", "/api/v1/hamlets", _expect(200)),
    ("GET", "/api/v1/devices", _expect(200)),
    ("GET", "/api/v1/me", _expect(200, anonymous=401)),
    ("GET", "/api/v1/hamlets/h1/latest", PRIVATE_H1),
    ("GET", "/api/v1/hamlets/h1/devices", PRIVATE_H1),
    ("GET", "/api/v1/hamlets/h1/series" + SERIES_Q, PRIVATE_H1),
    ("GET", "/api/v1/hamlets/h1/events" + SERIES_Q, PRIVATE_H1),
    ("GET", "/api/v1/hamlets/hpub/latest", _expect(200)),
    ("GET", "/api/v1/hamlets/hpub/series" + SERIES_Q, _expect(200)),
    (
        "PUT",
        "/api/v1/hamlets/h1/devices/d1",
        _expect(403, anonymous=401, staff_c1=200, installer=200, admin=200),
    ),
    ("POST", "/api/v1/gateways", _expect(403, anonymous=401, installer=201, admin=201)),
    ("POST", "/api/v1/gateways/{victim}/revoke", _expect(403, anonymous=401, admin=204)),
    ("GET", "/api/v1/gateways/gw-h1/status", PRIVATE_H1),
    (
        "GET",
        "/api/v1/gateways/gw-h1/rejections",
        _expect(403, anonymous=401, installer=200, admin=200),
    ),
    ("GET", "/healthz", dict.fromkeys(EVERYONE, 200)),
    ("GET", "/readyz", dict.fromkeys(EVERYONE, 200)),
    ("GET", "/metrics", dict.fromkeys(EVERYONE, 200)),
    ("GET", "/", dict.fromkeys(EVERYONE, 200)),
    ("GET", "/partials/live", dict.fromkeys(EVERYONE, 200)),
    # Pages answer 404 for a hamlet you may not see (its existence is not confirmed).
    ("GET", "/h/h1", {k: 200 if v == 200 else 404 for k, v in PRIVATE_H1.items()}),
    ("GET", "/h/hpub", {**dict.fromkeys(EVERYONE, 200), GATEWAY: 404}),
    ("GET", "/installer", dict.fromkeys(EVERYONE, 200)),
    ("GET", "/staff", dict.fromkeys(EVERYONE, 200)),
    (
        "GET",
        "/admin/people",
        {
            **_expect(403, admin=200, staff_c1=200, staff_c2=200),
            **dict.fromkeys([ANON, REVOKED, GATEWAY], 303),
        },
    ),
    ("GET", "/docs", dict.fromkeys(EVERYONE, 200)),
    (
        "GET",
        "/admin/devices",
        {**dict.fromkeys(EVERYONE, 200), **dict.fromkeys([ANON, REVOKED, GATEWAY], 303)},
    ),  # to the login page
    (
        "GET",
        "/admin/hamlets",
        {**_expect(403, admin=200), **dict.fromkeys([ANON, REVOKED, GATEWAY], 303)},
    ),
    (
        "GET",
        "/admin/alerts",  # installers have no share in alert subscriptions
        {**_expect(200, installer=403), **dict.fromkeys([ANON, REVOKED, GATEWAY], 303)},
    ),
    ("GET", "/login", dict.fromkeys(EVERYONE, 200)),
    ("GET", "/openapi.json", dict.fromkeys(EVERYONE, 200)),
    ("GET", "/api/v1/limits", dict.fromkeys(EVERYONE, 200)),  # contract figures, no data
]


@pytest.mark.parametrize(
    ("method", "path", "expected"), MATRIX, ids=[f"{m} {p.split('?')[0]}" for m, p, _ in MATRIX]
)
def test_route_by_role(
    world: tuple[ServerProcess, dict[str, str]], method: str, path: str, expected: dict[str, int]
) -> None:
    srv, tokens = world
    got: dict[str, int] = {}
    with httpx.Client(base_url=srv.url) as c:
        for who in EVERYONE:
            p = path
            payload: object = None
            if "{victim}" in path:
                victim = f"victim-{who}"
                srv.add_gateway(victim, hamlet="h2")
                p = path.format(victim=victim)
            if method == "PUT":
                payload = {"id": "d1", "kind": "sensor", "crop": "rice"}
            if method == "POST" and path == "/api/v1/gateways":
                payload = {"id": f"new-{who}", "hamlet": "h1"}
            r = c.request(method, p, json=payload, headers=_headers(tokens, who))
            got[who] = r.status_code
    assert got == expected


def test_ingest_by_role(world: tuple[ServerProcess, dict[str, str]]) -> None:
    srv, tokens = world
    b = batch("gw-hpub", [block("d1", "salinity", [10])])
    data, hdrs = body(b)
    with httpx.Client(base_url=srv.url) as c:
        got = {
            who: c.post(
                "/api/v1/ingest", content=data, headers={**hdrs, **_headers(tokens, who)}
            ).status_code
            for who in EVERYONE
        }
        # A revoked gateway token.
        gone = srv.add_gateway("gw-gone", hamlet="hpub")
        run_hamlet("server", "revoke", "gw-gone", "--data-dir", str(srv.data_dir))
        gb, gh = body(batch("gw-gone", [block("d", "rain", [1])]))
        got["revoked-gateway"] = c.post(
            "/api/v1/ingest", content=gb, headers={**gh, "Authorization": f"Bearer {gone}"}
        ).status_code
    assert got == {**dict.fromkeys(EVERYONE, 401), GATEWAY: 200, "revoked-gateway": 401}


def test_scoped_listings(world: tuple[ServerProcess, dict[str, str]]) -> None:
    srv, tokens = world
    with httpx.Client(base_url=srv.url) as c:

        def hamlets(who: str) -> set[str]:
            r = c.get("/api/v1/hamlets", headers=_headers(tokens, who))
            return {h["id"] for h in r.json()}

        def gateway_hamlets(who: str) -> set[str]:
            r = c.get("/api/v1/gateways", headers=_headers(tokens, who))
            return {g["hamlet"] for g in r.json()}

        assert hamlets(ANON) == {"hpub"}
        assert hamlets(VIEWER) == {"h1", "hpub"}
        assert hamlets(STAFF2) == {"h2", "hpub"}
        assert {"h1", "h2", "hpub"} <= hamlets(ADMIN)
        assert gateway_hamlets(ANON) == {"hpub"}
        assert gateway_hamlets(STAFF) == {"h1", "hpub"}
        page = c.get("/installer").text  # gateways moved to the installer view
        assert "gw-hpub" in page
        assert "gw-h1" not in page


def test_login_sessions_and_rate_limit(world: tuple[ServerProcess, dict[str, str]]) -> None:
    srv, _ = world
    env = {"FARMER_PW": "lúa-mùa-2025-an-toàn"}
    run_hamlet(
        "server",
        "add-user",
        "farmer",
        "--role",
        "viewer",
        "--hamlet",
        "h1",
        "--password-env",
        "FARMER_PW",
        "--data-dir",
        str(srv.data_dir),
        env=env,
    )
    with httpx.Client(base_url=srv.url) as c:
        assert c.get("/login").status_code == 200
        bad = c.post("/login", data={"username": "farmer", "password": "wrong"})
        assert bad.status_code == 401
        assert "Sai tên đăng nhập" in bad.text
        ok = c.post("/login", data={"username": "farmer", "password": env["FARMER_PW"]})
        assert ok.status_code == 303
        me = c.get("/api/v1/me").json()
        assert (me["name"], me["role"], me["hamlet"]) == ("farmer", "viewer", "h1")
        assert c.get("/api/v1/hamlets/h1/latest").status_code == 200
        assert c.get("/api/v1/hamlets/h2/latest").status_code == 403
        c.post("/logout")
        c.cookies.clear()
        assert c.get("/api/v1/hamlets/h1/latest").status_code == 401
        # Forged cookie.
        c.cookies.set("hamlet_session", "1:99999999999.deadbeef")
        assert c.get("/api/v1/me").status_code == 401
        c.cookies.clear()
        codes = [
            c.post("/login", data={"username": "farmer", "password": f"nope{i}"}).status_code
            for i in range(7)
        ]
        assert codes[:4] == [401] * 4  # one failure already counted above
        assert codes[-1] == 429
        # Even the right password waits out the window.
        assert (
            c.post("/login", data={"username": "farmer", "password": env["FARMER_PW"]}).status_code
            == 429
        )


def test_production_refuses_to_start_without_secret(tmp_path: Path) -> None:
    from tests.support.procs import HAMLET, ManagedProcess

    mp = ManagedProcess(
        [*HAMLET, "server", "run", "--data-dir", str(tmp_path), "--port", "0"],
        env={"HAMLET_SERVER__ENVIRONMENT": "production"},
    ).start()
    mp.wait_for(r"auth\.secret_key is required in production", timeout=30)
    assert mp.proc.wait(timeout=30) == 2


def test_corrupt_database_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    from tests.support.procs import HAMLET, ManagedProcess

    (tmp_path / "hamlet.sqlite3").write_bytes(b"this is not a database" * 100)
    mp = ManagedProcess(
        [*HAMLET, "server", "run", "--data-dir", str(tmp_path), "--port", "0"],
        env={"HAMLET_SERVER__ENVIRONMENT": "development"},
    ).start()
    mp.wait_for(r"not a usable hamlet server database .*move it aside", timeout=30)
    assert mp.proc.wait(timeout=30) == 2


def test_examples_validate() -> None:
    from hamlet.config import load_config
    from server.config import ENV_PREFIX, ServerConfig

    examples = sorted(REPO.joinpath("examples").glob("server*.toml"))
    assert examples
    env = {
        "HAMLET_SERVER__AUTH__SECRET_KEY": "x" * 48,
        "HAMLET_SERVER__STORE__INFLUXDB__TOKEN": "example-token",
    }
    for path in examples:
        cfg = load_config(ServerConfig, path, env_prefix=ENV_PREFIX, environ=env)
        assert cfg.http.port > 0, path


def test_list_gateways_json_matches_api(world: tuple[ServerProcess, dict[str, str]]) -> None:
    srv, tokens = world
    cli = json.loads(
        run_hamlet("server", "list-gateways", "--json", "--data-dir", str(srv.data_dir))
    )
    with httpx.Client(base_url=srv.url) as c:
        api = c.get("/api/v1/gateways", headers=_headers(tokens, ADMIN)).json()
    by_id = {g["id"]: g for g in api}
    for g in cli:
        assert g["received"] == by_id[g["id"]]["received"]
