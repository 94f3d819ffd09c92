"""The server's side of the gateway status report: the parser (any input gives a report or a
specific reason, never another error) and ingest through real HTTP (a hostile or oversized
report is rejected alone, with its reason; the good records around it are stored; the
newest report by seq is the one the installer page shows)."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hamlet.contract import EventRecord
from hamlet.status_report import (
    MAX_REPORT_BYTES,
    REPORT_ATTR,
    STATUS_EVENT,
    DeviceReport,
    GatewayReport,
    ReportError,
    SourceReport,
    parse_attrs,
    parse_report,
)
from tests.server.helpers import batch, block, now_ms, post, status_event
from tests.support.procs import ServerProcess, run_hamlet

GW = "gw-status"
GOOD = GatewayReport(
    at=1_764_309_600_000,
    sources=[
        SourceReport(name="radio", kind="serial", state="reconnecting", since=1_764_309_500_000,
                     last_error="cannot open /dev/ttyUSB7: [Errno 2] No such file or directory"),
        SourceReport(name="mqtt", kind="mqtt", state="running", since=1_764_309_500_000,
                     last_reading_at=1_764_309_590_000),
        SourceReport(name="rs485", kind="modbus", state="running", since=1_764_309_500_000,
                     devices_down=[DeviceReport(device="soil-2", state="dead",
                                                error="timeout: no answer within 0.5 s")]),
    ],
).encode()  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda kids: (
        st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=15), kids, max_size=6)
    ),
    max_leaves=30,
)


def _mutations() -> st.SearchStrategy[str]:
    """Valid reports with one field replaced by any JSON value, or any text at all."""
    base = json.loads(GOOD)

    def put(path: tuple[str | int, ...], value: object) -> str:
        doc = json.loads(GOOD)
        node = doc
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
        return json.dumps(doc)

    paths = [("v",), ("at",), ("sources",), ("sources", 0, "state"), ("sources", 0, "since"),
             ("sources", 1, "name"), ("dead",), ("extra",)]  # fmt: skip
    assert all(isinstance(base, dict) for _ in paths)
    return st.one_of(
        st.tuples(st.sampled_from(paths), json_values).map(lambda pv: put(*pv)),
        st.text(max_size=200),
        json_values.map(json.dumps),
    )


def _outcome(text: str) -> GatewayReport | ReportError:
    try:
        return parse_report(text)
    except ReportError as err:
        return err


@settings(max_examples=300, deadline=None)
@given(text=_mutations())
def test_parser_gives_a_report_or_a_reason(text: str) -> None:
    got = _outcome(text)  # anything else raised fails the test
    if isinstance(got, ReportError):
        assert str(got).startswith("status_report: ")
        assert len(str(got)) <= 300
    else:
        assert parse_report(got.encode()) == got  # what is stored parses again


@settings(max_examples=200, deadline=None)
@given(
    attrs=st.dictionaries(
        st.text(max_size=10), st.one_of(st.integers(), st.text(max_size=30)), max_size=4
    )
)
def test_attrs_other_than_one_report_text_are_refused(attrs: dict[str, object]) -> None:
    # One text attribute 'report' is the report itself: the parser test covers that.
    assume(not (set(attrs) == {REPORT_ATTR} and isinstance(attrs[REPORT_ATTR], str)))
    with pytest.raises(ReportError, match=r"^status_report: "):
        parse_attrs(attrs)


def test_oversized_report_is_refused_by_size_first() -> None:
    huge = GOOD[:-1] + ',"x":"' + "a" * MAX_REPORT_BYTES + '"}'
    with pytest.raises(ReportError, match="bytes; at most"):
        parse_report(huge)


def _status(seq: int, text: str, t: int) -> EventRecord:
    return status_event(GW, seq, text, t)


def test_hostile_reports_are_rejected_alone_and_the_newest_is_kept(server: ServerProcess) -> None:
    token = server.add_gateway(GW)
    t = now_ms()
    old = SourceReport(name="old-src", kind="modbus", state="failed", since=t)
    older = GatewayReport(at=t, sources=[old]).encode()
    hostile = GOOD.replace('"reconnecting"', '"<script>alert(1)</script>"')
    b = batch(
        GW,
        series=[block("wl-9", "water_level", [1, 2, 3])],
        events=[
            _status(10, GOOD, t),
            _status(11, hostile, t),
            _status(12, "{" * 100_000, t),  # deep, oversized, not JSON
            _status(13, "x" * (MAX_REPORT_BYTES + 1), t),
            EventRecord(
                seq=14, device=GW, name=STATUS_EVENT, t=t, attrs={REPORT_ATTR: GOOD, "more": 1}
            ),
            _status(5, older, t),  # an older report arriving late must not replace seq 10
            EventRecord(seq=15, device="kiosk-9", name="rating", t=t, attrs={"score": 3}),
        ],
    )
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = post(c, token, b)
        assert r.status_code == 200, r.text
        res = r.json()
        assert res["accepted"] == 3 + 2 + 1  # readings, the two valid reports, the rating
        reasons = {x["seq"]: x["reason"] for x in res["rejected"]}
        assert sorted(reasons) == [11, 12, 13, 14]
        assert "sources.0.state" in reasons[11]
        assert "bytes; at most" in reasons[12]
        assert "bytes; at most" in reasons[13]
        assert "one text attribute" in reasons[14]
        # Re-sent (an uplink retry): duplicates, nothing changes.
        again = post(c, token, b).json()
        assert again["duplicates"] == 6 + 4
        page = c.get("/installer?lang=en").text
        # The same report by API, for scripts and a commune's own monitoring.
        api = c.get(f"/api/v1/gateways/{GW}/status")
        assert api.status_code == 200, api.text
        assert api.json()["seq"] == 10
        assert [x["name"] for x in api.json()["report"]["sources"]] == ["radio", "mqtt", "rs485"]
        assert c.get("/api/v1/gateways/gw-nobody/status").status_code == 404
        events = c.get(
            "/api/v1/hamlets/dinh-phuoc/events", params={"start": t - 60_000, "end": t + 60_000}
        )
        assert events.status_code == 200, events.text
        assert [e["name"] for e in events.json()] == ["rating"]  # reports are not events
    gw = page[page.index(f'data-gateway="{GW}"') :]
    assert 'data-source="radio" data-state="reconnecting"' in gw
    assert "Reconnecting" in gw
    assert "No such file or directory" in gw
    assert "hamlet gateway doctor" in gw  # what to do next
    assert "old-src" not in gw
    # A bus that runs while one sensor behind it is silent.
    assert 'data-device-down="soil-2"' in gw
    assert "gone silent" in gw
    assert "The Modbus device does not answer" in gw
    assert "<script>alert" not in page


def test_dead_letters_show_only_to_installers(server: ServerProcess) -> None:
    token = server.add_gateway(GW)
    run_hamlet(
        "server", "add-user", "kythuat", "--role", "installer", "--password-env", "PW",
        "--data-dir", str(server.data_dir), env={"PW": "lắp-đặt-2026-xyz"},
    )  # fmt: skip
    t = now_ms()
    report = json.loads(GOOD)
    report["dead"] = {
        "stored": 1,
        "recent": [{"at": t, "source": "mqtt", "topic": "hamlet/k1/event",
                    "reason": "bad_json: Expecting value", "excerpt": "<img src=x onerror=1>",
                    "size": 21}],
    }  # fmt: skip
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert (
            post(c, token, batch(GW, events=[_status(1, json.dumps(report), t)])).json()["accepted"]
            == 1
        )
        anonymous = c.get("/installer?lang=en").text
        assert "bad_json" not in anonymous
        assert "Log in as an installer" in anonymous
        dead = c.get(f"/api/v1/gateways/{GW}/status").json()["report"]["dead"]
        assert (dead["stored"], dead["recent"]) == (1, [])  # counted, contents withheld
        c.post("/login", data={"username": "kythuat", "password": "lắp-đặt-2026-xyz"})
        page = c.get("/installer?lang=en").text
        dead = c.get(f"/api/v1/gateways/{GW}/status").json()["report"]["dead"]
        assert [x["reason"] for x in dead["recent"]] == ["bad_json: Expecting value"]
        assert dead["recent"][0]["excerpt"] == "<img src=x onerror=1>"  # JSON, not HTML
    assert "bad_json: Expecting value" in page
    assert "hamlet/k1/event" in page
    assert "&lt;img src=x onerror=1&gt;" in page
    assert "<img src=x" not in page
