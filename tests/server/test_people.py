"""People administration against a real server: server-side sessions, the admin API and
``hamlet server`` commands, the forced password change and the audit log."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server import registry
from server.registry import Role
from tests.support.procs import ServerProcess, run_hamlet

ADMIN_PW = "admin password 2026"
TEMP_PW = "temporary pw 1234"
OWN_PW = "my own password 99"


def _cli(server: ServerProcess, *args: str, env: dict[str, str] | None = None) -> str:
    return run_hamlet("server", *args, "--data-dir", str(server.data_dir), env=env)


def _login(c: httpx.Client, name: str, password: str) -> httpx.Response:
    return c.post("/login", data={"username": name, "password": password}, follow_redirects=False)


@pytest.fixture
def admin(server: ServerProcess) -> Iterator[httpx.Client]:
    conn = sqlite3.connect(server.data_dir / "hamlet.sqlite3", isolation_level=None)
    try:
        registry.add_user(conn, "boss", Role.ADMIN, ADMIN_PW)
    finally:
        conn.close()
    with httpx.Client(base_url=server.url, timeout=60) as c:
        assert _login(c, "boss", ADMIN_PW).status_code == 303
        yield c


def test_logout_ends_the_session_on_the_server(server: ServerProcess, admin: httpx.Client) -> None:
    """Design gap: logout only cleared the cookie; a copied cookie worked for 12 h."""
    copied = admin.cookies["hamlet_session"]
    assert admin.get("/api/v1/me").json()["name"] == "boss"
    assert admin.post("/logout", follow_redirects=False).status_code == 303
    with httpx.Client(base_url=server.url, timeout=30) as thief:
        thief.cookies.set("hamlet_session", copied)
        assert thief.get("/api/v1/me").status_code == 401


def test_admin_manages_people_and_every_change_takes_effect_at_once(
    server: ServerProcess, admin: httpx.Client
) -> None:
    r = admin.post(
        "/api/v1/users",
        json={"name": "lan", "role": "staff", "commune": "dinh-mon", "password": TEMP_PW},
    )
    assert r.status_code == 201, r.text
    assert r.json()["must_change_password"] is True
    with httpx.Client(base_url=server.url, timeout=30) as lan:
        # First login with the temporary password leads to the password page, and nothing
        # else is reachable until it is changed.
        r = _login(lan, "lan", TEMP_PW)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/password")
        assert lan.get("/api/v1/hamlets").status_code == 403
        assert lan.get("/", follow_redirects=False).headers["location"].startswith("/password")
        assert "Đổi mật khẩu" in lan.get("/password").text
        r = lan.post("/api/v1/me/password", json={"current": "wrong one 123", "new": OWN_PW})
        assert r.status_code == 403
        r = lan.post("/api/v1/me/password", json={"current": TEMP_PW, "new": OWN_PW})
        assert r.status_code == 204, r.text
        assert lan.get("/api/v1/hamlets").status_code == 200
        # Disabling ends her session at once.
        r = admin.patch("/api/v1/users/lan", json={"disabled": True})
        assert (r.status_code, r.json()["disabled"]) == (200, True)
        assert lan.get("/api/v1/me").status_code == 401
        assert _login(lan, "lan", OWN_PW).status_code == 401
        admin.patch("/api/v1/users/lan", json={"disabled": False}).raise_for_status()
        assert _login(lan, "lan", OWN_PW).status_code == 303
        assert lan.get("/api/v1/me").json()["role"] == "staff"
        # A role change ends the session; the next login has the new role.
        r = admin.patch("/api/v1/users/lan", json={"role": "installer"})
        assert (r.status_code, r.json()["role"]) == (200, "installer")
        assert lan.get("/api/v1/me").status_code == 401
        assert _login(lan, "lan", OWN_PW).status_code == 303
        assert lan.get("/api/v1/me").json()["role"] == "installer"
        # Revoking sessions (API) ends them.
        r = admin.post("/api/v1/users/lan/revoke-sessions")
        assert r.json() == {"sessions": 1}
        assert lan.get("/api/v1/me").status_code == 401
        # A password reset: old password dead, temporary one must be changed again.
        assert _login(lan, "lan", OWN_PW).status_code == 303
        admin.post("/api/v1/users/lan/password", json={"password": TEMP_PW}).raise_for_status()
        assert lan.get("/api/v1/me").status_code == 401
        assert _login(lan, "lan", OWN_PW).status_code == 401
        assert _login(lan, "lan", TEMP_PW).headers["location"].startswith("/password")
        # Non-admins cannot manage people.
        assert lan.get("/api/v1/users").status_code == 403
        # Deleting: gone, session and all.
        assert admin.delete("/api/v1/users/lan").status_code == 204
        assert lan.get("/api/v1/me").status_code == 401
    names = [u["name"] for u in admin.get("/api/v1/users").json()]
    assert names == ["boss"]
    assert admin.delete("/api/v1/users/boss").status_code == 409  # not yourself


def test_cli_manages_people(server: ServerProcess, admin: httpx.Client) -> None:
    env = {"PW": TEMP_PW}
    _cli(
        server,
        "add-user",
        "minh",
        "--role",
        "viewer",
        "--hamlet",
        "dinh-phuoc",
        "--password-env",
        "PW",
        "--temporary",
        env=env,
    )
    assert "must change password" in _cli(server, "list-users")
    with httpx.Client(base_url=server.url, timeout=30) as minh:
        assert _login(minh, "minh", TEMP_PW).headers["location"].startswith("/password")
        r = minh.post("/api/v1/me/password", json={"current": TEMP_PW, "new": OWN_PW})
        assert r.status_code == 204
        assert minh.get("/api/v1/me").json()["hamlet"] == "dinh-phuoc"
        token = _cli(server, "create-token", "minh").strip()
        bearer = {"Authorization": f"Bearer {token}"}
        assert "1 session" in _cli(server, "revoke-sessions", "minh")
        assert minh.get("/api/v1/me").status_code == 401
        assert httpx.get(f"{server.url}/api/v1/me", headers=bearer).status_code == 200
        _cli(server, "set-role", "minh", "--role", "staff", "--commune", "dinh-mon")
        assert httpx.get(f"{server.url}/api/v1/me", headers=bearer).json()["role"] == "staff"
        _cli(server, "disable-user", "minh")
        assert httpx.get(f"{server.url}/api/v1/me", headers=bearer).status_code == 401
        _cli(server, "enable-user", "minh")
        assert httpx.get(f"{server.url}/api/v1/me", headers=bearer).status_code == 200
        _cli(server, "reset-password", "minh", "--password-env", "PW", env=env)
        assert _login(minh, "minh", OWN_PW).status_code == 401
        _cli(server, "delete-user", "minh")
        assert httpx.get(f"{server.url}/api/v1/me", headers=bearer).status_code == 401
    assert "minh" not in _cli(server, "list-users")


def test_audit_log_records_logins_failures_and_changes(
    server: ServerProcess, admin: httpx.Client
) -> None:
    """Design gap: logins, failed logins and admin actions were not logged."""
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert _login(c, "boss", "not the password").status_code == 401
    admin.post(
        "/api/v1/users", json={"name": "hoa", "role": "admin", "password": TEMP_PW}
    ).raise_for_status()
    admin.patch("/api/v1/users/hoa", json={"disabled": True}).raise_for_status()
    admin.post("/api/v1/gateways", json={"id": "gw-a", "hamlet": "dinh-phuoc"}).raise_for_status()
    admin.post("/api/v1/gateways/gw-a/revoke").raise_for_status()
    token = server.add_gateway("gw-b")  # through the CLI
    assert token
    entries = admin.get("/api/v1/audit", params={"limit": 50}).json()
    got = [(e["action"], e["target"], e["actor"]) for e in reversed(entries)]
    assert got == [
        ("login", "boss", "boss"),
        ("login_failed", "boss", "boss"),
        ("user_created", "hoa", "boss"),
        ("user_disabled", "hoa", "boss"),
        ("gateway_added", "gw-a", "boss"),
        ("gateway_revoked", "gw-a", "boss"),
        ("gateway_added", "gw-b", "cli"),
    ]
    assert all(e["address"] == "127.0.0.1" for e in entries if e["actor"] != "cli")
    failed = admin.get("/api/v1/audit", params={"action": "login_failed"}).json()
    assert [e["target"] for e in failed] == ["boss"]
    out = json.loads(_cli(server, "audit", "--json", "--target", "hoa"))
    assert [e["action"] for e in out] == ["user_disabled", "user_created"]
    text = _cli(server, "audit", "--limit", "3")
    assert len(text.strip().splitlines()) == 3
    # Nobody but an admin reads it.
    assert httpx.get(f"{server.url}/api/v1/audit").status_code == 401


@pytest.mark.parametrize("command", [["add-user", "x", "--no-password"], ["set-role", "x"]])
def test_cli_names_the_roles_when_given_an_unknown_one(tmp_path: Path, command: list[str]) -> None:
    with pytest.raises(RuntimeError) as err:
        run_hamlet("server", *command, "--role", "chief", "--data-dir", str(tmp_path))
    assert "exited 2" in str(err.value)
    assert "role must be one of: viewer, staff, installer, admin" in str(err.value)


def test_an_oversized_page_form_is_refused_and_changes_nothing(
    server: ServerProcess, admin: httpx.Client
) -> None:
    """Every page form is read only up to 4 KiB: the rest is refused with a 413 page."""
    padding = "x" * 5000
    r = admin.post("/admin/hamlets", data={"id": "too-big", "name": padding})
    assert r.status_code == 413
    assert "form too large" in r.text
    assert "too-big" not in [h["id"] for h in admin.get("/api/v1/hamlets").json()]
    r = admin.post("/password", data={"current": ADMIN_PW, "new": padding, "again": padding})
    assert r.status_code == 413
    assert "form too large" in r.text
    r = admin.post("/admin/people", data={"name": "big", "role": "viewer", "password": padding})
    assert r.status_code == 403  # the people page says only "not allowed" for a bad form
    assert "big" not in _cli(server, "list-users")
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert _login(c, "boss", ADMIN_PW).status_code == 303  # the password did not change
