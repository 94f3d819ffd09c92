"""Subscriber and subscription management is hamlet-scoped: every notify route x every kind of
caller against a real server, and the CLI's ``--as`` with the same policy."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from server import registry
from server.registry import Role
from tests.support.procs import ServerProcess, run_hamlet, start_server

ANON, INSTALLER, ADMIN = "anonymous", "installer", "admin"
FARMER1, FARMER2, STAFF1, STAFF2 = "farmer-h1", "farmer-h2", "staff-c1", "staff-c2"
USERS = [FARMER1, FARMER2, STAFF1, STAFF2, INSTALLER, ADMIN]
EVERYONE = [ANON, *USERS]


@dataclass
class World:
    srv: ServerProcess
    tokens: dict[str, str]
    s1: int  # belongs to h1 (commune c1), made by staff-c1
    s2: int  # belongs to h2 (commune c2), made by staff-c2
    f1: int  # farmer-h1's own, made by farmer-h1

    def h(self, who: str) -> dict[str, str]:
        return {} if who == ANON else {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("notify-scope")
    with start_server(data / "server", env={"HAMLET_SERVER__AUTH__OPEN_READ": "false"}) as srv:
        conn = sqlite3.connect(srv.data_dir / "hamlet.sqlite3", isolation_level=None)
        try:
            registry.add_hamlet(conn, "h1", commune="c1")
            registry.add_hamlet(conn, "h2", commune="c2")
            registry.add_hamlet(conn, "hpub", commune="c2", public=True)
            scopes = {
                FARMER1: (Role.VIEWER, None, "h1"),
                FARMER2: (Role.VIEWER, None, "h2"),
                STAFF1: (Role.STAFF, "c1", None),
                STAFF2: (Role.STAFF, "c2", None),
                INSTALLER: (Role.INSTALLER, None, None),
                ADMIN: (Role.ADMIN, None, None),
            }
            tokens = {}
            for name, (role, commune, hamlet) in scopes.items():
                registry.add_user(conn, name, role, None, commune=commune, hamlet=hamlet)
                tokens[name] = registry.create_user_token(conn, name)
        finally:
            conn.close()
        w = World(srv, tokens, 0, 0, 0)
        w.s1 = _new(w, STAFF1, "h1")
        w.s2 = _new(w, STAFF2, "h2")
        with httpx.Client(base_url=srv.url, headers=w.h(FARMER1)) as c:
            r = c.post("/api/v1/notify/subscribers", json={"name": "Tôi", "phone": "0912000001"})
            assert r.status_code == 201, r.text
            w.f1 = r.json()["id"]
            assert c.post(f"/api/v1/notify/subscribers/{w.f1}/subscriptions",
                          json={"hamlet": "h1"}).status_code == 201  # fmt: skip
        yield w


def _new(w: World, who: str, hamlet: str, name: str = "Chú Bảy") -> int:
    with httpx.Client(base_url=w.srv.url, headers=w.h(who)) as c:
        r = c.post("/api/v1/notify/subscribers",
                   json={"name": name, "phone": "+84912345678", "hamlet": hamlet})  # fmt: skip
        assert r.status_code == 201, r.text
        sid = int(r.json()["id"])
        r = c.post(f"/api/v1/notify/subscribers/{sid}/subscriptions", json={"hamlet": hamlet})
        assert r.status_code == 201, r.text
    return sid


def _subscription_of(w: World, sid: int, hamlet: str) -> int:
    with httpx.Client(base_url=w.srv.url, headers=w.h(ADMIN)) as c:
        r = c.post(f"/api/v1/notify/subscribers/{sid}/subscriptions", json={"hamlet": hamlet})
        assert r.status_code == 201, r.text
        return int(r.json()["id"])


def _expect(default: int, **by_who: int) -> dict[str, int]:
    out = dict.fromkeys(EVERYONE, default)
    out[ANON], out[INSTALLER] = 401, 403  # installers have no share in subscriptions
    out.update({k.replace("_", "-"): v for k, v in by_who.items()})
    return out


# Someone else's subscriber answers 404: whether it exists is not told.
S1_ONLY = _expect(404, staff_c1=200, admin=200)
F1_ONLY = _expect(404, farmer_h1=200, staff_c1=200, admin=200)


def _run(w: World, method: str, path: str, payload: object = None) -> dict[str, int]:
    got = {}
    with httpx.Client(base_url=w.srv.url) as c:
        for who in EVERYONE:
            fresh: dict[str, int] = {}  # a delete consumes its target: one each
            if "{fresh_s1}" in path:
                fresh["fresh_s1"] = _new(w, ADMIN, "h1", f"for {who}")
            if "{fresh_sub}" in path:
                fresh["fresh_sub"] = _subscription_of(w, w.s1, "h1")
            if "{fresh_f1_sub}" in path:
                fresh["fresh_f1_sub"] = _subscription_of(w, w.f1, "h1")
            p = path.format(s1=w.s1, f1=w.f1, s2=w.s2, **fresh)
            got[who] = c.request(method, p, json=payload, headers=w.h(who)).status_code
    return got


MATRIX: list[tuple[str, str, object, dict[str, int]]] = [
    ("GET", "/api/v1/notify/subscribers", None, _expect(200)),
    ("GET", "/api/v1/notify/subscribers/{s1}", None, S1_ONLY),
    ("GET", "/api/v1/notify/subscribers/{f1}", None, F1_ONLY),
    ("PATCH", "/api/v1/notify/subscribers/{s1}", {"language": "en"}, S1_ONLY),
    ("PATCH", "/api/v1/notify/subscribers/{f1}", {"quiet": [1260, 330]}, F1_ONLY),
    # A farmer may not make themselves an escalation (staff) recipient.
    ("PATCH", "/api/v1/notify/subscribers/{f1}", {"staff": True},
     _expect(404, farmer_h1=403, staff_c1=200, admin=200)),
    ("DELETE", "/api/v1/notify/subscribers/{fresh_s1}", None,
     _expect(404, staff_c1=204, admin=204)),
    ("POST", "/api/v1/notify/subscribers/{s1}/subscriptions", {"hamlet": "h1"},
     _expect(404, staff_c1=201, admin=201)),
    # Staff of c1 manage s1, but hpub is c2's hamlet (public to read, not theirs to manage).
    ("POST", "/api/v1/notify/subscribers/{s1}/subscriptions", {"hamlet": "hpub"},
     _expect(404, staff_c1=403, admin=201)),
    # A farmer subscribes themselves to their own hamlet only.
    ("POST", "/api/v1/notify/subscribers/{f1}/subscriptions", {"hamlet": "h2"},
     _expect(404, farmer_h1=403, staff_c1=403, admin=201)),
    ("DELETE", "/api/v1/notify/subscriptions/{fresh_sub}", None,
     _expect(404, staff_c1=204, admin=204)),
    ("DELETE", "/api/v1/notify/subscriptions/{fresh_f1_sub}", None,
     _expect(404, farmer_h1=204, staff_c1=204, admin=204)),
    ("POST", "/api/v1/notify/subscribers", {"name": "x", "phone": "0912000002", "hamlet": "h1"},
     _expect(403, farmer_h1=201, staff_c1=201, admin=201)),
    ("POST", "/api/v1/notify/subscribers", {"name": "x", "phone": "0912000003", "hamlet": "h2"},
     _expect(403, farmer_h2=201, staff_c2=201, admin=201)),
    # A farmer may not point the server at a URL (webhooks are for staff).
    ("POST", "/api/v1/notify/subscribers",
     {"name": "hook", "hamlet": "h1", "webhook_url": "https://example.invalid/h",
      "webhook_secret": "s" * 16},
     _expect(403, staff_c1=201, admin=201)),
    ("GET", "/api/v1/notify/deliveries", None, _expect(200)),
    ("GET", "/api/v1/notify/replies", None, _expect(200)),
    ("POST", "/api/v1/notify/test-message", {"hamlet": "h1"},
     _expect(403, staff_c1=202, admin=202)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "payload", "expected"),
    MATRIX,
    ids=[f"{m} {p} {i}" for i, (m, p, _, _) in enumerate(MATRIX)],
)
def test_notify_route_by_caller(
    world: World, method: str, path: str, payload: object, expected: dict[str, int]
) -> None:
    assert _run(world, method, path, payload) == expected


def test_each_caller_lists_only_whom_they_manage(world: World) -> None:
    w = world
    with httpx.Client(base_url=w.srv.url) as c:

        def listed(who: str) -> list[tuple[int, list[str]]]:
            r = c.get("/api/v1/notify/subscribers", headers=w.h(who))
            assert r.status_code == 200, r.text
            return [(s["id"], [u["hamlet"] for u in s["subscriptions"]]) for s in r.json()]

        # s2 also gets a subscription to c1's hamlet h1: staff of c1 must not see s2, and
        # staff of c2 see s2 without the h1 subscription.
        extra = _subscription_of(w, w.s2, "h1")
        try:
            by_staff1 = [sid for sid, _ in listed(STAFF1)]
            assert w.s1 in by_staff1
            assert w.f1 in by_staff1
            assert w.s2 not in by_staff1
            s2_for_staff2 = [h for sid, h in listed(STAFF2) if sid == w.s2]
            assert s2_for_staff2 == [["h2"]]
            farmer1 = c.get("/api/v1/notify/subscribers", headers=w.h(FARMER1)).json()
            assert [s["id"] for s in farmer1].count(w.f1) == 1
            assert all(s["mine"] for s in farmer1)  # their own only (the matrix adds one)
            assert all(sid != w.f1 and sid != w.s1 for sid, _ in listed(FARMER2))
            all_ids = [sid for sid, _ in listed(ADMIN)]
            assert all_ids.count(w.s1) == all_ids.count(w.s2) == all_ids.count(w.f1) == 1
        finally:
            assert c.delete(f"/api/v1/notify/subscriptions/{extra}",
                            headers=w.h(ADMIN)).status_code == 204  # fmt: skip


def test_delivery_log_is_scoped(world: World) -> None:
    w = world
    with httpx.Client(base_url=w.srv.url) as c:
        for hamlet in ("h1", "h2"):
            r = c.post("/api/v1/notify/test-message", headers=w.h(ADMIN), json={"hamlet": hamlet})
            assert r.status_code == 202

        def log(who: str) -> list[tuple[str, int]]:
            r = c.get("/api/v1/notify/deliveries", headers=w.h(who))
            return [(row["hamlet"], row["subscriber_id"]) for row in r.json()]

        assert log(STAFF1)
        assert all(h == "h1" for h, _ in log(STAFF1))
        assert all(h in ("h2", "hpub") for h, _ in log(STAFF2))
        assert log(FARMER1)
        assert all(sid == w.f1 for _, sid in log(FARMER1))
        assert log(FARMER2) == []
        everything = log(ADMIN)
        assert len(everything) == len(log(STAFF1)) + len(log(STAFF2))


def test_cli_as_applies_the_same_scope(world: World) -> None:
    d = str(world.srv.data_dir)

    def cli(*args: str) -> str:
        return run_hamlet("server", "notify", *args, "--data-dir", d)

    ids = [json.loads(x)["id"] for x in cli("list", "--as", STAFF2).splitlines()]
    assert world.s2 in ids
    assert world.s1 not in ids
    assert world.f1 not in ids
    ids = [json.loads(x)["id"] for x in cli("list", "--as", FARMER1).splitlines()]
    with httpx.Client(base_url=world.srv.url, headers=world.h(FARMER1)) as c:
        own = [s["id"] for s in c.get("/api/v1/notify/subscribers").json() if s["mine"]]
    assert world.f1 in ids
    assert ids == own
    for args in (
        ("remove", str(world.s1), "--as", STAFF2),
        ("subscribe", str(world.s2), "--hamlet", "h1", "--as", STAFF2),
        ("subscribe", str(world.s1), "--hamlet", "h1", "--as", STAFF2),
        ("add-subscriber", "x", "--phone", "0912000009", "--hamlet", "h1", "--as", STAFF2),
        ("list", "--as", INSTALLER),
        ("list", "--as", "nobody"),
    ):
        with pytest.raises(RuntimeError, match="exited 2"):
            cli(*args)
    # Nothing changed for s1: still there, still subscribed to h1 only by staff of c1.
    mine = [json.loads(x) for x in cli("list", "--as", STAFF1).splitlines()]
    s1 = [m for m in mine if m["id"] == world.s1]
    assert len(s1) == 1
    out = cli("subscribe", str(world.s1), "--hamlet", "h1", "--as", STAFF1)
    assert json.loads(out)["id"] > 0
    rows = [json.loads(x) for x in cli("deliveries", "--as", STAFF1).splitlines()]
    assert all(r["hamlet"] == "h1" for r in rows)


def test_farmer_replies_are_shown_to_whom_they_concern(world: World) -> None:
    """Replies are kept in notify.sqlite3 (written here as the SMS channel writes them) and
    each caller reads those of the subscribers they manage."""
    from server.notify.store import NotifyStore

    w = world
    phones = {STAFF1: "0977000001", STAFF2: "0977000002"}
    for who, phone in phones.items():
        with httpx.Client(base_url=w.srv.url, headers=w.h(who)) as c:
            hamlet = "h1" if who == STAFF1 else "h2"
            who_ = {"name": f"nhắn {hamlet}", "phone": phone, "hamlet": hamlet}
            r = c.post("/api/v1/notify/subscribers", json=who_)
            assert r.status_code == 201
    store = NotifyStore(w.srv.data_dir / "notify.sqlite3")
    try:
        store.add_reply("+84977000001", "Nước mặn rồi, cảm ơn")
        store.add_reply("84977000002", "Đã đóng cống")
        store.add_reply("0912000001", "Cảm ơn")  # farmer-h1's own phone
        store.add_reply("+84999999999", "Ai đây?")  # nobody's
    finally:
        store.close()
    with httpx.Client(base_url=w.srv.url) as c:

        def texts(who: str) -> list[str]:
            r = c.get("/api/v1/notify/replies", headers=w.h(who))
            assert r.status_code == 200, r.text
            return [x["text"] for x in r.json()]

        assert texts(STAFF1) == ["Cảm ơn", "Nước mặn rồi, cảm ơn"]
        assert texts(STAFF2) == ["Đã đóng cống"]
        assert texts(FARMER1) == ["Cảm ơn"]
        assert texts(FARMER2) == []
        assert texts(ADMIN) == ["Ai đây?", "Cảm ơn", "Đã đóng cống", "Nước mặn rồi, cảm ơn"]


def test_staff_link_a_subscriber_to_a_farmer_login_of_their_hamlets_only(world: World) -> None:
    w = world
    body = {"name": "Chú Bảy (tài khoản)", "phone": "0966000001", "hamlet": "h1",
            "user": FARMER1}  # fmt: skip
    with httpx.Client(base_url=w.srv.url) as c:
        r = c.post("/api/v1/notify/subscribers", headers=w.h(STAFF2), json=body)
        assert r.status_code == 403  # h1 is not c2's
        r = c.post("/api/v1/notify/subscribers", headers=w.h(STAFF2),
                   json={**body, "hamlet": "h2"})  # fmt: skip
        assert r.status_code == 422  # farmer-h1's login is not in c2's hamlets
        r = c.post("/api/v1/notify/subscribers", headers=w.h(STAFF1), json=body)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        mine = c.get("/api/v1/notify/subscribers", headers=w.h(FARMER1)).json()
        assert [s["mine"] for s in mine if s["id"] == sid] == [True]
        # The farmer stops it themselves.
        r = c.patch(f"/api/v1/notify/subscribers/{sid}", headers=w.h(FARMER1),
                    json={"active": False})  # fmt: skip
        assert r.status_code == 200
        assert r.json()["active"] is False
        assert c.get(f"/api/v1/notify/subscribers/{sid}", headers=w.h(FARMER2)).status_code == 404


def test_null_for_a_required_field_is_a_clear_422(world: World) -> None:
    """Schemathesis found PATCH {"name": null} answered 500 (NOT NULL in the database)."""
    w = world
    with httpx.Client(base_url=w.srv.url, headers=w.h(ADMIN)) as c:
        for field in ("name", "language", "active", "staff"):
            r = c.patch(f"/api/v1/notify/subscribers/{w.s1}", json={field: None})
            assert r.status_code == 422, (field, r.status_code, r.text)
            assert "cannot be null" in r.text, r.text
        r = c.patch(f"/api/v1/notify/subscribers/{w.s1}", json={"quiet": None, "email": None})
        assert r.status_code == 200, r.text
        assert c.get(f"/api/v1/notify/subscribers/{w.s1}").json()["name"] == "Chú Bảy"
