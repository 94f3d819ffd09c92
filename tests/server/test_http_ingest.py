"""Ingest over real HTTP to a real ``hamlet server run`` process: the gateway's view."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hamlet.contract import GapReason
from tests.server.helpers import batch, block, now_ms, post
from tests.support.procs import ServerProcess, run_hamlet, start_server


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def test_ingest_gzip_and_plain_then_accounting(server: ServerProcess, client: httpx.Client) -> None:
    token = server.add_gateway("gw-1")
    r = post(client, token, batch("gw-1", [block("sal-1", "salinity", [1, 2, 3])]))
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    r = post(client, token, batch("gw-1", [block("sal-1", "salinity", [3, 4, 6])]), compress=False)
    assert r.json() == {"accepted": 2, "duplicates": 1, "rejected": []}
    (g,) = client.get("/api/v1/gateways").json()
    assert g["id"] == "gw-1"
    assert g["hamlet"] == "dinh-phuoc"
    assert (g["received"], g["duplicates"], g["missing"], g["highest_seq"]) == (5, 1, 1, 6)
    assert g["missing_ranges"] == [{"first": 5, "last": 5}]
    latest = client.get("/api/v1/hamlets/dinh-phuoc/latest").json()
    assert [(v["device"], v["metric"]) for v in latest] == [("sal-1", "salinity")]


def test_tokens_and_gateway_identity(server: ServerProcess, client: httpx.Client) -> None:
    t1 = server.add_gateway("gw-a")
    server.add_gateway("gw-b")
    b = batch("gw-b", [block("d", "rain", [1])])
    assert post(client, None, b).status_code == 401
    assert post(client, "hgw_not-a-real-token", b).status_code == 401
    assert post(client, t1, b, headers={"Authorization": f"Basic {t1}"}).status_code == 401
    r = post(client, t1, b)  # gw-a's token, gw-b's batch
    assert r.status_code == 403
    assert "gw-a" in r.json()["detail"]
    # Rotation: the old token dies at once, the new one works; revoke kills it.
    new = json.loads(
        run_hamlet("server", "rotate-token", "gw-a", "--data-dir", str(server.data_dir), "--json")
    )["token"]
    a = batch("gw-a", [block("d", "rain", [1])])
    assert post(client, t1, a).status_code == 401
    assert post(client, new, a).status_code == 200
    run_hamlet("server", "revoke", "gw-a", "--data-dir", str(server.data_dir))
    assert post(client, new, a).status_code == 401
    listing = json.loads(
        run_hamlet("server", "list-gateways", "--data-dir", str(server.data_dir), "--json")
    )
    assert {g["id"]: g["revoked"] for g in listing} == {"gw-a": True, "gw-b": False}


def test_token_is_stored_only_as_hash(server: ServerProcess) -> None:
    token = server.add_gateway("gw-h")
    raw = (server.data_dir / "hamlet.sqlite3").read_bytes()
    wal = server.data_dir / "hamlet.sqlite3-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert token.encode() not in raw
    assert len(token) >= 40


def test_gzip_bomb_and_oversized_bodies(server: ServerProcess, client: httpx.Client) -> None:
    token = server.add_gateway("gw-bomb")
    # 200 MB of zeros compress to ~200 kB: refused without inflating it all.
    bomb = gzip.compress(b"0" * (200 * 1024 * 1024), 9)
    r = post(client, token, bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413
    assert "inflates" in r.json()["detail"]
    big = b" " * (9 * 1024 * 1024)
    r = post(client, token, big)
    assert r.status_code == 413
    assert (
        post(client, token, b"\x1f\x8b garbage", headers={"Content-Encoding": "gzip"}).status_code
        == 400
    )
    assert post(client, token, b"{}", headers={"Content-Encoding": "br"}).status_code == 415
    # Nothing was stored.
    (g,) = client.get("/api/v1/gateways").json()
    assert g["received"] == 0


def test_structurally_invalid_batches_get_422(server: ServerProcess, client: httpx.Client) -> None:
    token = server.add_gateway("gw-v")
    good = json.loads(batch("gw-v", [block("d", "rain", [1])]).model_dump_json())
    cases = {
        "sql-looking device": {"device": "x'; DROP TABLE points;--"},
        "unicode device": {"device": "cảm-biến-1"},
        "space in metric": {"metric": "air temp"},
        "ragged columns": {"v": [1.0, 2.0]},
        "unknown field": {"colour": "red"},
    }
    for what, patch in cases.items():
        bad = json.loads(json.dumps(good))
        bad["series"][0].update(patch)
        r = post(client, token, json.dumps(bad).encode())
        assert r.status_code == 422, (what, r.text)
        assert isinstance(r.json()["detail"], str)
        assert isinstance(r.json()["errors"], list)
    assert post(client, token, b"not json").status_code == 422
    assert post(client, token, b"[]").status_code == 422
    (g,) = client.get("/api/v1/gateways").json()
    assert g["received"] == 0
    names = [d["id"] for d in client.get("/api/v1/devices").json()]
    assert names == []


def test_nan_and_infinity_tokens_rejected_per_record(
    server: ServerProcess, client: httpx.Client
) -> None:
    token = server.add_gateway("gw-n")
    t = now_ms() - 1000
    text = (
        f'{{"v":1,"gateway":"gw-n","sent_at":{t},"series":[{{"device":"d","metric":"air_temp",'
        f'"seq":[1,1,1],"t":[{t},0,0],"v":[NaN,Infinity,27.5]}}]}}'
    )
    r = post(client, token, text.encode())
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["accepted"] == 1
    assert [x["seq"] for x in res["rejected"]] == [1, 2]
    assert all("not finite" in x["reason"] for x in res["rejected"])
    (v,) = client.get("/api/v1/hamlets/dinh-phuoc/latest").json()
    # Installers can read the reasons later (kept, bounded).
    import sqlite3

    from server import registry
    from server.registry import Role

    conn = sqlite3.connect(server.data_dir / "hamlet.sqlite3", isolation_level=None)
    try:
        registry.add_user(conn, "inst", Role.INSTALLER, None)
        tok = registry.create_user_token(conn, "inst")
    finally:
        conn.close()
    kept = client.get(
        "/api/v1/gateways/gw-n/rejections", headers={"Authorization": f"Bearer {tok}"}
    ).json()
    assert sorted(r["seq"] for r in kept) == [1, 2]
    assert all("not finite" in r["reason"] for r in kept)
    assert v["v"] == 27.5
    assert math.isfinite(v["v"])


def test_out_of_order_and_gaps_over_http(server: ServerProcess, client: httpx.Client) -> None:
    token = server.add_gateway("gw-o")
    post(client, token, batch("gw-o", [block("d", "rain", range(101, 201))]))
    post(
        client,
        token,
        batch("gw-o", [block("d", "rain", range(1, 51))], gaps=[(51, 60, GapReason.DROPPED)]),
    )
    (g,) = client.get("/api/v1/gateways").json()
    assert g["missing_ranges"] == [{"first": 61, "last": 100}]
    assert g["accounted"] == {"dropped": 10}
    post(client, token, batch("gw-o", [block("d", "rain", range(61, 101))]))
    (g,) = client.get("/api/v1/gateways").json()
    assert (g["received"], g["missing"], g["missing_ranges"]) == (190, 0, [])


def test_series_endpoint_and_page(server: ServerProcess, client: httpx.Client) -> None:
    token = server.add_gateway("gw-p")
    t0 = now_ms() - 30 * 60_000
    post(
        client,
        token,
        batch("gw-p", [block("sal-1", "salinity", [1, 2, 3], t0=t0, values=[0.4, 0.6, 1.2])]),
    )
    s = client.get(
        "/api/v1/hamlets/dinh-phuoc/series",
        params={"device": "sal-1", "metric": "salinity", "start": t0, "end": t0 + 3_600_000},
    ).json()
    assert s["resolution"] == "raw"
    assert [p["v"] for p in s["points"]] == [0.4, 0.6, 1.2]
    assert (
        client.get(
            "/api/v1/hamlets/dinh-phuoc/series",
            params={"device": "sal-1", "metric": "salinity", "start": 10, "end": 5},
        ).status_code
        == 422
    )
    vi = client.get("/h/dinh-phuoc").text
    assert "Độ mặn" in vi
    assert '1,2 <span class="unit">‰</span>' in vi
    assert 'data-t="' in vi  # the age is computed in the browser from this time
    assert "?partial=1" in vi  # auto-refresh of the live part
    assert "Nguy hiểm" in vi  # 1.2 ‰ with no crop registered: over most crops' 1 ‰
    en = client.get("/h/dinh-phuoc", params={"lang": "en"}).text
    assert "Salinity" in en
    assert '1.2 <span class="unit">‰</span>' in en
    assert "Danger" in en
    live = client.get("/h/dinh-phuoc", params={"partial": "1"}).text
    assert "Salinity" in live
    assert "<html" not in live
    assert "gw-p" in client.get("/installer").text


def test_operations_endpoints(server: ServerProcess, client: httpx.Client) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").status_code == 200
    token = server.add_gateway("gw-m")
    post(client, token, batch("gw-m", [block("d", "rain", [1, 2])]))
    text = client.get("/metrics").text
    assert 'hamlet_ingest_records_total{outcome="accepted"} 2.0' in text
    doc = client.get("/openapi.json").json()
    assert "UplinkBatch" in doc["components"]["schemas"]
    assert "/api/v1/ingest" in doc["paths"]


def test_sigterm_is_graceful(server: ServerProcess) -> None:
    rc = server.process.stop()
    assert rc == 0
    assert any("Application shutdown complete" in ln for ln in server.process.lines)


def test_ingest_rate_limit_per_gateway(tmp_path: Path) -> None:
    env = {
        "HAMLET_SERVER__INGEST__RATE_PER_GATEWAY": "0.2",
        "HAMLET_SERVER__INGEST__BURST_PER_GATEWAY": "2",
    }
    with start_server(tmp_path / "srv", env=env) as srv, httpx.Client(base_url=srv.url) as c:
        tok_a, tok_b = srv.add_gateway("gw-a"), srv.add_gateway("gw-b")
        codes = [
            post(c, tok_a, batch("gw-a", [block("d", "rain", [i])])).status_code for i in (1, 2, 3)
        ]
        assert codes == [200, 200, 429]
        r = post(c, tok_a, batch("gw-a", [block("d", "rain", [4])]))
        assert r.status_code == 429
        assert int(r.headers["Retry-After"]) >= 1
        # Another gateway has its own bucket.
        assert post(c, tok_b, batch("gw-b", [block("d", "rain", [1])])).status_code == 200
        (a,) = [g for g in c.get("/api/v1/gateways").json() if g["id"] == "gw-a"]
        assert (a["received"], a["missing"]) == (2, 0)
