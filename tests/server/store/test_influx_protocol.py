"""InfluxDB backend without a live InfluxDB: the line protocol and Flux we generate, and the
write path against a minimal HTTP stand-in for InfluxDB's /api/v2/write (the boundary we
cannot run here), proving a gateway is acked only after InfluxDB said yes."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.classify import PointRow
from server.config import ServerConfig
from server.models import Resolution
from server.store.base import StoreError
from server.store.influx import (
    InfluxStore,
    downsample_task_flux,
    escape_tag,
    flux_string,
    line,
    point_ns,
    series_flux,
)
from tests.server.helpers import batch, block, now_ms
from tests.support.stores import registered_gateway


def _p(**kw: object) -> PointRow:
    base: dict[str, object] = {
        "device": "sal-1",
        "metric": "salinity",
        "kind": "reading",
        "seq": 7,
        "t": 1_764_309_540_000,
        "v": 0.85,
        "q": 0,
        "vmin": None,
        "vmax": None,
        "n": None,
    }
    base.update(kw)
    return PointRow(**base)  # type: ignore[arg-type]


def test_line_protocol_shape() -> None:
    assert line("dinh-phuoc", "gw-1", _p()) == (
        "reading,device=sal-1,gateway=gw-1,hamlet=dinh-phuoc,metric=salinity "
        "v=0.85,q=0i,seq=7i 1764309540000000007"
    )
    agg = line("h", "g", _p(vmin=0.5, vmax=0.9, n=30, v=0.7))
    assert " v=0.7,q=0i,seq=7i,vmin=0.5,vmax=0.9,n=30i " in agg


def test_tag_escaping_spaces_commas_equals_unicode() -> None:
    ln = line("Ấp Định Phước, Cần Thơ", "gw=1", _p(device="cảm biến\\1"))
    assert "hamlet=Ấp\\ Định\\ Phước\\,\\ Cần\\ Thơ" in ln
    assert "gateway=gw\\=1" in ln
    assert "device=cảm\\ biến\\\\1" in ln


def _unescape_tag(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s) and s[i + 1] in "\\, =":
            out.append(s[i + 1])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _split_unescaped(s: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            cur.append(s[i : i + 2])
            i += 2
            continue
        if s[i] == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(s[i])
        i += 1
    parts.append("".join(cur))
    return parts


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30))
def test_any_tag_value_survives_a_round_trip(value: str) -> None:
    ln = line(value, "gw", _p())
    key_part = _split_unescaped(ln, " ")[0]
    tags = dict(
        t.split("=", 1)
        for t in [
            "=".join(_split_unescaped(kv, "=")[:1]) + "=" + "=".join(_split_unescaped(kv, "=")[1:])
            for kv in _split_unescaped(key_part, ",")[1:]
        ]
    )
    assert _unescape_tag(tags["hamlet"]) == value
    assert escape_tag(value).count(" ") == escape_tag(value).count("\\ ")


def test_same_ms_points_get_distinct_ns_timestamps() -> None:
    assert point_ns(1000, 1) != point_ns(1000, 2)
    assert point_ns(1000, 5) // 1_000_000 == 1000


def test_non_finite_values_cannot_reach_line_protocol() -> None:
    with pytest.raises(ValueError, match="cannot carry"):
        line("h", "g", _p(v=float("nan")))


def test_flux_strings_cannot_break_out_or_interpolate() -> None:
    assert flux_string('a"b') == '"a\\"b"'
    assert flux_string("${secret}") == '"\\${secret}"'
    assert flux_string("x\\") == '"x\\\\"'
    q = series_flux(
        "hamlet",
        "hamlet_hourly",
        hamlet='h") |> drop() //',
        device="d",
        metric="salinity",
        start=0,
        end=10,
        resolution=Resolution.RAW,
        limit=5,
    )
    assert 'r.hamlet == "h\\") |> drop() //"' in q
    assert "range(start: time(v: 0), stop: time(v: 10000000))" in q
    assert "limit(n: 6)" in q


def test_rollup_flux_and_task_text() -> None:
    q = series_flux(
        "b",
        "b_hourly",
        hamlet="h",
        device="d",
        metric="m",
        start=0,
        end=86_400_000,
        resolution=Resolution.DAY,
        limit=10,
    )
    assert 'from(bucket: "b_hourly")' in q
    assert "window(every: 1d)" in q
    task = downsample_task_flux("hamlet", "hamlet_hourly", "org")
    assert 'option task = {name: "hamlet-hourly", every: 1h' in task
    assert 'to(bucket: "hamlet_hourly", org: "org")' in task


class _FakeInflux(ThreadingHTTPServer):
    """Answers InfluxDB 2's /ping and /api/v2/write like the real one; records the lines."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lines: list[str] = []
        self.fail_next = 0


class _Handler(BaseHTTPRequestHandler):
    server: _FakeInflux

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(204)
        self.end_headers()

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        if self.server.fail_next:
            self.server.fail_next -= 1
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"code":"internal error","message":"disk full"}')
            return
        assert self.path.startswith("/api/v2/write"), self.path
        assert "precision=ns" in self.path
        self.server.lines.extend(raw.decode().splitlines())
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def fake_influx() -> Iterator[_FakeInflux]:
    srv = _FakeInflux()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        t.join()


async def test_ack_only_after_influx_confirms(fake_influx: _FakeInflux, tmp_path: Path) -> None:
    host, port = fake_influx.server_address[:2]
    cfg = ServerConfig.model_validate(
        {
            "environment": "development",
            "data_dir": str(tmp_path),
            "store": {
                "backend": "influxdb",
                "influxdb": {
                    "url": f"http://{host}:{port}",
                    "token": "t",
                    "org": "o",
                    "points_per_request": 3,
                },
            },
        }
    )
    async with InfluxStore(cfg) as st:
        await st.ping()
        gw = await registered_gateway(st.db, "gw-1", "h")
        b = batch("gw-1", [block("d", "salinity", [1, 2, 3, 4, 5])])
        fake_influx.fail_next = 1
        with pytest.raises(StoreError, match="InfluxDB write failed"):
            await st.ingest(gw, b, now_ms())
        (a,) = await st.accounting([gw])
        assert (a.received, a.highest_seq) == (0, 0)  # nothing recorded as received
        res = await st.ingest(gw, b, now_ms())
        assert res.accepted == 5
        assert len(fake_influx.lines) == 5  # sent in requests of at most 3 lines
        again = await st.ingest(gw, b, now_ms())
        assert (again.accepted, again.duplicates) == (0, 5)
        assert len(fake_influx.lines) == 5  # duplicates never written
        (v,) = await st.latest(["h"])
        assert v.metric == "salinity"
