"""The serial source over real pseudo-terminals (socat): noise, bit flips, unplug/replug."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.buffer import DurableBuffer
from gateway.buffer.config import BufferConfig
from gateway.clock import Clock, ClockConfig
from gateway.pipeline import Pipeline
from gateway.sources.base import SourceStatus
from gateway.sources.serial.config import SerialSourceConfig
from gateway.sources.serial.protocol import encode_frame
from gateway.sources.serial.source import SerialSource
from tests.conftest import require_tool
from tests.gateway.sources.conftest import Committed
from tests.support.pty import PtyPair
from tests.support.tasks import cancel_and_wait


@contextlib.asynccontextmanager
async def running(src: SerialSource, sink: Any) -> AsyncIterator[None]:
    task = asyncio.create_task(src.run(sink), name=src.name)
    try:
        yield
    finally:
        await cancel_and_wait(task)


async def _until(src: SerialSource, sink: Committed, cond: Any, timeout: float = 15.0) -> None:
    """Wait until ``cond()`` holds; it depends on the source's state and on what the sink
    committed, so wake on a change of either (both announce their changes)."""
    async with asyncio.timeout(timeout):
        while not cond():
            waits = {
                asyncio.ensure_future(src.state.wait_until(lambda _st: cond())),
                asyncio.ensure_future(sink.wait_until(cond)),
            }
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for fut in pending:
                fut.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


class Wire:
    """The node's end of the cable."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def wire(pty_pair: PtyPair) -> Iterator[Wire]:
    w = Wire(pty_pair.a)
    try:
        yield w
    finally:
        w.close()


def _cfg(port: str) -> SerialSourceConfig:
    return SerialSourceConfig(port=port, backoff_initial_s=0.05, backoff_max_s=0.3)


async def test_frames_noise_bitflips_truncation(
    pty_pair: PtyPair, wire: Wire, committed: Committed
) -> None:
    sink = committed
    src = SerialSource(_cfg(pty_pair.b))
    async with running(src, sink):
        await _until(src, sink, lambda: src.state.status == SourceStatus.RUNNING)
        good = [encode_frame("soil-1", s, None, {"soil_moisture": 30 + s}) for s in range(1, 6)]
        flipped = bytearray(encode_frame("soil-1", 99, None, {"soil_moisture": 1}))
        flipped[12] ^= 0x04
        wire.write(b"\x00\xff garbage burst \x13\x37\r\n" + good[0])
        wire.write(bytes(flipped))  # CRC failure, counted for soil-1
        wire.write(good[1][:20] + good[2])  # truncated frame, then a good one on its line
        # Babble past the line limit ('$'-free: a '$' in it would start a candidate frame).
        wire.write(os.urandom(3000).replace(b"\n", b"").replace(b"$", b"") + b"\n")
        wire.write(good[3] + b"$wx-1,1,,rain=0.2\r\n")  # then a frame without checksum
        wire.write(b"noise" + good[4])
        await _until(
            src, sink, lambda: len(sink.items) >= 4 and src.state.counters.get("no_crc") == 1
        )
    # Sorted, not a set: a value stored twice would show. (Chunks are committed in the
    # background, so two chunks in one group may take seqs in either order.)
    values = sorted(r["value"] for r in sink.readings)
    assert values == [31, 33, 34, 35]
    node = src.state.devices["soil-1"]
    assert node["crc_failures"] == 1
    assert node["frames"] == 4
    assert node["gaps"] == 1
    assert node["lost"] == 1  # seq 2 was truncated away
    c = src.state.counters
    assert c["crc_mismatch"] == 1
    assert c["truncated"] == 1
    assert c["overlong"] == 1
    reasons = [r for _, r, _ in sink.rejects]
    assert any(r.startswith("crc_mismatch: ") for r in reasons)
    assert any(r.startswith("truncated: ") for r in reasons)
    assert any(r.startswith("no_crc: ") for r in reasons)
    assert any(r.startswith("no_start: ") for r in reasons)


async def test_resets_and_gaps_per_node(
    pty_pair: PtyPair, wire: Wire, committed: Committed
) -> None:
    sink = committed
    src = SerialSource(_cfg(pty_pair.b))
    async with running(src, sink):
        await _until(src, sink, lambda: src.state.status == SourceStatus.RUNNING)
        for node, seq in [("a", 10), ("b", 1), ("a", 11), ("a", 15), ("b", 2), ("b", 2), ("a", 0)]:
            # ("b", 2) twice: a radio retransmission of the same frame, kept once.
            wire.write(encode_frame(node, seq, 1764309600.5, {"water_level": 1.5}))
        await _until(
            src, sink, lambda: len(sink.items) == 6 and src.state.counters.get("frames") == 6
        )
        assert src.state.counters["duplicates_dropped"] == 1
    a, b = src.state.devices["a"], src.state.devices["b"]
    assert (a["frames"], a["gaps"], a["lost"], a["resets"]) == (4, 1, 3, 1)
    assert (b["frames"], b["gaps"], b["resets"]) == (2, 0, 0)
    assert {r["t"] for r in sink.readings} == {1764309600500}  # the node's clock


class Adapter:
    """A USB serial adapter we can unplug: our own socat with stable link paths."""

    def __init__(self, d: Path) -> None:
        self.a, self.b = str(d / "node"), str(d / "by-id-usb-FTDI")
        self.proc: subprocess.Popen[bytes] | None = None

    def plug(self) -> None:
        socat = require_tool("socat")
        self.proc = subprocess.Popen(
            [
                socat,
                "-d",
                "-d",
                f"pty,raw,echo=0,ignoreeof,link={self.a}",
                f"pty,raw,echo=0,link={self.b}",
            ],
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if b"starting data transfer loop" in line:
                return
        pytest.fail("socat did not start")

    def unplug(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            assert self.proc.stderr is not None
            self.proc.stderr.close()
            self.proc = None


async def test_unplug_and_replug(tmp_path: Path, committed: Committed) -> None:
    adapter = Adapter(tmp_path)
    adapter.plug()
    # The node end is opened first: socat reports a pty whose peer was never opened as a
    # hang-up, which is a socat artefact, not what an adapter does.
    w = Wire(adapter.a)
    sink = committed
    src = SerialSource(_cfg(adapter.b))
    try:
        async with running(src, sink):
            await _until(src, sink, lambda: src.state.status == SourceStatus.RUNNING)
            w.write(encode_frame("wl-3", 1, None, {"water_level": 1.1}))
            await _until(src, sink, lambda: len(sink.items) == 1)
            adapter.unplug()
            w.close()
            await _until(src, sink, lambda: src.state.status == SourceStatus.RECONNECTING)
            assert src.state.last_error is not None
            adapter.plug()
            w = Wire(adapter.a)
            await _until(src, sink, lambda: src.state.status == SourceStatus.RUNNING)
            w.write(encode_frame("wl-3", 2, None, {"water_level": 1.2}))
            await _until(src, sink, lambda: len(sink.items) == 2)
            lost = src.state.counters["port_lost"]
    finally:
        w.close()
        adapter.unplug()
    assert [r["value"] for r in sink.readings] == [1.1, 1.2]
    assert lost == 1
    assert src.state.devices["wl-3"]["gaps"] == 0


async def test_missing_port_reports_reconnecting(tmp_path: Path, committed: Committed) -> None:
    sink = committed
    src = SerialSource(_cfg(str(tmp_path / "no-such-adapter")))
    async with running(src, sink):
        await _until(src, sink, lambda: src.state.status == SourceStatus.RECONNECTING)
    assert "no-such-adapter" in (src.state.last_error or "")


async def test_retransmission_after_a_restart_is_recognised(
    pty_pair: PtyPair, wire: Wire, committed: Committed
) -> None:
    # Node id + node seq (+ the frame) is the receipt: a frame retransmitted after the
    # gateway's source restarted (no memory of the last frame) is still stored once.
    sink = committed
    frame = encode_frame("n7", 42, 1764309600.5, {"water_level": 1.25})
    committed_after = (
        lambda: len(sink.readings) == 1,  # the first run: stored
        lambda: sink.buffer.counters.duplicates_recognised == 1,  # the second: recognised
    )
    for cond in committed_after:  # the second run is a fresh source object: a restart
        src = SerialSource(_cfg(pty_pair.b))
        async with running(src, sink):
            await _until(src, sink, lambda s=src: s.state.status == SourceStatus.RUNNING)
            wire.write(frame)
            await _until(src, sink, cond)
    assert len(sink.readings) == 1
    # A rebooted node's seq 42 with other readings is new.
    src = SerialSource(_cfg(pty_pair.b))
    async with running(src, sink):
        await _until(src, sink, lambda: src.state.status == SourceStatus.RUNNING)
        wire.write(encode_frame("n7", 42, 1764309900.5, {"water_level": 1.31}))
        await _until(src, sink, lambda: len(sink.readings) == 2)


async def test_a_window_of_frames_is_one_commit(
    pty_pair: PtyPair, wire: Wire, tmp_path: Path
) -> None:
    """At a hamlet's rate every frame of a durability window meets in one group commit: the
    reader keeps more submits in flight than a window brings (16 waiting submits used to
    force a commit, one every 16 frames: at one frame a second, four commits a minute)."""
    clock = Clock(ClockConfig(sync="always"))
    async with DurableBuffer(
        BufferConfig(durability_window_s=6.0), tmp_path, clock.boot_id
    ) as buffer:
        sink = Committed(Pipeline(buffer, clock), buffer)
        src = SerialSource(_cfg(pty_pair.b))
        async with running(src, sink):
            await _until(src, sink, lambda: src.state.status == SourceStatus.RUNNING)
            commits0 = buffer.counters.commits
            for s in range(1, 31):  # a frame every 0.1 s for 3 s, well inside one window
                wire.write(encode_frame("soil-2", s, None, {"soil_moisture": s}))
                await asyncio.sleep(0.1)  # the node's schedule
            await _until(src, sink, lambda: len(sink.items) >= 30, timeout=20)
            commits = buffer.counters.commits - commits0
    assert sorted(r["value"] for r in sink.readings) == list(range(1, 31))
    assert commits == 1
