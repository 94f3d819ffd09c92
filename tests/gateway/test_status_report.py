"""The gateway's status report (gateway/status_report.py): bounded for any number of sources
and dead letters, bytes escaped, config secrets never carried, and readable by the server's
parser (hamlet/status_report.py) whatever went in."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import Gateway
from gateway.config import GatewayConfig
from gateway.control_protocol import DeadLetterInfo, DeadLetters, Health, SourceInfo
from gateway.sources.base import SourceStatus
from gateway.sources.modbus.config import ModbusDeviceConfig, ModbusSourceConfig
from gateway.sources.modbus.source import ModbusSource
from gateway.sources.serial.config import SerialSourceConfig
from gateway.sources.serial.source import SerialSource
from gateway.status_report import (
    MASK,
    StatusReportConfig,
    build_report,
    config_secrets,
    escape,
)
from hamlet.status_report import (
    MAX_EXCERPT,
    MAX_LETTERS,
    MAX_REPORT_BYTES,
    REPORT_ATTR,
    STATUS_EVENT,
    GatewayReport,
    parse_report,
)
from tests.gateway.conftest import gateway_config
from tests.gateway.sources.modbus_bus import rtu_slaves
from tests.support.pty import PtyPair

TOKEN = "tok-3f9a7c1e5b2d"
PASSWORD = "mqtt-pass-9x8y7z"
# Anything a device, a file name or an exception message may hold: NULs, lone surrogates,
# right-to-left overrides, 4-byte characters, markup.
hostile_text = st.lists(
    st.one_of(
        st.characters(exclude_categories=()),
        st.sampled_from(["<script>alert(1)</script>", "\x00", "\u202e", "\ud800", "𝔘", '"\\']),
    ),
    max_size=300,
).map("".join)


def _health(n: int = 0) -> Health:
    return Health(
        components={f"c{i}": "running" for i in range(n)},
        failures={},
        previous_failure=None,
        components_failed=0,
        sources_failed=0,
        previous_run_failed=0,
    )


def _source(
    name: str,
    error: str | None,
    kind: str = "serial",
    devices: dict[str, dict[str, int | float | str | None]] | None = None,
) -> SourceInfo:
    return SourceInfo(
        name=name,
        kind=kind,
        status=SourceStatus.RECONNECTING if error else SourceStatus.RUNNING,
        since=1_764_309_600.5,
        last_reading_at=None,
        last_error=error,
        counters={},
        devices=devices or {},
    )


def _letter(source: str, reason: str, raw: str) -> DeadLetterInfo:
    return DeadLetterInfo(at=1_764_309_601.25, source=source, reason=reason, raw=raw)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(hostile_text, max_size=60),
    letters=st.lists(st.tuples(hostile_text, hostile_text, hostile_text), max_size=40),
    codes=st.dictionaries(hostile_text, st.integers(0, 2**40), max_size=40),
)
def test_any_report_fits_its_bound_and_parses(
    names: list[str], letters: list[tuple[str, str, str]], codes: dict[str, int]
) -> None:
    sources = [
        _source(n, n or None, kind="mqtt" if i % 2 else "serial") for i, n in enumerate(names)
    ]
    dead = DeadLetters(
        count=len(letters),
        by_reason=codes,
        recent=[_letter(s, r, raw) for s, r, raw in letters[:MAX_LETTERS]],
    )
    text = build_report(1_764_309_602_000, sources, _health(40), dead, [TOKEN])
    assert len(text.encode()) <= MAX_REPORT_BYTES
    report = parse_report(text)
    # Nothing is dropped silently: every source is shown or counted as omitted.
    assert len(report.sources) + report.sources_omitted == len(sources)
    for d in report.dead.recent:
        assert len(d.excerpt) <= MAX_EXCERPT + 1
        assert not any(c in d.excerpt for c in "\x00\u202e\ud800")


def test_many_dead_letters_stay_within_the_bound() -> None:
    """Many sources with long errors and full dead letters: detail goes, the bound holds."""
    raw = "x" * 2048
    for n_letters in (0, 1, MAX_LETTERS, 1000):
        dead = DeadLetters(
            count=n_letters,
            by_reason={"bad_json": n_letters},
            recent=[_letter("mqtt", "bad_json: " + "y" * 500, raw) for _ in range(n_letters)],
        )
        # Every Modbus device silent, each with a long error: more than a report may name.
        silent: dict[str, dict[str, int | float | str | None]] = {
            f"soil-{j}-" + "n" * 90: {"status": "dead", "last_error": "timeout: " + "e" * 400}
            for j in range(12)
        }
        sources = [
            _source(f"s{i}", "cannot open /dev/ttyUSB9: " + "z" * 400, "modbus", silent)
            for i in range(32)
        ]
        text = build_report(1_764_309_602_000, sources, _health(5), dead)
        assert len(text.encode()) <= MAX_REPORT_BYTES, n_letters
        report = GatewayReport.model_validate_json(text)
        assert report.dead.stored == n_letters
        assert len(report.dead.recent) <= MAX_LETTERS
        assert len(report.sources) + report.sources_omitted == 32


def test_bytes_are_escaped_and_the_topic_split_off() -> None:
    raw = 'hamlet/k1/event {"note":"\x00\u202e<b>"}'
    dead = DeadLetters(
        count=1, by_reason={"bad_json": 1}, recent=[_letter("mqtt", "bad_json: x", raw)]
    )
    report = parse_report(build_report(1, [_source("mqtt", None, "mqtt")], _health(), dead))
    (d,) = report.dead.recent
    assert d.topic == "hamlet/k1/event"
    assert d.excerpt == '{"note":"\\x00\\u202e<b>"}'
    assert escape("a\tb\nc\U000e0001") == "a\\x09b\\x0ac\\U000e0001"


def test_config_secrets_never_leave_the_gateway() -> None:
    cfg = GatewayConfig.model_validate(
        {
            "id": "gw-1",
            "uplink": {"url": "https://example.vn", "token": TOKEN},
            "sources": {
                "mqtt": [
                    {"name": "mqtt", "host": "localhost", "username": "u", "password": PASSWORD}
                ]
            },
        }
    )
    secrets = config_secrets(cfg)
    assert sorted(secrets) == sorted([TOKEN, PASSWORD])
    leak = f"auth failed for mqtt://u:{PASSWORD}@broker token={TOKEN} mqtt://a:other@h"
    dead = DeadLetters(count=1, by_reason={}, recent=[_letter("serial", leak, leak)])
    text = build_report(1, [_source("mqtt", leak, "mqtt")], _health(), dead, secrets)
    assert TOKEN not in text
    assert PASSWORD not in text
    assert "other@" not in text  # a URL's password, secret or not
    assert json.loads(text)["sources"][0]["last_error"].count(MASK) == 3


async def _reports(gw: Gateway, want: int) -> list[GatewayReport]:
    """The status reports committed so far, once there are ``want`` (woken by each commit)."""
    while True:
        recs, _ = await gw.buffer.read_batch(0, None, 1000, hold_pending=False)
        found = [
            parse_report(json.loads(r.attrs or "{}")[REPORT_ATTR])
            for r in recs
            if r.metric == STATUS_EVENT and r.device == "gw-test"
        ]
        if len(found) >= want:
            return found
        gw.buffer.committed.clear()
        await asyncio.wait_for(gw.buffer.committed.wait(), 30)


async def test_a_source_change_and_a_dead_letter_each_send_a_report(tmp_path: Path) -> None:
    """Through the gateway's own pipeline and buffer: at start, when the radio's port turns
    out missing, and when a dead letter arrives; an unchanged gateway sends nothing more."""
    cfg = gateway_config(tmp_path / "gw", "http://127.0.0.1:9", "t" * 40).model_copy(
        update={"status_report": StatusReportConfig(min_gap_s=0, refresh_s=3600)}
    )
    radio = SerialSource(
        SerialSourceConfig(name="radio", port=str(tmp_path / "no-such-port"), backoff_max_s=60)
    )
    async with Gateway(cfg, sources=[radio]) as gw:
        await radio.state.wait_until(lambda s: s.status is SourceStatus.RECONNECTING, 30)
        reports = await _reports(gw, 2)
        assert reports[-1].sources[0].state == "reconnecting"
        assert "no-such-port" in (reports[-1].sources[0].last_error or "")
        settled = len(reports)
        gw.pipeline.reject("lan-mqtt", "bad_json: payload is not valid JSON", b"\x00<b>")
        reports = await _reports(gw, settled + 1)
        (letter,) = reports[-1].dead.recent
        assert letter.reason == "bad_json: payload is not valid JSON"
        assert letter.excerpt == "\\x00<b>"
        assert reports[-1].dead.stored == 1
        assert gw.status_report.sent == len(reports)
    # Exactly one report per change: the start, the radio's failure, the dead letter (the
    # radio's retries repeat the same state and error, which is no change).
    assert len(reports) == 3


async def test_an_unchanged_gateway_resends_its_report_every_refresh_s(tmp_path: Path) -> None:
    cfg = gateway_config(tmp_path / "gw", "http://127.0.0.1:9", "t" * 40).model_copy(
        update={"status_report": StatusReportConfig(min_gap_s=0, refresh_s=1)}
    )
    async with Gateway(cfg, sources=[]) as gw:
        reports = await _reports(gw, 2)
    assert reports[1].sources == reports[0].sources == []
    # Not sent again at once: the gateway's own clock says it waited refresh_s.
    assert reports[1].at - reports[0].at >= 990


async def test_a_modbus_device_that_stops_answering_is_reported(
    tmp_path: Path, pty_pair: PtyPair
) -> None:
    """The bus runs (one sensor answers), the other sensor is silent: the report names it,
    with the poll's error, though the source itself is 'running'."""
    cfg = gateway_config(tmp_path / "gw", "http://127.0.0.1:9", "t" * 40).model_copy(
        update={"status_report": StatusReportConfig(min_gap_s=0, refresh_s=3600)}
    )
    devices = [
        ModbusDeviceConfig(id=f"soil-{a}", profile="soil-3in1", address=a, interval_s=0.5,
                           timeout_s=0.15, retries=0)
        for a in (1, 2)
    ]  # fmt: skip
    bus = ModbusSource(
        ModbusSourceConfig(
            name="rs485", port=pty_pair.b, devices=devices, dead_after=2, inter_frame_delay_s=0.005
        )
    )
    async with (
        rtu_slaves(pty_pair.a, {1: [315, 272, 1500]}, dead=[2]),
        Gateway(cfg, sources=[bus]) as gw,
    ):
        await bus.state.wait_until(lambda s: s.devices["soil-2"]["status"] == "dead", 30)
        while True:
            last = (await _reports(gw, 1))[-1]
            (src,) = last.sources
            if [d.state for d in src.devices_down] == ["dead"]:
                break
            gw.buffer.committed.clear()
            await asyncio.wait_for(gw.buffer.committed.wait(), 30)
    assert src.state == "running"
    (down,) = src.devices_down
    assert down.device == "soil-2"
    assert (down.error or "").startswith("timeout")


async def test_reports_on_change_are_at_least_min_gap_s_apart(tmp_path: Path) -> None:
    """A stream of dead letters (a poison publisher) costs one report per min_gap_s, not one
    per letter: each change waits min_gap_s and takes every change since with it."""
    cfg = gateway_config(tmp_path / "gw", "http://127.0.0.1:9", "t" * 40).model_copy(
        update={"status_report": StatusReportConfig(min_gap_s=1, refresh_s=3600)}
    )
    async with Gateway(cfg, sources=[]) as gw:
        await _reports(gw, 1)
        gw.pipeline.reject("lan-mqtt", "bad_json: first", b"1")
        second = (await _reports(gw, 2))[1]
        for i in range(5):
            gw.pipeline.reject("lan-mqtt", f"bad_json: burst {i}", b"2")
        reports = await _reports(gw, 3)
    first, second, third = reports
    assert second.at - first.at >= 990
    assert third.at - second.at >= 990
    assert [d.reason for d in second.dead.recent] == ["bad_json: first"]
    assert third.dead.stored == 6  # the whole burst, in one report
