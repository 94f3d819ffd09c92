"""The server's SQLite database behind an async face: one writer thread, a few readers.

Every write runs on a single dedicated thread holding the only writing connection, so the
event loop never blocks and writes within a process never contend; several uvicorn worker
processes serialize on SQLite's own lock (``BEGIN IMMEDIATE`` + busy timeout). Reads run on
a small pool of threads with their own connections, beside the writer thanks to WAL.

Group commit: ingest jobs waiting for the writer run together in one transaction, each in
its own SAVEPOINT (a failing job rolls back alone), then one COMMIT settles them all. With
200 gateways posting small batches this turns 200 commits into a handful, and no job is
answered before the commit that contains it returned.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, Final, ParamSpec, Self, TypeVar

from server.store.schema import StoreUnavailable, connect, open_db

P = ParamSpec("P")
T = TypeVar("T")


GROUP_MAX: Final = 64  # jobs per group commit: bounds how long one transaction holds the lock


@dataclass(slots=True)
class _Job:
    fn: Callable[[], object]
    loop: asyncio.AbstractEventLoop
    fut: asyncio.Future[Any]
    grouped: bool = True  # False: runs alone and manages its own transaction


def _settle(fut: asyncio.Future[Any], ok: bool, value: object) -> None:
    if fut.cancelled():
        return
    if ok:
        fut.set_result(value)
    else:
        assert isinstance(value, BaseException)
        fut.set_exception(value)


class Database:
    """Async context manager owning the writer thread and reader pool."""

    def __init__(
        self,
        path: Path,
        *,
        readers: int = 4,
        busy_timeout_ms: int = 30_000,
        group_max: int = GROUP_MAX,
    ) -> None:
        self.path = path
        self._group_max = group_max
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._busy = busy_timeout_ms
        self._readers_n = readers
        self._readers: ThreadPoolExecutor | None = None
        self._wconn: sqlite3.Connection | None = None
        self._local = threading.local()
        self._rconns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    async def __aenter__(self) -> Self:
        # Create/upgrade the schema before anything else touches the file.
        self._wconn = await asyncio.to_thread(open_db, self.path, busy_timeout_ms=self._busy)
        self._thread = threading.Thread(target=self._group_loop, name="sqlite-group-writer")
        self._thread.start()
        self._readers = ThreadPoolExecutor(self._readers_n, thread_name_prefix="sqlite-reader")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Let queued writes finish: each was promised to a waiting request.
        if self._thread is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self._readers is not None:
            await asyncio.to_thread(self._readers.shutdown, wait=True)
        self._readers = None
        if self._wconn is not None:
            self._wconn.close()
            self._wconn = None
        with self._lock:
            for c in self._rconns:
                c.close()
            self._rconns.clear()

    @property
    def writer_conn(self) -> sqlite3.Connection:
        if self._wconn is None:
            raise StoreUnavailable("database is not open")
        return self._wconn

    def _reader_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, busy_timeout_ms=self._busy, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._rconns.append(conn)
        return conn

    async def write(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(conn, *args, **kwargs)`` alone on the writer thread (it manages its
        transaction). ``P`` ties the arguments to ``fn``'s own signature, so mypy checks
        every call site."""
        return await self._enqueue(partial(fn, self.writer_conn, *args, **kwargs), grouped=False)

    async def write_grouped(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(conn, *args, **kwargs)`` inside a shared write transaction (group commit).

        ``fn`` must not BEGIN or COMMIT. It returns once the transaction holding it committed.
        """
        return await self._enqueue(partial(fn, self.writer_conn, *args, **kwargs), grouped=True)

    async def _enqueue(self, call: Callable[[], T], *, grouped: bool) -> T:
        """Hand ``call`` to the writer thread; wait for the commit that settles it."""
        if self._thread is None:
            raise StoreUnavailable("database is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(call, loop, fut, grouped))
        return await fut

    def _group_loop(self) -> None:
        conn = self.writer_conn
        carry: _Job | None = None
        while True:
            first = carry if carry is not None else self._jobs.get()
            carry = None
            if first is None:
                return
            if not first.grouped:
                self._run_alone(first)
                continue
            group = [first]
            stop = False
            while len(group) < self._group_max:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if not nxt.grouped:
                    carry = nxt  # runs right after this group, outside its transaction
                    break
                group.append(nxt)
            self._run_group(conn, group)
            if stop:
                return

    @staticmethod
    def _run_alone(job: _Job) -> None:
        try:
            value = job.fn()
        except BaseException as err:  # noqa: BLE001 -- handed to the job's awaiter
            job.loop.call_soon_threadsafe(_settle, job.fut, False, err)
        else:
            job.loop.call_soon_threadsafe(_settle, job.fut, True, value)

    @staticmethod
    def _run_group(conn: sqlite3.Connection, group: list[_Job]) -> None:
        outcomes: list[tuple[bool, object]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in group:
                conn.execute("SAVEPOINT job")
                try:
                    outcomes.append((True, job.fn()))
                except BaseException as err:  # noqa: BLE001 -- handed to the job's awaiter
                    conn.execute("ROLLBACK TO job")
                    outcomes.append((False, err))
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(False, err)] * len(group)
        for job, (ok, value) in zip(group, outcomes, strict=True):
            job.loop.call_soon_threadsafe(_settle, job.fut, ok, value)

    async def read(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(conn, *args, **kwargs)`` on a reader thread with its own connection."""
        if self._readers is None:
            raise StoreUnavailable("database is closed")
        loop = asyncio.get_running_loop()

        def run() -> T:
            return fn(self._reader_conn(), *args, **kwargs)

        return await loop.run_in_executor(self._readers, run)
