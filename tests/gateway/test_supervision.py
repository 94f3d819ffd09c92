"""Supervision: a dead component is reported (status, heartbeat, red in `status`), the
process is told to exit for a restart, and the next start reports what ended the last run."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from rich.console import Console

from gateway import heartbeat, status
from gateway.app import Gateway
from gateway.installer.render import health_line, status_view
from gateway.records import Sink
from gateway.sources.base import SourceState
from gateway.supervision import FAILURE_FILE, Supervision
from tests.gateway.conftest import gateway_config

DEAD_URL = "http://127.0.0.1:9"
TOKEN = "t" * 40


class BuggySource:
    """A source whose run() raises at once, every time: a fault in it, not its transport."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = SourceState(name, "mqtt")

    async def run(self, sink: Sink) -> None:
        raise KeyError("a bug in the source")


async def test_source_failing_again_and_again_makes_the_gateway_exit(tmp_path: Path) -> None:
    cfg = gateway_config(tmp_path / "gw", DEAD_URL, TOKEN)
    async with Gateway(cfg, sources=[BuggySource("kiosks")], source_backoff_s=0.001) as gw:
        await asyncio.wait_for(gw.supervision.failed.wait(), 30)
        snap = await status.snapshot(gw)
        figures = {r.metric: r.value for r in await heartbeat.readings(gw)}
    assert "source kiosks" in snap.health.failures
    assert "KeyError" in snap.health.failures["source kiosks"]
    assert snap.health.components["committer"] == "running"
    assert figures["gw.components_failed"] == 1.0
    assert figures["gw.sources_failed"] == 1.0
    # `hamlet gateway status` shows it in red.
    line = health_line(snap.health)
    assert "FAILED" in line.plain
    assert "red" in " ".join([str(line.style), *(str(span.style) for span in line.spans)])
    out = io.StringIO()
    Console(file=out, width=200).print(status_view(snap))
    assert "source kiosks" in out.getvalue()
    # The next start reports what ended this run (and then forgets it).
    assert (cfg.data_dir / FAILURE_FILE).exists()
    async with Gateway(cfg, sources=[]) as gw2:
        snap2 = await status.snapshot(gw2)
        figures2 = {r.metric: r.value for r in await heartbeat.readings(gw2)}
    prev = snap2.health.previous_failure
    assert prev is not None
    assert "source kiosks" in prev["failures"]
    assert snap2.health.failures == {}
    assert figures2["gw.previous_run_failed"] == 1.0
    assert "previous run" in health_line(snap2.health).plain
    assert not (cfg.data_dir / FAILURE_FILE).exists()


async def test_a_task_that_dies_is_a_failure_and_a_cancelled_one_is_not(tmp_path: Path) -> None:
    sv = Supervision(tmp_path)
    sv.start()

    async def dies() -> None:
        raise RuntimeError("disk gone")

    async def forever() -> None:
        await asyncio.Event().wait()

    calm = asyncio.create_task(forever())
    sv.watch("uplink", calm)
    calm.cancel()
    await asyncio.gather(calm, return_exceptions=True)
    assert not sv.failed.is_set()
    task = asyncio.create_task(dies())
    sv.watch("committer", task)
    await asyncio.wait_for(sv.failed.wait(), 5)
    assert sv.failures == {"committer": "RuntimeError: disk gone"}
    assert sv.components == {"uplink": "stopped", "committer": "failed"}
    assert (tmp_path / FAILURE_FILE).exists()


async def test_a_clean_stop_is_not_a_failure(tmp_path: Path) -> None:
    cfg = gateway_config(tmp_path / "gw", DEAD_URL, TOKEN)
    async with Gateway(cfg, sources=[]) as gw:
        pass
    assert gw.supervision.failures == {}
    assert not (cfg.data_dir / FAILURE_FILE).exists()
