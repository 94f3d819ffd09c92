"""The Gateway as a whole: control socket (status, tail), heartbeat, source supervision."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway import control_protocol
from gateway.app import Gateway
from gateway.control_protocol import StatusSnapshot
from gateway.records import Reading, Sink
from gateway.sources.base import SourceState, SourceStatus
from hamlet.status_report import STATUS_EVENT
from tests.gateway.conftest import gateway_config

# Nothing listens here: the uplink stays down and everything stays buffered.
DEAD_URL = "http://127.0.0.1:9"
TOKEN = "t" * 40


class CrashingSource:
    """A source whose transport fails at once, every time (a yanked USB adapter)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = SourceState(name, "serial")
        self.runs = 0
        self.crashed = asyncio.Event()

    async def run(self, sink: Sink) -> None:
        self.runs += 1
        if self.runs >= 2:
            self.crashed.set()
        raise OSError(5, "Input/output error: /dev/ttyUSB0")


class SteadySource:
    """A source that submits one reading per call of ``tick``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = SourceState(name, "mqtt")
        self.queue: asyncio.Queue[Sequence[Reading]] = asyncio.Queue()

    async def run(self, sink: Sink) -> None:
        self.state.set_status(SourceStatus.RUNNING)
        while True:
            batch = await self.queue.get()
            await sink.submit(batch)
            self.state.count("records", len(batch))


async def test_status_and_tail_over_the_control_socket(tmp_path: Path) -> None:
    cfg = gateway_config(tmp_path / "gw", DEAD_URL, TOKEN)
    steady = SteadySource("mqtt")
    async with Gateway(cfg, sources=[steady]) as gw:
        sock = Path(gw.control_path)
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(b'{"cmd": "tail"}\n')
        await writer.drain()
        # The tail subscription is registered once the server read the request.
        while not gw.pipeline._subs:
            await asyncio.sleep(0.01)
        await steady.queue.put(
            [
                Reading("wl-1", "water_level", 1.5, source="mqtt"),
                Reading("wl-1", "water_level", 99.0, source="mqtt"),
            ]
        )
        line = json.loads(await asyncio.wait_for(reader.readline(), 10))
        while line["device"] != "wl-1":  # the gateway's own heartbeat may come first
            line = json.loads(await asyncio.wait_for(reader.readline(), 10))
        assert line["device"] == "wl-1"
        assert line["value"] == 1.5
        assert line["source"] == "mqtt"
        assert line["seq"] >= 1
        writer.close()
        await writer.wait_closed()

        st = await _status(sock)
        assert st.gateway == "gw-test"
        assert st.buffer.depth == gw.buffer.depth
        assert st.buffer.max_bytes == cfg.buffer.max_bytes
        assert st.clock.synced is True
        assert st.uplink.state in ("starting", "down")
        assert st.counters["received"] >= 2
        assert st.dead_letters.count == 1
        assert st.dead_letters.by_reason == {"out_of_range": 1}
        assert st.dead_letters.recent[0].source == "mqtt"
        assert [s.name for s in st.sources] == ["mqtt"]
        assert st.sources[0].status == "running"
        bad = await _raw(sock, b"not json\n")
        assert "error" in bad


async def _status(sock: Path) -> StatusSnapshot:
    return await asyncio.to_thread(control_protocol.status, sock)


async def _raw(sock: Path, data: bytes) -> dict[str, object]:
    reader, writer = await asyncio.open_unix_connection(str(sock))
    try:
        writer.write(data)
        await writer.drain()
        out: dict[str, object] = json.loads(await asyncio.wait_for(reader.readline(), 10))
        return out
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_failing_source_is_restarted_and_others_unaffected(tmp_path: Path) -> None:
    cfg = gateway_config(tmp_path / "gw", DEAD_URL, TOKEN)
    bad = CrashingSource("rs485")
    good = SteadySource("mqtt")
    async with Gateway(cfg, sources=[bad, good]) as gw:
        await asyncio.wait_for(bad.crashed.wait(), 10)
        await good.queue.put([Reading("wl-1", "water_level", 1.0)])
        await good.state.wait_until(lambda st: st.counters.get("records", 0) >= 1, timeout=10)
        st = await _status(Path(gw.control_path))
    by_name = {s.name: s for s in st.sources}
    assert by_name["rs485"].status == "failed"
    assert "Input/output error" in (by_name["rs485"].last_error or "")
    assert by_name["rs485"].counters["restarts"] >= 1
    assert by_name["mqtt"].status == "running"
    assert bad.runs >= 2


async def test_heartbeat_readings_go_through_the_buffer(tmp_path: Path) -> None:
    cfg = gateway_config(tmp_path / "gw", DEAD_URL, TOKEN)
    async with Gateway(cfg, sources=[]) as gw:
        # The first heartbeat is sent at start.
        while gw.buffer.depth == 0:
            gw.buffer.committed.clear()
            await asyncio.wait_for(gw.buffer.committed.wait(), 10)
        recs, _ = await gw.buffer.read_batch(0, None, 100, hold_pending=False)
    recs = [r for r in recs if r.metric != STATUS_EVENT]  # the status report rides beside
    metrics = {r.metric: r.value for r in recs if r.device == "gw-test"}
    assert all(r.kind.value == "heartbeat" for r in recs)
    for name in (
        "uptime_s",
        "buffer_depth",
        "buffer_bytes",
        "disk_free_bytes",
        "clock_synced",
        "received",
        "committed",
        "uploaded",
        "dead_lettered",
        "aggregated",
        "dropped",
    ):
        assert f"gw.{name}" in metrics, name
    assert metrics["gw.clock_synced"] == 1.0


async def test_clean_shutdown_keeps_unsent_records(tmp_path: Path) -> None:
    cfg = gateway_config(tmp_path / "gw", DEAD_URL, TOKEN)
    async with Gateway(cfg, sources=[]) as gw:
        await gw.pipeline.submit([Reading("wl-1", "water_level", 1.0) for _ in range(50)])
        depth = gw.buffer.depth
    async with Gateway(cfg, sources=[]) as gw:
        assert gw.buffer.depth >= depth
        assert not Path(gw.control_path).with_name("nothing").exists()


@pytest.mark.parametrize(
    "request_line",
    [
        b"\n",
        b"not json\n",
        b"[1, 2]\n",
        b'{"cmd": "reboot"}\n',
        b'{"cmd": 5}\n',
        b"\xff\xfe\x00garbage\n",
        b'{"cmd": "status"' + b" " * 5000 + b"}\n",
    ],
)
async def test_control_socket_answers_bad_requests_and_keeps_serving(
    tmp_path: Path, request_line: bytes
) -> None:
    cfg = gateway_config(tmp_path / "gw", DEAD_URL, TOKEN)
    async with Gateway(cfg, sources=[]) as gw:
        sock = Path(gw.control_path)
        answer = await _raw(sock, request_line)
        assert "error" in answer
        st = await _status(sock)
        assert st.gateway == "gw-test"
