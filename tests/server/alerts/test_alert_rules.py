"""Rules as data, the threshold lookup, messages, the time parser, and crash catch-up."""

from __future__ import annotations

import asyncio
import contextlib
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hamlet.alerteval import silence_start, silence_value_ms
from hamlet.alertmessages import duration, number
from hamlet.alertrules import AlertSettings, RuleKind, Subject, resolve
from hamlet.contract import EventRecord, IngestResult, UplinkBatch
from hamlet.vncalendar import ServiceHours
from server.alerts.engine import AlertEngine, AlertEngineDown, work_of
from server.config import ServerConfig
from server.models import DeviceIn
from server.registry import GatewayRow
from server.store.sqlite import SqliteStore
from server.timeparam import TimeParamError, parse_time
from tests.conftest import REPO
from tests.server.alerts.alerts_env import HAMLET, MIN, Clock, alert_env, vn

DOCS = REPO / "docs" / "server.md"


def _docs_alerts_toml() -> str:
    text = DOCS.read_text()
    start = text.index("```toml\n[alerts]") + len("```toml\n")
    return text[start : text.index("```", start)]


def test_the_documented_override_table_means_what_the_docs_say() -> None:
    cfg = ServerConfig.model_validate(
        {"environment": "development", **tomllib.loads(_docs_alerts_toml())}
    )
    a = cfg.alerts
    rice = Subject(HAMLET, "sal-9", "salinity", crop="rice")
    assert resolve(a, "salinity.danger", rice).threshold == 3.0  # override: crop
    assert resolve(a, "salinity.watch", rice).threshold == 2.0  # default for rice
    durian = Subject(HAMLET, "sal-1", "salinity", crop="durian")
    assert resolve(a, "salinity.danger", durian).threshold == 0.5
    other = Subject("dinh-hoa-a", "sal-2", "salinity", crop="durian")
    assert resolve(a, "salinity.watch", other).min_duration_s == 1800  # family, hamlet
    assert resolve(a, "salinity.watch", durian).min_duration_s == 600
    assert not resolve(a, "sensor.stuck", Subject(HAMLET, "ph-2", "soil_ph")).enabled
    assert resolve(a, "sensor.stuck", Subject(HAMLET, "ph-3", "soil_ph")).enabled
    station = Subject(HAMLET, "level-1", "water_level")
    assert [resolve(a, f"water_level.{x}", station).threshold for x in ("i", "ii", "iii")] == [
        1.8,
        1.9,
        2.0,
    ]
    # Another station of the hamlet keeps the default (Cần Thơ) levels.
    assert resolve(a, "water_level.i", Subject(HAMLET, "level-2", "water_level")).threshold == 1.7
    assert resolve(a, "gateway.silent", Subject(HAMLET, "gw-1")).min_duration_s == 1800


def test_the_most_specific_override_wins_and_later_rows_win_ties() -> None:
    a = AlertSettings.model_validate(
        {
            "overrides": [
                {"rule": "salinity.danger", "device": "d1", "threshold": 0.9},
                {"rule": "salinity.danger", "hamlet": "h", "threshold": 0.7},
                {"rule": "salinity.danger", "hamlet": "h", "threshold": 0.8},
                {"rule": "salinity.danger", "commune": "c", "crop": "durian", "threshold": 0.6},
            ]
        }
    )
    s = Subject("h", "d2", "salinity", commune="c", crop="durian")
    assert resolve(a, "salinity.danger", s).threshold == 0.8  # hamlet (4) > commune+crop (3)
    assert resolve(a, "salinity.danger", Subject("h", "d1", "salinity")).threshold == 0.9
    assert (
        resolve(a, "salinity.danger", Subject("x", "d", "salinity", commune="c")).threshold == 1.0
    )


@pytest.mark.parametrize(
    ("v", "lang", "decimals", "text"),
    [
        (0.7, "vi", None, "0,7"),
        (0.7, "en", None, "0.7"),
        (1234.5, "vi", None, "1.234,5"),
        (1234.5, "en", None, "1,234.5"),
        (-0.15, "vi", 2, "\u22120,15"),
        (2.0, "vi", 2, "2,00"),
        (-0.0001, "vi", None, "0"),
    ],
)
def test_vietnamese_number_format(v: float, lang: str, decimals: int | None, text: str) -> None:
    assert number(v, lang, decimals) == text  # type: ignore[arg-type]


def test_durations_in_words() -> None:
    assert duration(90 * MIN, "vi") == "90 phút"
    assert duration(210 * MIN, "vi") == "3 giờ 30 phút"
    assert duration(180 * MIN, "en") == "3 h"
    assert duration(2 * 24 * 60 * MIN, "vi") == "2 ngày"
    assert duration((2 * 24 + 5) * 60 * MIN, "en") == "2 d 5 h"


def test_times_people_type() -> None:
    assert parse_time("1764309600000") == 1764309600000
    assert parse_time("2026-11-28") == vn(2026, 11, 28)
    assert parse_time("2026-11-28T10:00") == vn(2026, 11, 28, 10, 0)
    assert parse_time("2026-11-28T03:00Z") == vn(2026, 11, 28, 10, 0)
    assert parse_time("2026-11-28T10:00+07:00") == vn(2026, 11, 28, 10, 0)
    with pytest.raises(TimeParamError, match="ISO 8601"):
        parse_time("yesterday")


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
def test_iso_and_ms_agree(dt: datetime) -> None:
    aware = dt.replace(tzinfo=UTC, microsecond=0)
    ms = int(aware.timestamp() * 1000)
    assert parse_time(aware.isoformat()) == ms
    assert parse_time(str(ms)) == ms


@given(st.text(max_size=40))
def test_any_text_is_a_time_or_a_clear_error(text: str) -> None:
    outcome: object
    try:
        outcome = parse_time(text)
    except TimeParamError as err:
        outcome = str(err)
    assert isinstance(outcome, int) or "ISO 8601" in outcome or "plausible" in outcome


def test_a_last_will_is_not_a_sign_of_life() -> None:
    gw = GatewayRow(1, "gw-1", HAMLET, False, 0)
    b = UplinkBatch(
        gateway="gw-1",
        sent_at=0,
        events=[
            EventRecord(seq=1, device="kiosk-1", name="status", t=5, attrs={"state": "offline"}),
            EventRecord(seq=2, device="kiosk-1", name="status", t=6, attrs={"state": "online"}),
            EventRecord(seq=3, device="kiosk-1", name="rating", t=7, q=2),  # clock not synced
        ],
    )
    assert work_of(gw, b, IngestResult(), 0).life == {"kiosk-1": [6]}


async def test_a_batch_stored_but_not_evaluated_before_a_crash_is_caught_up(
    tmp_path: Path,
) -> None:
    t0 = vn(2026, 3, 4, 8, 0)
    async with alert_env(tmp_path, now=t0 + 5 * MIN) as env:
        await env.device(DeviceIn(id="sal-1", crop="durian", expected_interval_s=60))
        await env.send([env.block("sal-1", "salinity", [(t0 + m * MIN, 0.2) for m in range(5)])])
        await env.engine.flush()
        # Stored, then the process "dies" before the engine sees it: no submit.
        late = env.block("sal-1", "salinity", [(t0 + m * MIN, 0.9) for m in range(5, 30)])
        b = UplinkBatch(gateway="gw-1", sent_at=t0, series=[late])
        assert not (await env.store.ingest(env.gw, b, t0 + 30 * MIN)).rejected
        assert [r.rule for r in await env.alerts()] == []
        config = env.store.config
    # A new process: the engine finds series whose stored data is newer than evaluated.
    async with (
        SqliteStore(config) as store,
        AlertEngine(AlertSettings(), store, clock=Clock(t0 + 30 * MIN)) as engine,
    ):
        await engine.flush()
        rows = await store.db.read(
            lambda c: c.execute(
                "SELECT rule, start_ms FROM alerts WHERE metric = 'salinity' ORDER BY rule"
            ).fetchall()
        )
    assert rows == [("salinity.danger", t0 + 5 * MIN), ("salinity.watch", t0 + 5 * MIN)]


def test_unregistered_fields_are_judged_as_most_crops() -> None:
    s = Subject(HAMLET, "sal-x", "salinity")
    assert resolve(AlertSettings(), "salinity.watch", s).threshold == 0.7
    assert resolve(AlertSettings(), "salinity.danger", s).threshold == 1.0


def test_service_time_skips_nights_weekends_and_public_holidays() -> None:
    hours = ServiceHours.parse(None)
    # Friday 16:50 to Monday 07:20: 10 min on Friday + 20 min on Monday.
    fri, mon = vn(2026, 3, 6, 16, 50), vn(2026, 3, 9, 7, 20)
    assert silence_value_ms(RuleKind.DOWN, fri, mon, hours) == 30 * MIN
    # National Day, 1-2 September 2026 (Tue-Wed): Monday 17:00 to Thursday 07:05 is 5 min.
    assert silence_value_ms(RuleKind.DOWN, vn(2026, 8, 31, 17), vn(2026, 9, 3, 7, 5), hours) == (
        5 * MIN
    )
    assert silence_start(RuleKind.DOWN, vn(2026, 8, 31, 17), vn(2026, 9, 3, 7, 5), hours) == vn(
        2026, 9, 3, 7, 0
    )


async def test_a_dead_evaluator_never_blocks_ingest(tmp_path: Path) -> None:
    t0 = vn(2026, 3, 4, 8, 0)
    async with alert_env(tmp_path, now=t0 + 200 * MIN) as env:
        evaluator = env.engine._tasks[0]  # what a bug in the evaluator would leave behind
        evaluator.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await evaluator
        for m in range(100):  # more batches than the queue holds (64)
            await asyncio.wait_for(
                env.send([env.block("sal-1", "salinity", [(t0 + m * MIN, 0.9)])]), timeout=10
            )
        with pytest.raises(AlertEngineDown):
            await env.engine.flush()
        assert env.engine.failures == 100


async def test_the_servers_own_downtime_is_no_gateways_silence(tmp_path: Path) -> None:
    t0 = vn(2026, 3, 4, 8, 0)
    async with alert_env(tmp_path, now=t0) as env:
        await env.send([env.block("gw-1", "gw.uptime_s", [(t0, 1.0)])])
        assert await env.alerts() == []
        config = env.store.config
    # The server was stopped for a day; gateways kept trying. It starts again:
    back = t0 + 24 * 60 * MIN
    clock = Clock(back + 10 * MIN)
    async with (
        SqliteStore(config) as store,
        AlertEngine(AlertSettings(), store, clock=clock) as engine,
    ):
        clock.now = back + 24 * MIN  # 14 min after the restart: nobody is silent yet
        await engine.flush()
        assert await store.db.read(lambda c: c.execute("SELECT * FROM alerts").fetchall()) == []
        clock.now = back + 26 * MIN  # 16 min after the restart: the gateway is
        await engine.flush()
        rows = await store.db.read(
            lambda c: c.execute("SELECT rule, start_ms, end_ms FROM alerts").fetchall()
        )
    assert rows == [("gateway.silent", back + 10 * MIN, None)]


def test_indicator_thresholds_drive_the_alerts_too() -> None:
    """One setting under [indicators] changes the report card and the alert alike."""
    from hamlet.alertrules import Subject, resolve
    from server.config import ServerConfig

    cfg = ServerConfig.model_validate(
        {
            "environment": "development",
            "indicators": {
                "salinity": [{"crop": "rice", "danger_ppt": 3.0}],
                "water_alarms": [
                    {"hamlet": "dinh-phuoc", "level_i": 1.5, "level_ii": 1.6, "level_iii": 1.7},
                    {"commune": "dinh-mon", "level_i": 1.1, "level_ii": 1.2, "level_iii": 1.3},
                ],
            },
            "alerts": {"overrides": [{"rule": "salinity.danger", "device": "s9", "threshold": 9}]},
        }
    )
    eff = cfg.effective_alerts()
    rice = Subject(hamlet="h", device="s1", metric="salinity", crop="rice")
    assert resolve(eff, "salinity.danger", rice).threshold == 3.0
    durian = Subject(hamlet="h", device="s2", metric="salinity", crop="durian")
    assert resolve(eff, "salinity.danger", durian).threshold == 0.5
    own = Subject(hamlet="h", device="s9", metric="salinity", crop="rice")
    assert resolve(eff, "salinity.danger", own).threshold == 9
    lvl = Subject(hamlet="dinh-phuoc", device="w1", metric="water_level")
    assert resolve(eff, "water_level.iii", lvl).threshold == 1.7
    other = Subject(hamlet="x", device="w2", metric="water_level", commune="dinh-mon")
    assert resolve(eff, "water_level.ii", other).threshold == 1.2
