"""Long-lived components as async context managers that own their asyncio tasks.

Tasks start on entry and are cancelled and awaited on exit, so none outlives its owner. A
task that had already crashed re-raises its exception on exit: a component that died is
never stopped as though it had been healthy. Used by the gateway (uplink, heartbeat, control
socket) and the server (notifier), hence here at the bottom of the layers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from types import TracebackType
from typing import Any, Self


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait for all of them; re-raise what any of them crashed with.

    Only the tasks' own cancellation is absorbed: a cancellation of the caller while it
    waits propagates.
    """
    tasks = list(tasks)
    for t in tasks:
        t.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    crashes = [
        r
        for r in results
        if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
    ]
    if len(crashes) == 1:
        raise crashes[0]
    if crashes:
        raise BaseExceptionGroup("tasks crashed", crashes)


class TaskOwner:
    """Base class: start tasks with :meth:`_spawn` in :meth:`_start`; they stop on exit.

    A subclass with more to set up or tear down overrides ``__aenter__``/``__aexit__`` and
    calls these (``super().__aexit__`` before closing what the tasks use).
    """

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def _start(self) -> None:
        """Start the owned tasks (called on entry)."""

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The first (for most owners, the only) task, for the gateway's supervision."""
        return self._tasks[0] if self._tasks else None

    async def __aenter__(self) -> Self:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await stop_tasks(self._tasks)
