"""Properties: availability stays in [0, 1]; completeness never counts a duplicate twice;
results do not depend on the order data arrived; the time parser takes what people type."""

from __future__ import annotations

import sqlite3
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hamlet.contract import Point, RecordKind, SeriesBlock, UplinkBatch
from hamlet.vncalendar import VN_TZ, ServiceHours
from server.indicators.compute import _availability, up_minutes
from server.indicators.rollups import MINUTE_MS
from server.registry import GatewayRow
from server.store import sqlite_series as ss
from server.store.schema import open_db
from server.store.settle import settle_batch
from server.timeparam import TimeParamError, parse_time
from tests.server.indicators.scenario import vn

DAY0 = vn(2025, 3, 11)
HOURS = st.integers(min_value=DAY0 // 3_600_000 - 2, max_value=DAY0 // 3_600_000 + 26)
MASKS = st.integers(min_value=0, max_value=2**60 - 1)


@given(
    masks=st.lists(st.tuples(HOURS, MASKS), max_size=40),
    grace=st.integers(min_value=0, max_value=10),
    hours=st.sampled_from(
        ["Mon-Fri 07:00-11:30,13:30-17:00", "Mon-Sun 00:00-24:00; holidays", "Tue 09:00-09:01"]
    ),
)
def test_availability_is_a_share(masks: list[tuple[int, int]], grace: int, hours: str) -> None:
    sh = ServiceHours.parse(hours)
    by_hour: dict[int, int] = {}
    for hour, mask in masks:
        by_hour[hour] = by_hour.get(hour, 0) | mask
    days = [(1, sh.windows_ms(datetime.fromtimestamp(DAY0 / 1000, VN_TZ).date()))]
    for _, up, service in _availability(by_hour, days, grace):
        assert 0 <= up <= service
        if service:
            assert 0.0 <= up / service <= 1.0


@given(minutes=st.lists(st.integers(min_value=0, max_value=3000), max_size=200))
def test_a_minute_is_up_exactly_when_heard_or_within_grace(minutes: list[int]) -> None:
    masks: dict[int, int] = {}
    for m in minutes:
        masks[m // 60] = masks.get(m // 60, 0) | 1 << (m % 60)
    heard = set(minutes)
    for m in range(3002):
        up, total = up_minutes(masks, m * MINUTE_MS, (m + 1) * MINUTE_MS, 1)
        assert total == 1
        assert up == (m in heard or m - 1 in heard)  # heard now, or one minute of grace


# --- through the real ingest path into a real SQLite file --------------------------------

GW = GatewayRow(num=1, id="gw-p", hamlet="h", revoked=False, created_ms=0)
NOW = vn(2025, 3, 12)


def _ingest(path: Path, batches: list[UplinkBatch]) -> sqlite3.Connection:
    conn = open_db(path)
    ids = ss.SeriesIds()
    for b in batches:
        conn.execute("BEGIN IMMEDIATE")
        settle_batch(conn, ids, GW, b, NOW, day_offset_ms=7 * 3_600_000, keep_rejections=100)
        conn.execute("COMMIT")
    return conn


def _tables(conn: sqlite3.Connection) -> tuple[list[tuple[object, ...]], ...]:
    return tuple(
        conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3, 4").fetchall()
        for t in ("presence", "presence_day", "delay_day")
    )


readings = st.lists(
    st.tuples(st.integers(min_value=0, max_value=1439), st.integers(min_value=0, max_value=59)),
    min_size=1,
    max_size=120,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    times=readings,
    resend=st.lists(st.integers(min_value=0, max_value=119), max_size=30),
    order=st.randoms(use_true_random=False),
    cut=st.integers(min_value=1, max_value=40),
)
def test_duplicates_never_count_twice_and_order_does_not_matter(
    times: list[tuple[int, int]], resend: list[int], order: object, cut: int
) -> None:
    ts = [DAY0 + m * MINUTE_MS + s * 1000 for m, s in times]
    pts = [Point(seq=i + 1, t=t, v=1.0, q=0) for i, t in enumerate(ts)]  # type: ignore[arg-type]
    # Re-sent records: the same seq again (a retried batch), and the same reading under a
    # new seq (a source that delivered it twice).
    extra = [pts[i % len(pts)] for i in resend]
    again = [
        Point(seq=len(pts) + 1 + k, t=p.t, v=p.v, q=p.q)  # type: ignore[arg-type]
        for k, p in enumerate(extra)
    ]
    records = [*pts, *extra, *again]

    def batches(recs: list[Point]) -> list[UplinkBatch]:
        out = []
        for i in range(0, len(recs), cut):
            part = {p.seq: p for p in recs[i : i + cut]}.values()  # one seq once per batch
            block = SeriesBlock.from_points("sal-1", "salinity", RecordKind.READING, part)
            out.append(UplinkBatch(gateway="gw-p", sent_at=NOW, series=[block]))
        return out

    shuffled = list(records)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:
        a = _ingest(Path(tmp) / "a.sqlite3", batches(sorted(pts, key=lambda p: p.t)))
        b = _ingest(Path(tmp) / "b.sqlite3", batches(shuffled))
        distinct_minutes = len({t // MINUTE_MS for t in ts})
        data_minutes = a.execute(
            "SELECT sum(minutes) FROM presence_day WHERE device = 'sal-1' AND what = 0"
        ).fetchone()[0]
        assert data_minutes == distinct_minutes
        ta, tb = _tables(a), _tables(b)
        assert ta[0] == tb[0]  # minute masks
        assert ta[1] == tb[1]  # per-day minute counts
        a.close()
        b.close()


# --- the time parser ----------------------------------------------------------------------


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.none()
    )
)
def test_iso_times_are_vietnam_time_unless_an_offset_says_otherwise(dt: datetime) -> None:
    dt = dt.replace(microsecond=dt.microsecond // 1000 * 1000)
    local = parse_time(dt.isoformat())
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert local == (dt.replace(tzinfo=VN_TZ) - epoch) // timedelta(milliseconds=1)
    utc = parse_time(dt.replace(tzinfo=UTC).isoformat())
    assert utc - local == 7 * 3_600_000
    assert parse_time(str(local)) == local  # epoch ms still accepted
    plus2 = dt.replace(tzinfo=timezone(timedelta(hours=2))).isoformat()
    assert parse_time(plus2) == utc - 2 * 3_600_000


@given(st.text(max_size=60))
def test_time_parser_rejects_with_a_reason_never_crashes(text: str) -> None:
    try:
        ms = parse_time(text)
    except TimeParamError as err:
        reason = str(err)
        assert reason
    else:
        assert 0 <= ms <= 2**53


@given(
    st.lists(
        st.tuples(st.integers(0, 23 * 60 + 58), st.integers(1, 24 * 60)), min_size=1, max_size=4
    )
)
def test_masks_asked_for_cover_every_service_minute_and_its_grace(
    spans: list[tuple[int, int]],
) -> None:
    from server.indicators.source import hours_of_day

    def hhmm(m: int) -> str:
        return f"{m // 60:02d}:{m % 60:02d}"

    wins = [(a, min(a + ln, 24 * 60)) for a, ln in spans]
    sh = ServiceHours.parse("Mon-Sun " + ",".join(f"{hhmm(a)}-{hhmm(b)}" for a, b in wins))
    hod = hours_of_day(sh)
    for a, b in wins:
        for m in range(a, b):
            assert m // 60 in hod
            assert ((m - 1) % (24 * 60)) // 60 in hod or m % 60  # the hour before, for grace
