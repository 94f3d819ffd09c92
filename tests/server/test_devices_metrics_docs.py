"""The per-gateway cap on unregistered devices, the optional /metrics token, and API docs
off in production, against a real server process."""

from __future__ import annotations

from pathlib import Path

import httpx

from hamlet.contract import EventRecord
from tests.server.helpers import batch, block, now_ms, post
from tests.support.procs import run_hamlet, start_server

SECRET = "s" * 40


def test_unregistered_devices_are_capped_per_gateway(tmp_path: Path) -> None:
    """Design gap: a gateway could create any number of unregistered devices (10,000 made
    the live partial 2.7 MB, re-rendered every 5 s for every open dashboard)."""
    env = {"HAMLET_SERVER__INGEST__MAX_UNREGISTERED_DEVICES": "3"}
    with start_server(tmp_path / "srv", env=env) as srv:
        token = srv.add_gateway("gw-cap")
        data_dir = str(srv.data_dir)
        run_hamlet(
            "server", "add-device", "reg-1", "--hamlet", "dinh-phuoc", "--data-dir", data_dir
        )
        t = now_ms() - 60_000
        devices = ["reg-1", "gw-cap", "u1", "u2", "u3", "u4", "u5"]
        b = batch(
            "gw-cap",
            [block(d, "rain", [i * 10 + 1, i * 10 + 2], t0=t) for i, d in enumerate(devices)],
            events=[EventRecord(seq=500, device="u9", name="rating", t=t)],
        )
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            r = post(c, token, b)
            assert r.status_code == 200, r.text
            res = r.json()
            assert res["accepted"] == 10  # reg-1, the gateway itself, u1..u3
            rejected = [x["seq"] for x in res["rejected"]]
            assert rejected == [51, 52, 61, 62, 500]
            assert all("not registered" in x["reason"] for x in res["rejected"])
            assert "hamlet server add-device u4" in res["rejected"][0]["reason"]
            # Known unregistered devices keep flowing; new ones are still refused...
            r = post(
                c,
                token,
                batch(
                    "gw-cap", [block("u1", "rain", [100], t0=t), block("u6", "rain", [101], t0=t)]
                ),
            )
            assert r.json()["accepted"] == 1
            assert [x["seq"] for x in r.json()["rejected"]] == [101]
            # ...until someone registers them.
            run_hamlet(
                "server", "add-device", "u6", "--hamlet", "dinh-phuoc", "--data-dir", data_dir
            )
            r = post(c, token, batch("gw-cap", [block("u6", "rain", [102], t0=t)]))
            assert (r.json()["accepted"], r.json()["rejected"]) == (1, [])
            (g,) = c.get("/api/v1/gateways").json()
            assert g["rejected"] == 6
            unconfirmed = sorted(
                d["id"] for d in c.get("/api/v1/devices").json() if not d["confirmed"]
            )
            assert unconfirmed == ["gw-cap", "u1", "u2", "u3"]
        srv.process.wait_for(r"records of 3 unregistered devices rejected \(cap 3\)")


def test_metrics_token_is_optional(tmp_path: Path) -> None:
    """Design gap: /metrics was public with no way to close it."""
    with start_server(tmp_path / "open") as srv:
        assert httpx.get(f"{srv.url}/metrics").status_code == 200
    env = {"HAMLET_SERVER__AUTH__METRICS_TOKEN": "m" * 24}
    with start_server(tmp_path / "closed", env=env) as srv:
        assert httpx.get(f"{srv.url}/metrics").status_code == 401
        bad = {"Authorization": "Bearer " + "x" * 24}
        assert httpx.get(f"{srv.url}/metrics", headers=bad).status_code == 401
        good = {"Authorization": "Bearer " + "m" * 24}
        r = httpx.get(f"{srv.url}/metrics", headers=good)
        assert r.status_code == 200
        assert "hamlet_ingest_requests" in r.text


def test_api_docs_are_off_in_production_unless_configured(tmp_path: Path) -> None:
    """Design gap: /docs loaded Swagger UI from a CDN (blank offline) and was public."""
    prod = {"HAMLET_SERVER__ENVIRONMENT": "production", "HAMLET_SERVER__AUTH__SECRET_KEY": SECRET}
    with start_server(tmp_path / "prod", env=prod) as srv:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert httpx.get(f"{srv.url}{path}").status_code == 404, path
    with start_server(tmp_path / "on", env={**prod, "HAMLET_SERVER__HTTP__DOCS": "true"}) as srv:
        assert httpx.get(f"{srv.url}/openapi.json").status_code == 200
        assert httpx.get(f"{srv.url}/docs").status_code == 200
