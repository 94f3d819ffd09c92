"""Hand parsed records to the pipeline without making the reader wait for the commit.

``sink.submit`` returns after the group commit (up to ``durability_window_s``; sooner once
``commit_max_waiters`` submits wait, which is below ``MAX_INFLIGHT``). A reader that awaited
it read the port once per commit window: the bytes of a 115,200-baud line queued in the tty
meanwhile, and each frame waited a window in the tty *and* a window in the buffer. Here
every chunk's records are submitted at once, in their own task, and the buffer joins
concurrent submits into one group commit; the reader goes straight back to the port. At
most ``max_inflight`` submits run at a time: beyond that the reader waits (back-pressure
reaches the tty, never memory).

The records of one chunk keep their order, and chunks reach the buffer in the order they
were submitted (the pipeline holds every submit behind a clock re-anchor in progress, in
call order), so a later chunk never takes lower seqs.

Serial has nothing to acknowledge, so committing in the background loses nothing a
blocking reader would have kept; on stop, the submits in flight are awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Final

from gateway.records import Record, Sink
from gateway.sources.base import SourceState

# Above the buffer's commit_max_waiters (256): a window of frames at a hamlet's rate meets
# in one group commit, and a faster line is committed before the reader has to wait.
MAX_INFLIGHT: Final = 512
# How long a stopping source waits for its submits in flight to be committed.
DRAIN_TIMEOUT_S: Final = 10.0


class Handoff:
    """Owns the submit tasks of one source. Use as an async context manager."""

    def __init__(self, sink: Sink, state: SourceState, max_inflight: int = MAX_INFLIGHT) -> None:
        self._sink = sink
        self._state = state
        self._slots = asyncio.Semaphore(max_inflight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None

    async def __aenter__(self) -> Handoff:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        # Commit what was read before stopping (the buffer outlives the sources).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                await self.drain()
        for t in self._tasks:
            t.cancel()

    async def drain(self) -> None:
        """Return once every submit started so far has finished (committed or failed)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def submit(self, records: Sequence[Record]) -> None:
        """Start committing ``records``; wait only while ``max_inflight`` submits run."""
        if self._failure is not None:
            raise self._failure
        await self._slots.acquire()
        task = asyncio.create_task(self._submit(records), name=f"{self._state.name}-submit")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The sink promises not to raise; if it does, the reader re-raises it on its next
            # submit and the gateway's supervisor restarts the source.
            self._failure = task.exception()

    async def _submit(self, records: Sequence[Record]) -> None:
        try:
            await self._sink.submit(records)
        finally:
            self._slots.release()
        self._state.last_reading_at = time.time()
        self._state.count("records", len(records))
