"""`hamlet gateway status/tail` rendering, fed by snapshots a real gateway produced.

The snapshots come from an in-process Gateway through its control socket and the one client
(gateway/control_protocol.py), so a state the gateway reports and the renderer does not know
fails here (a healthy uplink was once shown in yellow: render knew only ok/idle/connected).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Console

from gateway import control_protocol
from gateway.app import Gateway
from gateway.control_protocol import StatusSnapshot, TailLine, UplinkState
from gateway.installer.render import UPLINK_STYLE, status_view, tail_line, uplink_line
from gateway.records import Event, Reading
from tests.conftest import REPO
from tests.gateway.conftest import gateway_config
from tests.gateway.test_gateway import CrashingSource
from tests.support.procs import ServerProcess

DEAD_URL = "http://127.0.0.1:9"  # nothing listens: the uplink stays down
TOKEN = "t" * 40


async def _status(gw: Gateway) -> StatusSnapshot:
    return await asyncio.to_thread(control_protocol.status, Path(gw.control_path))


def _text(renderable: object) -> str:
    con = Console(width=200, highlight=False)
    with con.capture() as cap:
        con.print(renderable)
    return cap.get()


def test_every_uplink_state_has_a_colour() -> None:
    assert set(UPLINK_STYLE) == set(UplinkState)
    assert UPLINK_STYLE[UplinkState.UP] == "green"


async def test_a_healthy_uplink_is_green(tmp_path: Path, server: ServerProcess) -> None:
    token = server.add_gateway("gw-render")
    cfg = gateway_config(tmp_path / "gw", server.url, token, gw_id="gw-render")
    async with Gateway(cfg, sources=[]) as gw:
        await gw.pipeline.submit([Reading("wl-1", "water_level", 1.5, source="mqtt")])
        await asyncio.wait_for(gw.uplink.uploaded.wait(), 30)
        st = await _status(gw)
    assert st.uplink.state is UplinkState.UP
    line = uplink_line(st, now=st.uplink.last_upload_at or 0.0)
    assert line.plain.startswith("up  last upload 0 s ago")
    assert str(line.style) == "green"
    assert "gw-render" in _text(status_view(st))


async def test_a_down_uplink_a_failed_source_and_a_dead_letter(tmp_path: Path) -> None:
    cfg = gateway_config(tmp_path / "gw", DEAD_URL, TOKEN)
    bad = CrashingSource("lora")
    async with Gateway(cfg, sources=[bad]) as gw:
        await asyncio.wait_for(bad.crashed.wait(), 10)
        await gw.pipeline.submit(
            [
                Reading("wl-1", "water_level", 99.0, source="mqtt"),  # out of range
                Reading("wl-1", "water_level", 1.0, source="mqtt"),
            ]
        )
        # The first failed post sets DOWN; read it as the CLI does, with a deadline.
        st = await _status(gw)
        for _ in range(200):
            if st.uplink.state is UplinkState.DOWN and st.dead_letters.count:
                break
            await asyncio.sleep(0.05)
            st = await _status(gw)
    assert st.uplink.state is UplinkState.DOWN
    assert str(uplink_line(st, now=0.0).style) == "yellow"
    text = _text(status_view(st))
    for needle in (
        "gw-test",
        "down",
        "Input/output error",
        "out_of_range",
        "water_level",
        "lora",
        "records unsent",
    ):
        assert needle in text, needle


async def test_tail_lines_from_the_socket_render(tmp_path: Path) -> None:
    cfg = gateway_config(tmp_path / "gw", DEAD_URL, TOKEN)
    async with Gateway(cfg, sources=[]) as gw:
        lines: list[TailLine] = []

        def read_two() -> None:
            stream = control_protocol.tail(Path(gw.control_path))
            for item in stream:
                if item.device in ("kiosk-1", "wl-1"):
                    lines.append(item)
                if len(lines) == 2:
                    stream.close()
                    return

        reader = asyncio.create_task(asyncio.to_thread(read_two))
        while not gw.pipeline._subs:  # registered once the server read the request
            await asyncio.sleep(0.01)
        await gw.pipeline.submit(
            [
                Reading("wl-1", "water_level", 1.5, source="mqtt"),
                Event("kiosk-1", "rating", {"scale": 5, "score": 4}, source="mqtt"),
            ]
        )
        await asyncio.wait_for(reader, 30)
    rendered = [tail_line(item).plain for item in lines]
    assert len(rendered) == 2
    assert "wl-1 water_level=1.5" in rendered[0]
    assert "kiosk-1 rating scale=5, score=4" in rendered[1]


async def test_the_demo_reads_its_figures_through_the_same_client(tmp_path: Path) -> None:
    from hamlet.demo import _gateway_figures

    cfg = gateway_config(tmp_path / "gw", DEAD_URL, TOKEN)
    assert await _gateway_figures(control_protocol.socket_path(cfg.data_dir)) == (None, None)
    async with Gateway(cfg, sources=[]) as gw:
        await gw.pipeline.submit([Reading("wl-1", "water_level", 1.0, source="mqtt")])
        depth, uploaded = await _gateway_figures(Path(gw.control_path))
        assert depth == gw.buffer.depth
        assert depth is not None
        assert depth >= 1
    assert uploaded == 0


def test_the_documented_examples_are_valid_messages() -> None:
    doc = (REPO / "docs" / "store-and-forward.md").read_text("utf-8")
    section = doc.split("## Control socket", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```json\n")[1:]]
    assert len(blocks) == 2
    snap = StatusSnapshot.model_validate_json(blocks[0])
    assert snap.uplink.state is UplinkState.UP
    tails = [TailLine.model_validate_json(line) for line in blocks[1].splitlines() if line]
    assert [t.kind for t in tails] == ["reading", "event"]
