"""Serial findings of issue 9 over real ptys: overlong lines dead-lettered as ``too_long``,
resync at the last ``$`` after long noise, nodes only from valid frames, and a reader that
does not wait for the group commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.buffer import DurableBuffer
from gateway.buffer.config import BufferConfig
from gateway.clock import Clock, ClockConfig
from gateway.pipeline import Pipeline
from gateway.records import Reading, Record
from gateway.sources.base import SourceState, SourceStatus
from gateway.sources.serial.handoff import Handoff
from gateway.sources.serial.protocol import (
    MAX_LINE,
    TOO_LONG_SAMPLE,
    LineSplitter,
    encode_frame,
    parse_frame,
)
from gateway.sources.serial.source import UNKNOWN_NODE_CRC, SerialSource
from tests.gateway.sources.conftest import Committed
from tests.gateway.sources.test_serial_source import Wire, _cfg, _until, running
from tests.support.pty import PtyPair


@pytest.fixture
def wire(pty_pair: PtyPair) -> Iterator[Wire]:
    w = Wire(pty_pair.a)
    try:
        yield w
    finally:
        w.close()


async def test_overlong_line_is_dead_lettered_with_a_sample(
    pty_pair: PtyPair, wire: Wire, committed: Committed
) -> None:
    sink = committed
    src = SerialSource(_cfg(pty_pair.b))
    good = encode_frame("wl-1", 1, None, {"water_level": 1.5})
    async with running(src, sink):
        await _until(src, sink, lambda: src.state.status == SourceStatus.RUNNING)
        wire.write(b"B" * 600 + b"\r\n" + good)
        await _until(src, sink, lambda: len(sink.items) == 1)
    assert [r["value"] for r in sink.readings] == [1.5]
    too_long = [(r, raw) for _, r, raw in sink.rejects if r.startswith("too_long: ")]
    assert len(too_long) == 1
    assert too_long[0][1] == b"B" * TOO_LONG_SAMPLE  # a sample, not the whole babble
    assert src.state.counters["too_long"] == 1
    assert (await sink.dead_codes())["too_long"] == 1  # kept in the dead-letter store


@pytest.mark.parametrize("noise_len", [100, 300, 5000])
async def test_good_frame_after_long_noise_without_newline(
    pty_pair: PtyPair, wire: Wire, committed: Committed, noise_len: int
) -> None:
    """The frame starts at the line's last '$': noise before it, however long, is dropped
    and the frame kept (before: a line past 256 bytes was dropped whole, frame included)."""
    sink = committed
    src = SerialSource(_cfg(pty_pair.b))
    async with running(src, sink):
        await _until(src, sink, lambda: src.state.status == SourceStatus.RUNNING)
        first = encode_frame("wl-2", 7, None, {"water_level": 0.75})
        wire.write(b"~" * noise_len + first)
        wire.write(encode_frame("wl-2", 8, None, {"water_level": 0.8}))
        await _until(src, sink, lambda: len(sink.items) == 2)
    assert sorted(r["value"] for r in sink.readings) == [0.75, 0.8]
    assert src.state.devices["wl-2"]["frames"] == 2
    overlong = noise_len + len(first.rstrip(b"\r\n")) > MAX_LINE
    assert src.state.counters.get("too_long", 0) == overlong


async def test_crc_failures_create_no_nodes(
    pty_pair: PtyPair, wire: Wire, committed: Committed
) -> None:
    sink = committed
    src = SerialSource(_cfg(pty_pair.b))

    def flipped(node: str, seq: int) -> bytes:
        good = encode_frame(node, seq, None, {"rain": 0.2})
        crc = int(good[-6:-2], 16) ^ 0x0001  # a wrong checksum; the node name stays readable
        return good[:-6] + f"{crc:04X}".encode() + b"\r\n"

    async with running(src, sink):
        await _until(src, sink, lambda: src.state.status == SourceStatus.RUNNING)
        for i in range(5):
            wire.write(flipped(f"ghost-{i}", 1))  # nodes that never sent a valid frame
        wire.write(encode_frame("rg-1", 1, None, {"rain": 0.2}))
        wire.write(flipped("rg-1", 2))  # a known node: counted on it
        await _until(
            src,
            sink,
            lambda: len(sink.items) == 1 and src.state.counters.get("crc_mismatch") == 6,
        )
    assert sorted(src.state.devices) == ["rg-1"]
    assert src.state.devices["rg-1"]["crc_failures"] == 1
    assert src.state.counters[UNKNOWN_NODE_CRC] == 5


@pytest.fixture
async def slow_commit(tmp_path: Path) -> AsyncIterator[Committed]:
    """The real pipeline with the longest group-commit window the config allows."""
    clock = Clock(ClockConfig(sync="always"))
    (tmp_path / "gw").mkdir()
    cfg = BufferConfig(durability_window_s=5)
    async with DurableBuffer(cfg, tmp_path / "gw", clock.boot_id) as buffer:
        yield Committed(Pipeline(buffer, clock), buffer)


async def test_reader_does_not_wait_for_the_commit(
    pty_pair: PtyPair, wire: Wire, slow_commit: Committed
) -> None:
    """Frame 2 is written after frame 1 was read; it is parsed while frame 1's commit is
    still waiting in its 5 s window (before: the reader sat in that commit)."""
    sink = slow_commit
    src = SerialSource(_cfg(pty_pair.b))
    async with running(src, sink):
        await _until(src, sink, lambda: src.state.status == SourceStatus.RUNNING)
        wire.write(encode_frame("sm-1", 1, None, {"soil_moisture": 31}))
        await _until(src, sink, lambda: src.state.counters.get("frames") == 1)
        wire.write(encode_frame("sm-1", 2, None, {"soil_moisture": 32}))
        await _until(src, sink, lambda: src.state.counters.get("frames") == 2, timeout=4)
        assert sink.items == []  # both read, neither committed yet: reading ran ahead
        await _until(src, sink, lambda: len(sink.items) == 2)
    assert sorted(r["value"] for r in sink.readings) == [31, 32]
    assert src.state.counters["records"] == 2


async def test_frames_read_before_stop_are_committed(
    pty_pair: PtyPair, wire: Wire, slow_commit: Committed
) -> None:
    """Stopping the source waits for the submits in flight: nothing read is dropped."""
    sink = slow_commit
    src = SerialSource(_cfg(pty_pair.b))
    async with running(src, sink):
        await _until(src, sink, lambda: src.state.status == SourceStatus.RUNNING)
        wire.write(encode_frame("sm-2", 1, None, {"soil_moisture": 40}))
        await _until(src, sink, lambda: src.state.counters.get("frames") == 1)
    assert [r["value"] for r in sink.readings] == [40]


noise = st.binary(max_size=2000).map(lambda b: b.replace(b"\n", b"").replace(b"$", b""))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(noise, st.integers(0, 2**32 - 1)), min_size=1, max_size=6),
    st.lists(st.integers(1, 700), min_size=1, max_size=10),
)
def test_splitter_keeps_every_frame_after_any_noise(
    items: list[tuple[bytes, int]], cuts: list[int]
) -> None:
    stream = bytearray()
    overlong_lines = 0
    for noise_b, seq in items:
        frame = encode_frame("n-1", seq, None, {"rain": 0.2})
        stream += noise_b + frame
        overlong_lines += len(noise_b) + len(frame) - 1 > MAX_LINE + 1
    sp = LineSplitter()
    got = []
    pos = i = 0
    while pos < len(stream):
        n = cuts[i % len(cuts)]
        i += 1
        got += [parse_frame(c).seq for c, _ in sp.feed(bytes(stream[pos : pos + n])) if c]
        pos += n
    assert got == [seq for _, seq in items]  # every frame, in order, once
    assert sp.stats.overlong == len(sp.too_long) == overlong_lines
    assert all(len(t.sample) <= TOO_LONG_SAMPLE for t in sp.too_long)
    assert len(sp._buf) == 0


async def test_overlong_lines_are_counted_all_but_dead_lettered_at_a_bounded_rate(
    pty_pair: PtyPair, wire: Wire, committed: Committed
) -> None:
    sink = committed
    cfg = _cfg(pty_pair.b).model_copy(update={"noise_dead_letters_per_min": 3})
    src = SerialSource(cfg)
    async with running(src, sink):
        await _until(src, sink, lambda: src.state.status == SourceStatus.RUNNING)
        wire.write(b"".join(b"Z" * 400 + b"\n" for _ in range(10)))
        wire.write(encode_frame("wl-9", 1, None, {"water_level": 1.0}))
        await _until(src, sink, lambda: len(sink.items) == 1)
    assert src.state.counters["too_long"] == 10
    assert sum(r.startswith("too_long: ") for _, r, _ in sink.rejects) == 3


class _GatedSink:
    """A sink whose commits finish only when the test opens the gate (the commit window,
    made explicit), or fail when told to."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started = 0
        self.entered = asyncio.Event()
        self.fail: Exception | None = None

    async def submit(self, records: Sequence[Record]) -> None:
        self.started += 1
        self.entered.set()
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail

    def reject(self, source: str, reason: str, raw: bytes | str) -> None:
        raise AssertionError("not used")

    async def until_started(self, n: int) -> None:
        while self.started < n:
            self.entered.clear()
            await self.entered.wait()


async def test_handoff_bounds_submits_in_flight() -> None:
    sink, state = _GatedSink(), SourceState("s", "serial")
    rec = [Reading("n", "rain", 0.2)]
    async with Handoff(sink, state, max_inflight=2) as handoff:
        await handoff.submit(rec)
        await handoff.submit(rec)  # two in flight: the reader did not wait
        await asyncio.wait_for(sink.until_started(2), 10)
        third = asyncio.create_task(handoff.submit(rec))
        # The third waits for a slot while the gate is shut (back-pressure, not memory).
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(third), 0.2)
        assert sink.started == 2
        sink.gate.set()
        await third
    assert sink.started == 3
    assert state.counters["records"] == 3  # stopping awaited every submit in flight


async def _submit_twice_after_a_failure(sink: _GatedSink, state: SourceState) -> None:
    rec = [Reading("n", "rain", 0.2)]
    async with Handoff(sink, state) as handoff:
        await handoff.submit(rec)
        await asyncio.wait_for(sink.until_started(1), 10)
        await handoff.drain()  # the first commit has failed
        await handoff.submit(rec)


async def test_handoff_reraises_a_failed_commit() -> None:
    sink, state = _GatedSink(), SourceState("s", "serial")
    sink.fail = OSError("disk gone")
    sink.gate.set()
    # The reader learns of it on its next submit: the source fails, and is restarted.
    with pytest.raises(OSError, match="disk gone"):
        await _submit_twice_after_a_failure(sink, state)
    assert "records" not in state.counters
