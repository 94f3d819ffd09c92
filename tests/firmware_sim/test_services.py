"""Kiosks, smart radios and hotspots: hours, holidays, shares, scales, determinism."""

from __future__ import annotations

import statistics
from collections import Counter

from firmware_sim.services import (
    HotspotModel,
    KioskModel,
    Outage,
    RadioModel,
    in_service_hours,
)
from firmware_sim.timebase import local, local_hour, parse_start

WEEK = 7 * 86400.0


def test_office_kiosk_works_only_in_service_hours_on_working_days() -> None:
    k = KioskModel(seed=1, key="kiosk-1", sessions_per_hour=10)
    t0 = parse_start("2026-11-23")  # Monday
    events = k.events_between(t0, t0 + 2 * WEEK)
    starts = [e for e in events if e.name == "session_start"]
    assert len(starts) > 300
    for e in starts:
        d = local(e.t)
        assert d.weekday() < 5
        assert 7.0 <= local_hour(e.t) < 11.5 or 13.5 <= local_hour(e.t) < 17.0
    assert in_service_hours(parse_start("2026-11-24T09:00"))
    assert not in_service_hours(parse_start("2026-11-24T12:30"))  # lunch
    assert not in_service_hours(parse_start("2026-09-02T09:00"))  # National Day
    assert not k.events_between(parse_start("2026-02-16"), parse_start("2026-02-21"))  # Tết


def test_dossier_channels_and_ratings_follow_configuration() -> None:
    k = KioskModel(
        seed=2,
        key="k",
        hours="always",
        sessions_per_hour=30,
        online_share=0.6,
        assisted_share=0.3,
        rating_scale=5,
        satisfied_share=0.9,
    )
    t0 = parse_start("2026-01-05")
    ev = k.events_between(t0, t0 + WEEK)
    channels = Counter(e.attrs["channel"] for e in ev if e.name == "dossier_submitted")
    n = sum(channels.values())
    assert n > 500
    assert abs(channels["online"] / n - 0.6) < 0.05
    assert abs(channels["assisted"] / n - 0.3) < 0.05
    ratings = [e.attrs for e in ev if e.name == "rating"]
    assert all(r["scale"] == 5 and 1 <= int(r["score"]) <= 5 for r in ratings)
    happy = sum(1 for r in ratings if int(r["score"]) >= 4) / len(ratings)
    assert abs(happy - 0.9) < 0.04
    lookups = [e for e in ev if e.name == "lookup"]
    assert lookups
    assert all(isinstance(e.attrs["procedure"], str) for e in lookups)
    three = KioskModel(seed=2, key="k3", hours="always", sessions_per_hour=30, rating_scale=3)
    scores = {e.attrs["score"] for e in three.events_between(t0, t0 + 86400) if e.name == "rating"}
    assert scores <= {1, 2, 3}
    assert len(scores) >= 2


def test_events_do_not_depend_on_how_time_is_sliced() -> None:
    k = KioskModel(seed=3, key="k", hours="always", sessions_per_hour=12)
    t0 = parse_start("2026-03-02T08:00")
    whole = k.events_between(t0, t0 + 6 * 3600)
    cuts = range(0, 6 * 3600, 97)
    sliced = [e for i in cuts for e in k.events_between(t0 + i, t0 + min(i + 97, 6 * 3600))]
    assert whole == sliced
    # Every session that starts also ends, after it started.
    starts = {e.attrs["session"]: e.t for e in whole if e.name == "session_start"}
    ends = {e.attrs["session"]: e.t for e in whole if e.name == "session_end"}
    common = starts.keys() & ends.keys()
    assert len(common) > 30
    assert all(ends[s] > starts[s] for s in common)


def test_outage_silences_the_kiosk() -> None:
    t0 = parse_start("2026-11-24T09:00")
    k = KioskModel(seed=4, key="k", sessions_per_hour=30, outages=[Outage(t0, t0 + 7200)])
    assert not k.powered(t0 + 60)
    assert k.powered(t0 + 7300)
    assert not k.events_between(t0, t0 + 7200)
    assert k.events_between(t0 + 7200, t0 + 9000)


def test_radio_broadcasts_at_five_and_seventeen() -> None:
    r = RadioModel(seed=1, key="radio-1")
    t0 = parse_start("2026-05-01")
    ev = r.events_between(t0, t0 + WEEK)
    assert len(ev) == 14
    hours = sorted({int(local_hour(e.t)) for e in ev})
    assert hours == [5, 17]
    assert {e.attrs["program"] for e in ev} == {"morning_news", "evening_news"}


def test_hotspot_clients_peak_in_the_evening() -> None:
    h = HotspotModel(seed=1, key="wifi-1")
    t0 = parse_start("2026-05-04")
    evening = statistics.fmean(h.clients(t0 + d * 86400 + 20 * 3600) for d in range(7))
    night = statistics.fmean(h.clients(t0 + d * 86400 + 3 * 3600) for d in range(7))
    assert evening > 3 * night
    assert all(0 <= h.clients(t0 + i * 600) <= 40 for i in range(1000))
