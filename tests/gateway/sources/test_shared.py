"""Backoff, firmware sequence tracking and the source registry."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import SourcesConfig
from gateway.sources.registry import DuplicateSourceName, build_sources
from gateway.sources.seqtrack import SEQ_MODULUS, SeqOutcome, SeqTracker
from hamlet.backoff import Backoff


def test_backoff_is_capped_jittered_and_resets() -> None:
    b = Backoff(base_s=0.5, cap_s=8.0, _rng=random.Random(1))
    delays = [b.next_delay() for _ in range(40)]
    assert all(0.05 <= d <= 8.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 30  # jittered, not lock-step
    assert max(delays[10:]) > 4.0  # grew towards the cap
    b.reset()
    assert b.next_delay() <= 0.5


def test_seq_outcomes() -> None:
    t = SeqTracker()
    seen = [t.observe("n", s) for s in (5, 6, 6, 9, 0, 1, SEQ_MODULUS - 1, 0)]
    assert [o for o, _ in seen] == [
        SeqOutcome.FIRST, SeqOutcome.NEXT, SeqOutcome.REPEAT, SeqOutcome.GAP,
        SeqOutcome.RESET, SeqOutcome.NEXT, SeqOutcome.GAP, SeqOutcome.NEXT,  # u32 wrap
    ]  # fmt: skip
    assert seen[3][1] == 2
    st_ = t.stats("n")
    assert st_ is not None
    assert (st_.gaps, st_.resets, st_.repeats) == (2, 1, 1)


@given(
    start=st.integers(0, SEQ_MODULUS - 1), n=st.integers(1, 50), drop=st.sets(st.integers(1, 48))
)
def test_lost_frames_are_counted_exactly(start: int, n: int, drop: set[int]) -> None:
    t = SeqTracker()
    sent = [(start + i) % SEQ_MODULUS for i in range(n)]
    received = [s for i, s in enumerate(sent) if i == 0 or i == n - 1 or i not in drop]
    lost = 0
    for s in received:
        lost += t.observe("n", s)[1]
    assert lost == len(sent) - len(received)


def test_tracker_is_bounded() -> None:
    t = SeqTracker(max_devices=10)
    for i in range(100):
        t.observe(f"flood-{i}", 1)
    assert t.stats("flood-99") is not None
    assert t.stats("flood-0") is None


def test_registry_builds_every_kind_and_refuses_duplicate_names() -> None:
    cfg = SourcesConfig.model_validate(
        {
            "serial": [{"name": "lora", "port": "/dev/null"}],
            "modbus": [{"name": "rs485", "port": "/dev/null",
                        "devices": [{"id": "s1", "profile": "soil-3in1"}]}],
            "mqtt": [{"name": "mqtt"}],
        }
    )  # fmt: skip
    sources = build_sources(cfg)
    assert sorted((s.name, s.state.kind) for s in sources) == [
        ("lora", "serial"), ("mqtt", "mqtt"), ("rs485", "modbus"),
    ]  # fmt: skip
    assert all(s.state.status == "starting" for s in sources)
    dup = SourcesConfig.model_validate(
        {"serial": [{"name": "x", "port": "/dev/null"}], "mqtt": [{"name": "x"}]}
    )
    with pytest.raises(DuplicateSourceName, match="unique name"):
        build_sources(dup)
