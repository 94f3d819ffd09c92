"""The uplink against a real ``hamlet server run`` process: delivered, confirmed, accounted."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from gateway.app import Gateway
from gateway.records import Event, Reading
from tests.gateway.conftest import accounting_for, gateway_config
from tests.support.procs import ServerProcess


async def drained(gw: Gateway, timeout: float = 30) -> None:
    """Wait (on the uplink's upload event) until the buffer is empty."""

    async def _wait() -> None:
        while gw.buffer.depth > 0:
            gw.uplink.uploaded.clear()
            if gw.buffer.depth == 0:
                return
            await gw.uplink.uploaded.wait()

    await asyncio.wait_for(_wait(), timeout)


async def test_uplink_delivers_everything_once(tmp_path: Path, server: ServerProcess) -> None:
    token = server.add_gateway("gw-test")
    cfg = gateway_config(tmp_path / "gw", server.url, token, max_batch_records=700)
    async with Gateway(cfg, sources=[]) as gw:
        for block in range(10):
            await gw.pipeline.submit(
                [Reading(f"wl-{i % 3}", "water_level", 1.0 + i / 1000) for i in range(300)]
                + [Event("kiosk-1", "rating", {"scale": 3, "score": block % 3 + 1})]
            )
        await drained(gw)
        last = gw.buffer.last_seq
        uploaded = gw.uplink.status.uploaded
    acc = accounting_for(server.url, "gw-test")
    assert uploaded == last
    assert acc["highest_seq"] == last
    assert acc["received"] == last
    assert acc["missing"] == 0
    assert acc["duplicates"] == 0


async def test_records_the_server_rejects_are_dead_lettered(
    tmp_path: Path, server: ServerProcess
) -> None:
    token = server.add_gateway("gw-test")
    cfg = gateway_config(tmp_path / "gw", server.url, token)
    offset = tmp_path / "offset"
    cfg.clock.wall_offset_file = offset
    async with Gateway(cfg, sources=[]) as gw:
        await gw.pipeline.submit([Reading("wl-1", "water_level", 1.0)])
        # A gateway clock that believes itself synced but runs 2 h fast: the server
        # refuses those points as far-future; the gateway keeps them as dead letters.
        offset.write_text(str(2 * 3600 * 1000))
        await gw.pipeline.submit([Reading("wl-1", "water_level", 1.1) for _ in range(3)])
        offset.write_text("0")
        await gw.pipeline.submit([Reading("wl-1", "water_level", 1.2)])
        await drained(gw)
        stored, by, recent = await gw.buffer.dead_summary(5)
        status = gw.uplink.status
        last = gw.buffer.last_seq
    acc = accounting_for(server.url, "gw-test")
    assert acc["missing"] == 0
    assert acc["rejected"] == 3
    assert acc["received"] == last - 3
    assert status.rejected == stored == 3
    assert by == {"rejected_by_server": 3}
    assert "ahead of the server clock" in recent[0].reason


async def test_wrong_token_keeps_data(tmp_path: Path, server: ServerProcess) -> None:
    server.add_gateway("gw-test")
    cfg = gateway_config(tmp_path / "gw", server.url, "not-the-token-" + "x" * 30)
    async with Gateway(cfg, sources=[]) as gw:
        await gw.pipeline.submit([Reading("wl-1", "water_level", 1.0)])
        while gw.uplink.status.state.value != "auth_failed":
            await asyncio.sleep(0.05)
        assert gw.buffer.depth >= 1
        assert "token" in (gw.uplink.status.last_error or "")


async def test_batch_the_server_refuses_is_bisected_to_the_bad_record(
    tmp_path: Path, server: ServerProcess
) -> None:
    token = server.add_gateway("gw-test")
    cfg = gateway_config(tmp_path / "gw", server.url, token, max_batch_records=64)
    async with Gateway(cfg, sources=[]) as gw:
        good = [Reading("wl-1", "water_level", 1.0 + i / 100) for i in range(100)]
        # More attributes than the contract allows: the server answers 422 for the batch.
        bad = Event("kiosk-1", "survey", {f"q{i}": i for i in range(40)}, source="mqtt")
        await gw.pipeline.submit([*good[:50], bad, *good[50:]])
        await gw.pipeline.submit([Reading("bad device!", "water_level", 1.0)])
        await drained(gw)
        _stored, by, recent = await gw.buffer.dead_summary(5)
        last = gw.buffer.last_seq
    acc = accounting_for(server.url, "gw-test")
    assert by == {"rejected_by_server": 1, "bad_ident": 1}
    assert any("survey" in d.raw.decode() for d in recent)
    # The one refused record is declared; everything else was stored; nothing missing.
    assert acc["missing"] == 0
    assert acc["accounted"] == {"rejected": 1}
    assert acc["received"] == last - 1


async def test_corrupt_buffer_recovers_and_server_accounts_the_loss(
    tmp_path: Path, server: ServerProcess
) -> None:
    token = server.add_gateway("gw-test")
    data = tmp_path / "gw"
    cfg = gateway_config(data, server.url, token)
    async with Gateway(cfg, sources=[]) as gw:
        await gw.pipeline.submit([Reading("wl-1", "water_level", 1.0) for _ in range(100)])
        await drained(gw)
        sent_before = gw.buffer.last_seq
    # The server becomes unreachable; 200 readings wait in the buffer...
    offline = gateway_config(data, "http://127.0.0.1:9", token)
    async with Gateway(offline, sources=[]) as gw:
        await gw.pipeline.submit([Reading("wl-1", "water_level", 2.0) for _ in range(200)])
        unsent_last = gw.buffer.last_seq
    # ...and the SD card corrupts the file.
    db = data / "buffer.db"
    with db.open("r+b") as f:
        f.write(os.urandom(4096))
    async with Gateway(cfg, sources=[]) as gw:
        await gw.pipeline.submit([Reading("wl-1", "water_level", 3.0) for _ in range(50)])
        await drained(gw)
        counters = gw.buffer.counters
        first_new = gw.buffer.last_seq - 49
    assert counters.corrupt_files == 1
    assert first_new > unsent_last
    assert list(data.glob("buffer.db.corrupt-*"))
    acc = accounting_for(server.url, "gw-test")
    # The loss is declared, not silent: nothing is "missing", the corrupt range is accounted.
    assert acc["missing"] == 0, acc["missing_ranges"]
    assert acc["accounted"].get("corrupt", 0) >= unsent_last - sent_before
    assert acc["received"] >= sent_before + 50
