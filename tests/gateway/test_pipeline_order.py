"""The pipeline hands records to the buffer in the order sources submit them, and what it
dead-letters itself is on disk before the source may acknowledge it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from gateway.buffer import DurableBuffer
from gateway.pipeline import Pipeline
from gateway.records import Reading
from tests.gateway.conftest import buffer_config
from tests.gateway.test_clock import YEAR_MS, make_clock, step


@contextlib.asynccontextmanager
async def _just_synced(tmp_path: Path) -> AsyncIterator[tuple[DurableBuffer, Pipeline]]:
    """A gateway that booted 50 years off, stored a reading, and whose clock has just
    synced: its next submit starts the re-anchor of that reading."""
    clock, flag, offset = make_clock(tmp_path)
    step(offset, -50 * YEAR_MS)
    async with DurableBuffer(buffer_config(), tmp_path / "buf", clock.boot_id) as buf:
        pipe = Pipeline(buf, clock)
        await pipe.submit([Reading("wl-1", "water_level", 0.0)])  # before sync
        step(offset, 0)
        flag.touch()
        yield buf, pipe


async def test_submits_reach_the_buffer_in_call_order_across_a_reanchor(tmp_path: Path) -> None:
    """The first submit after the clock syncs waits for the re-anchor; one made just after
    it (the MQTT source no longer waits for a commit before submitting the next batch)
    must not overtake it and take the lower seq."""
    async with _just_synced(tmp_path) as (buf, pipe):
        first = asyncio.create_task(pipe.submit([Reading("wl-1", "water_level", 2.0)]))
        second = asyncio.create_task(pipe.submit([Reading("wl-1", "water_level", 3.0)]))
        await asyncio.gather(first, second)
        recs, _ = await buf.read_batch(0, None, 10, hold_pending=False)
    assert [(r.seq, r.value) for r in recs] == [(1, 0.0), (2, 2.0), (3, 3.0)]


async def test_records_dead_lettered_by_the_pipeline_are_committed_before_it_returns(
    tmp_path: Path,
) -> None:
    clock, flag, _offset = make_clock(tmp_path)
    flag.touch()
    async with DurableBuffer(buffer_config(), tmp_path / "buf", clock.boot_id) as buf:
        pipe = Pipeline(buf, clock)
        await pipe.submit([Reading("bad id!", "water_level", 1.0)])  # refused: bad_ident
        # submit() returned, so the source acknowledges: the dead letter must be stored.
        assert buf.counters.dead_lettered == 1


async def test_bad_input_arriving_message_by_message_rides_the_group_commit(
    tmp_path: Path,
) -> None:
    """A LAN device sending nothing but bad input, each message submitted as it arrives (as
    the MQTT source does): the dead letters wait for the window's group commit like good
    readings, instead of an fsync each, and each submit still returns only once its letter
    is on disk (it forced a commit of its own before: the SD card's wear at the device's
    message rate)."""
    clock, flag, _offset = make_clock(tmp_path)
    flag.touch()
    async with DurableBuffer(
        buffer_config(commit_interval_ms=3000), tmp_path / "buf", clock.boot_id
    ) as buf:
        pipe = Pipeline(buf, clock)
        commits_before = buf.counters.commits
        submits = []
        for i in range(20):
            if i % 2:  # refused by the pipeline itself
                submit = pipe.submit([Reading("bad id!", "water_level", float(i))])
            else:  # refused by the source (not JSON, say), which submits nothing
                pipe.reject("mqtt", "bad_json: not JSON", b"\xff" * i)
                submit = pipe.submit([])
            submits.append(asyncio.create_task(submit))
            await asyncio.sleep(0.01)  # the device's pace
        assert not any(s.done() for s in submits)  # none acknowledged before the commit
        await asyncio.gather(*submits)
        assert buf.counters.dead_lettered == 20  # counted at commit: all on disk
        commits = buf.counters.commits - commits_before
    assert commits == 1


async def test_a_submit_made_as_the_reanchor_ends_does_not_overtake_its_waiters(
    tmp_path: Path,
) -> None:
    """Submits made on every turn of the event loop while the re-anchor runs and ends: one
    made after it finished but before the submits waiting for it had resumed once took the
    lower seq (seen in CI: a kiosk's status stored before its earlier event)."""
    async with _just_synced(tmp_path) as (buf, pipe):
        submits = [asyncio.create_task(pipe.submit([Reading("wl-1", "water_level", 0.001)]))]
        while not submits[0].done():  # the first starts the re-anchor; one more every turn
            value = (len(submits) + 1) / 1000  # metres, in range: none is refused
            submits.append(
                asyncio.create_task(pipe.submit([Reading("wl-1", "water_level", value)]))
            )
            await asyncio.sleep(0)
        await asyncio.gather(*submits)
        values: list[float] = []
        while recs := (await buf.read_batch(len(values), None, 100_000, hold_pending=False))[0]:
            values += [float(r.value or 0) for r in recs]  # a batch: one transaction's worth
    assert len(values) == len(submits) + 1
    assert values == sorted(values), "a later submit took a lower seq"
