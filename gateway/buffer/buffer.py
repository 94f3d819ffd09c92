"""The durable buffer as the event loop sees it: group commit on one writer thread.

``await append(records)`` returns only once the records are committed (fsynced WAL). The
commit happens at most ``durability_window_s`` after the first waiting record arrived (60 s
by default: at a hamlet's few readings a second an SD card is written once per window, not
once per reading), or as soon as the group is big enough to spread its fsync (see
:meth:`DurableBuffer._window`). Sources acknowledge only after the commit, so the window is
also the longest a device waits for its acknowledgement, and what a power cut can lose is
only what the devices will resend. Every SQLite call runs on one dedicated thread; the loop
never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import ParamSpec, TypeVar

from gateway import deadletter
from gateway.buffer.budget import Budget
from gateway.buffer.config import BufferConfig
from gateway.buffer.records import (
    DUPLICATE,
    REFUSED,
    BufferError,
    NewRecord,
    PendingGap,
    StoredRecord,
)
from gateway.buffer.refusal import refused_letter
from gateway.buffer.store import Counters, Store
from gateway.clock import Anchor

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

__all__ = [
    "DUPLICATE",
    "REFUSED",
    "BufferError",
    "DurableBuffer",
    "NewRecord",
    "PendingGap",
    "StoredRecord",
]


class DurableBuffer:
    """Async facade over :class:`Store`; an async context manager owning its commit task.

    The store is not exposed: callers outside gateway/buffer/ use the methods below, so all
    SQLite work stays on the buffer's one thread.
    """

    def __init__(self, config: BufferConfig, data_dir: Path, boot_id: str) -> None:
        self.config = config
        # Private: everything outside the package goes through the typed methods below.
        self._store = Store(config, data_dir, boot_id)
        self._exec: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: list[tuple[Sequence[NewRecord], asyncio.Future[list[int]]]] = []
        self._pending_n = 0
        self._dead: list[deadletter.DeadLetter] = []
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = False
        self._committing = False
        self._first_at = 0.0
        # Someone (status, shutdown) waits for what is queued: commit it without the window.
        self._now = False
        # Set after every commit that added records: the uplink waits on it.
        self.committed = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------
    async def __aenter__(self) -> DurableBuffer:
        self._exec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hamlet-buffer")
        try:
            await self._run(self._store.open)
        except BaseException:
            self._exec.shutdown(wait=True)
            raise
        self._task = asyncio.create_task(self._committer(), name="buffer-committer")
        return self

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The long-lived task, for the gateway's supervision."""
        return self._task

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        self._wake.set()
        self._full.set()
        if self._task is not None:
            # Final commit: whatever is waiting is written before the file closes.
            try:
                await asyncio.shield(self._task)
            except asyncio.CancelledError:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                raise
            finally:
                if self._exec is not None:
                    await asyncio.get_running_loop().run_in_executor(
                        self._exec, self._store.shutdown
                    )
                    self._exec.shutdown(wait=True)
                    self._exec = None

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._exec is None:
            raise BufferError("buffer is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._exec, lambda: fn(*args, **kwargs))

    # -- appends --------------------------------------------------------------------
    async def append(self, records: Sequence[NewRecord]) -> int:
        """Commit ``records``; returns the first seq assigned (or the next one, if none was)."""
        outcomes = await self.store_records(records)
        stored = [o for o in outcomes if o > 0]
        return stored[0] if stored else self._store.seqs.next

    async def store_records(self, records: Sequence[NewRecord]) -> list[int]:
        """Commit ``records``; one outcome per record: its seq, DUPLICATE or REFUSED."""
        return await self.enqueue(records)

    def enqueue(self, records: Sequence[NewRecord]) -> asyncio.Future[list[int]]:
        """Queue ``records`` for the next group commit, behind everything queued before (seqs
        follow the order of the calls); the future of their outcomes, as ``store_records``."""
        if self._closing:
            raise BufferError("buffer is closing")
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._enqueue(records, fut)
        return fut

    def _enqueue(self, records: Sequence[NewRecord], fut: asyncio.Future[list[int]]) -> None:
        if not self._pending and not self._dead:
            self._first_at = time.monotonic()
        self._pending.append((records, fut))
        self._pending_n += len(records)
        cfg = self.config
        if (
            self._pending_n >= min(cfg.commit_min_group, cfg.commit_max_records)
            or len(self._pending) >= cfg.commit_max_waiters
        ):
            self._full.set()
        self._wake.set()

    def put_dead(self, letter: deadletter.DeadLetter) -> None:
        """Keep a dead letter; it is written with the next group commit (no extra fsync)."""
        if not self._pending and not self._dead:
            self._first_at = time.monotonic()
        self._dead.append(letter)
        self._wake.set()

    async def _window(self) -> None:
        """Wait until the waiting group should be committed.

        A group is committed when it is ``commit_max_records`` big, or its oldest record has
        waited ``durability_window_s``, or it holds ``commit_min_group`` records or
        ``commit_max_waiters`` submits and has waited ``commit_min_interval_ms``: such a
        group already spreads its fsync over enough readings, and a source that submits one
        batch at a time (MQTT with a bounded in-flight window) or keeps a bounded number of
        submits in flight (serial) must not be throttled to one batch per full window.
        """
        cfg = self.config
        while not self._closing and not self._now and self._pending_n < cfg.commit_max_records:
            age = time.monotonic() - self._first_at
            big = (
                self._pending_n >= cfg.commit_min_group
                or len(self._pending) >= cfg.commit_max_waiters
            )
            left = (cfg.commit_min_interval_ms / 1000 if big else cfg.window_s) - age
            if left <= 0:
                return
            self._full.clear()
            if big:
                await asyncio.sleep(left)  # the short floor: nothing to wait for but time
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._full.wait()

    async def _committer(self) -> None:
        while True:
            if not self._pending and not self._dead:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._window()
            batch, self._pending, self._pending_n = self._pending, [], 0
            self._now = False
            dead, self._dead = self._dead, []
            records: list[NewRecord] = []
            for recs, _ in batch:
                records.extend(recs)
            self._committing = True
            try:
                try:
                    outcomes = await self._run(self._store.commit, records, dead)
                except (BufferError, OSError):
                    raise
                except Exception as err:  # noqa: BLE001 - isolated and dead-lettered below
                    # A fault of ours on some record (not bad data: the store refuses that
                    # itself). Failed once in the group; now each record alone, and one that
                    # fails again is dead-lettered: it cannot stop the committer, now or
                    # after a restart that brings it back.
                    log.error("buffer: commit failed (%r); retrying record by record", err)  # noqa: TRY400
                    outcomes = await self._run(self._one_by_one, records, dead)
            except asyncio.CancelledError:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(BufferError("buffer stopped before commit"))
                raise
            except (BufferError, OSError) as err:
                log.error("buffer: commit of %d records failed: %s", len(records), err)  # noqa: TRY400
                self._dead[:0] = dead  # kept for the next commit; the sources retry theirs
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(BufferError(str(err)))
                continue
            finally:
                self._committing = False
            offset = 0
            for recs, fut in batch:
                if not fut.done():
                    fut.set_result(outcomes[offset : offset + len(recs)])
                offset += len(recs)
            if any(o > 0 for o in outcomes):
                self.committed.set()

    def _one_by_one(
        self, records: Sequence[NewRecord], dead: Sequence[deadletter.DeadLetter]
    ) -> list[int]:
        """On the buffer thread: commit each record alone; one that fails again is refused."""
        self._store.commit([], dead)
        outcomes: list[int] = []
        for r in records:
            try:
                outcomes.extend(self._store.commit([r], []))
            except (BufferError, OSError):
                raise
            except Exception as err:  # noqa: BLE001 - the second failure: dead-letter it
                reason = f"failed_twice: committing raised {type(err).__name__}: {err}"
                self._store.commit([], [refused_letter(r, reason)])
                self._store.counters.refused += 1
                outcomes.append(REFUSED)
        return outcomes

    # -- uplink side ----------------------------------------------------------------
    async def read_batch(
        self, after: int, upto: int | None, limit: int, *, hold_pending: bool
    ) -> tuple[list[StoredRecord], list[PendingGap]]:
        return await self._run(self._store.read_batch, after, upto, limit, hold_pending)

    async def confirm(self, seqs: Sequence[int], gap_firsts: Sequence[int]) -> int:
        return await self._run(self._store.confirm, seqs, gap_firsts)

    async def give_up(self, seqs: Sequence[int], dead: Sequence[deadletter.DeadLetter]) -> int:
        return await self._run(self._store.give_up, seqs, dead)

    async def release(self) -> None:
        await self._run(self._store.release)

    async def reanchor(self, anchor: Anchor) -> int:
        return await self._run(self._store.reanchor, anchor)

    async def mark_unsynced(self) -> int:
        return await self._run(self._store.mark_unsynced)

    @property
    def last_seq(self) -> int:
        return self._store.seqs.next - 1

    @property
    def depth(self) -> int:
        return self._store.depth

    @property
    def counters(self) -> Counters:
        return self._store.counters

    @property
    def budget(self) -> Budget:
        """How ``max_bytes`` is split, sized by the open file's own page size."""
        return self._store.budget

    async def oldest(self) -> tuple[int, str, int, int] | None:
        return await self._run(self._store.oldest)

    async def file_bytes(self) -> int:
        return await self._run(self._store.file_bytes)

    async def used_bytes(self) -> int:
        """Bytes of the database file's pages in use (free pages not counted)."""
        return await self._run(self._store.used_bytes)

    async def dead_summary(
        self, n: int = 20
    ) -> tuple[int, dict[str, int], list[deadletter.DeadLetter]]:
        if self._dead:
            await self.flush()
        return await self._run(self._store.dead_summary, n)

    async def durable(self) -> None:
        """Wait until everything queued so far (records, dead letters) is committed, by the
        group commit that takes it: no commit of its own, so a device sending nothing but bad
        input costs no more fsyncs than one sending good readings (one a window)."""
        if self._pending or self._dead or self._committing:
            await self.store_records([])

    async def flush(self) -> None:
        """Wait until everything queued so far (records, dead letters) is committed, now."""
        # A commit under way may hold some of it: the next one comes after it.
        if self._pending or self._dead or self._committing:
            self._now = True
            self._full.set()
            await self.append([])

    async def pending_gaps(self) -> list[PendingGap]:
        return await self._run(self._store.pending_gaps)

    async def count_kinds(self, device: str | None = None) -> dict[str, int]:
        """Records buffered per kind; of one device only, when ``device`` is given."""
        return await self._run(self._store.count_kinds, device)
