"""A stand-in for the few InfluxDB 2 HTTP endpoints ``hamlet server influx-setup`` and
``hamlet server migrate --to influxdb`` use (organisations, buckets, tasks; line-protocol
writes; a Flux count per series), so influxdb-client's real requests are exercised without an
InfluxDB (the boundary we cannot run here). Points are kept per bucket under their identity
(series key + timestamp), as InfluxDB does: writing one twice keeps one. Created buckets and
tasks are found by the next run. Everything else answers 404, and every request is recorded.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

ORG_ID = "0000000000000001"
TOKEN = "standin-token"


@dataclass
class InfluxState:
    org: str = "hamlet"
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    # bucket -> {(measurement and tags, timestamp): fields}
    points: dict[str, dict[tuple[str, int], str]] = field(default_factory=dict)

    def add_bucket(self, name: str) -> None:
        bid = f"{len(self.buckets) + 1:016x}"
        self.buckets[name] = {"id": bid, "name": name, "orgID": ORG_ID, "retentionRules": []}


def _task_json(tid: str, flux: str, status: str) -> dict[str, Any]:
    name = re.search(r'name:\s*"([^"]+)"', flux)
    return {
        "id": tid, "orgID": ORG_ID, "org": "hamlet", "name": name.group(1) if name else "",
        "flux": flux, "status": status, "every": "1h", "offset": "5m",
    }  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    state: InfluxState

    def log_message(self, *_args: object) -> None:
        return

    def _send(self, code: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> dict[str, Any]:
        n = int(self.headers.get("Content-Length") or 0)
        data: dict[str, Any] = json.loads(self.rfile.read(n) or b"{}")
        return data

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        st = self.state
        st.requests.append((method, url.path))
        if self.headers.get("Authorization") != f"Token {TOKEN}":
            self._send(401, {"code": "unauthorized", "message": "unauthorized access"})
            return
        if method == "POST" and url.path == "/api/v2/write":
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            into = st.points.setdefault(q["bucket"], {})
            for ln in raw.decode().splitlines():
                key, fields, ts = ln.rsplit(" ", 2)  # test ids have no spaces
                into[(key, int(ts))] = fields
            self.send_response(204)
            self.end_headers()
        elif method == "POST" and url.path == "/api/v2/query":
            self._count(self._body()["query"])
        elif method == "GET" and url.path == "/api/v2/orgs":
            orgs = [{"id": ORG_ID, "name": st.org}] if q.get("org") in {None, st.org} else []
            self._send(200, {"orgs": orgs})
        elif method == "GET" and url.path == "/api/v2/buckets":
            found = [b for n, b in st.buckets.items() if q.get("name") in {None, n}]
            self._send(200, {"buckets": found})
        elif method == "POST" and url.path == "/api/v2/buckets":
            body = self._body()
            st.add_bucket(body["name"])
            self._send(201, st.buckets[body["name"]])
        elif method == "GET" and url.path == "/api/v2/tasks":
            found = [t for t in st.tasks.values() if q.get("name") in {None, t["name"]}]
            self._send(200, {"tasks": found})
        elif method == "POST" and url.path == "/api/v2/tasks":
            body = self._body()
            tid = f"{len(st.tasks) + 1:016x}"
            st.tasks[tid] = _task_json(tid, body["flux"], body.get("status", "active"))
            self._send(201, st.tasks[tid])
        elif (m := re.fullmatch(r"/api/v2/tasks/(\w+)", url.path)) and m.group(1) in st.tasks:
            tid = m.group(1)
            if method == "PATCH":
                body = self._body()
                cur = st.tasks[tid]
                st.tasks[tid] = _task_json(
                    tid, body.get("flux") or cur["flux"], body.get("status") or cur["status"]
                )
            self._send(200, st.tasks[tid])
        else:
            self._send(404, {"code": "not found", "message": f"{method} {url.path}"})

    def _count(self, flux: str) -> None:
        """``count()`` of one series' ``v`` field, the only query migrate sends."""
        bucket = re.search(r'from\(bucket: "([^"]+)"\)', flux)
        tags = dict(re.findall(r'r\.(hamlet|device|metric) == "([^"]+)"', flux))
        assert bucket is not None
        assert "count()" in flux
        assert set(tags) == {"hamlet", "device", "metric"}
        n = sum(
            1 for key, _ts in self.state.points.get(bucket.group(1), {})
            if key.startswith("reading,")
            and all(f"{k}={v}" in key.split(",") for k, v in tags.items())
        )  # fmt: skip
        csv = (
            "#datatype,string,long,long\r\n#group,false,false,false\r\n#default,_result,,\r\n"
            f",result,table,_value\r\n,,0,{n}\r\n\r\n"
        )
        raw = csv.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/csv; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PATCH(self) -> None:
        self._route("PATCH")


@contextmanager
def influx_standin(state: InfluxState) -> Iterator[str]:
    handler = type("Handler", (_Handler,), {"state": state})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
