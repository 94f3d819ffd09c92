"""Page weight over a real HTTP client with gzip, as a phone on 3G would pay for it.

Two figures, against a running server seeded with a hamlet:
  * first load of the farmer view: the hamlet page and the field page with its chart library
    (HTML + CSS + JS + the chart's series JSON), compressed bytes on the wire incl. headers;
  * an hour with the page left open: the refresh schedule (every ``refresh_s``) asking for the
    live part with the ETag it holds, while a reading arrives every ``data_every_s``.
Baseline in the same run: the same hour without ETag/304 and without gzip (what the old board
paid), so the ratio shows what revalidation and compression save. Also the installer page's
first load for an installer, before and after the gateway sends a full status report (three
sources, ten dead letters of 2 KiB each: hamlet/status_report.py), and the ratio.

    .venv/bin/python -m bench.page_weight            # starts a seeded server itself
    .venv/bin/python -m bench.page_weight --quick    # 10 minutes instead of an hour
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import httpx

if TYPE_CHECKING:
    from tests.support.procs import ServerProcess


def wire_bytes(r: httpx.Response) -> int:
    """Bytes the response cost on the wire: status line, headers and (compressed) body."""
    head = len(f"HTTP/1.1 {r.status_code} {r.reason_phrase}\r\n")
    head += sum(len(k) + len(v) + 4 for k, v in r.headers.raw) + 2
    return head + r.num_bytes_downloaded


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.series: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.urls.append(str(a["src"]))
        if tag == "link" and a.get("rel") == "stylesheet" and a.get("href"):
            self.urls.append(str(a["href"]))
        if a.get("data-series"):
            self.series.append(str(a["data-series"]))


@dataclass(frozen=True)
class Load:
    url: str
    total: int
    parts: dict[str, int]


def first_load(client: httpx.Client, path: str) -> Load:
    """Everything a browser fetches to show ``path`` the first time (empty cache)."""
    parts: dict[str, int] = {}
    r = client.get(path)
    r.raise_for_status()
    parts[path] = wire_bytes(r)
    p = _Assets()
    p.feed(r.text)
    for u in p.urls + p.series:
        a = client.get(urljoin(path, u))
        a.raise_for_status()
        parts[u] = wire_bytes(a)
    return Load(path, sum(parts.values()), parts)


def hour_open(
    client: httpx.Client,
    path: str,
    *,
    refresh_s: float,
    seconds: float,
    data_every_s: float,
    new_data: Callable[[], None],
    etag: bool = True,
) -> tuple[int, int, int]:
    """Bytes for the live part asked every ``refresh_s`` over ``seconds``; returns
    (bytes, requests, 304s). ``new_data`` posts a reading (every ``data_every_s``)."""
    live = re.sub(r"\?$", "", path) + ("&" if "?" in path else "?") + "partial=1"
    held: str | None = None
    total = n304 = 0
    steps = int(seconds // refresh_s)
    every = max(1, round(data_every_s / refresh_s))
    for i in range(steps):
        if i and i % every == 0:
            new_data()
        headers = {"If-None-Match": held} if (etag and held) else {}
        r = client.get(live, headers=headers)
        total += wire_bytes(r)
        if r.status_code == 304:
            n304 += 1
        else:
            r.raise_for_status()
            held = r.headers.get("etag")
    return total, steps, n304


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="10 minutes of refresh, not an hour")
    ap.add_argument("--refresh-s", type=float, default=30.0, help="the pages' refresh_s")
    ap.add_argument("--data-every-s", type=float, default=300.0, help="a reading this often")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.server.helpers import batch, block, now_ms, post
    from tests.support.pages_world import GATEWAY, pages_world

    seconds = 600.0 if args.quick else 3600.0
    with tempfile.TemporaryDirectory() as tmp, pages_world(Path(tmp)) as w:
        gz = httpx.Client(base_url=w.server.url, headers={"Accept-Encoding": "gzip"}, timeout=10)
        plain = httpx.Client(base_url=w.server.url, headers={"Accept-Encoding": "identity"})
        seq = iter(range(10_000_000, 20_000_000))

        def reading() -> None:
            b = block("sal-1", "salinity", [next(seq)], t0=now_ms(), values=[0.71])
            post(gz, w.token, batch(GATEWAY, [b])).raise_for_status()

        for path in ("/h/dinh-phuoc", "/h/dinh-phuoc/d/sal-1?range=24h"):
            ld = first_load(gz, path)
            raw = first_load(plain, path)
            print(
                f"first load {path}: {ld.total / 1024:.1f} KB gzip "
                f"({raw.total / 1024:.1f} KB uncompressed, ratio {raw.total / ld.total:.1f}x)"
            )
            for k, v in sorted(ld.parts.items(), key=lambda kv: -kv[1]):
                print(f"    {v:>7} B  {k}")
        _installer_weight(w.server, w.token, gz)
        kw: dict[str, float] = {
            "refresh_s": args.refresh_s,
            "seconds": seconds,
            "data_every_s": args.data_every_s,
        }
        got, n, n304 = hour_open(gz, "/h/dinh-phuoc", new_data=reading, **kw)
        base, _, _ = hour_open(plain, "/h/dinh-phuoc", new_data=reading, etag=False, **kw)
        mins = seconds / 60
        print(f"open {mins:.0f} min, refresh every {args.refresh_s:g} s, a reading every "
              f"{args.data_every_s:g} s: {got / 1024:.1f} KB in {n} requests ({n304} × 304); "
              f"without ETag and gzip {base / 1024:.1f} KB (ratio {base / got:.1f}x)")  # fmt: skip
        gz.close()
        plain.close()
    return 0


def _installer_weight(server: ServerProcess, token: str, gz: httpx.Client) -> None:
    """The installer page for an installer, without and then with a full status report."""
    from gateway.control_protocol import DeadLetterInfo, DeadLetters, Health, SourceInfo
    from gateway.sources.base import SourceStatus
    from gateway.status_report import build_report
    from hamlet.contract import EventRecord
    from hamlet.status_report import REPORT_ATTR, STATUS_EVENT
    from tests.server.helpers import batch, now_ms, post
    from tests.support.pages_world import GATEWAY
    from tests.support.procs import run_hamlet

    pw = "bench-installer-pw"
    run_hamlet(
        "server", "add-user", "bench-installer", "--role", "installer", "--password-env", "PW",
        "--data-dir", str(server.data_dir), env={"PW": pw},
    )  # fmt: skip
    with httpx.Client(base_url=server.url, headers={"Accept-Encoding": "gzip"}) as me:
        me.post("/login", data={"username": "bench-installer", "password": pw})
        before = first_load(me, "/installer").total
        t = now_ms()
        health = Health(components={"committer": "running"}, failures={}, previous_failure=None,
                        components_failed=0, sources_failed=1, previous_run_failed=0)  # fmt: skip
        sources = [
            SourceInfo(name=n, kind=k, status=st, since=t / 1000, last_reading_at=t / 1000,
                       last_error=err, counters={}, devices={})
            for n, k, st, err in (
                ("radio", "serial", SourceStatus.RECONNECTING,
                 "cannot open /dev/serial/by-id/usb-FTDI-if00-port0: [Errno 2] No such file"),
                ("rs485", "modbus", SourceStatus.RUNNING, None),
                ("lan-mqtt", "mqtt", SourceStatus.RUNNING, None),
            )
        ]  # fmt: skip
        letters = [
            DeadLetterInfo(at=t / 1000, source="lan-mqtt", reason=f"bad_json: case {i}",
                           raw=f"hamlet/kiosk-{i}/event " + f"{i:x}" * 1024)
            for i in range(10)
        ]  # fmt: skip
        text = build_report(t, sources, health, DeadLetters(count=10, by_reason={}, recent=letters))
        ev = EventRecord(seq=9_000_001, device=GATEWAY, name=STATUS_EVENT, t=t,
                         attrs={REPORT_ATTR: text})  # fmt: skip
        post(gz, token, batch(GATEWAY, events=[ev])).raise_for_status()
        after = first_load(me, "/installer").total
    print(
        f"first load /installer (installer, gzip): {before / 1024:.1f} KB without a status "
        f"report, {after / 1024:.1f} KB with a full one ({len(text.encode())} B of report; "
        f"ratio {after / before:.2f}x)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
