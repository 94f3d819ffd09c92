"""hamlet.tasks: a component's tasks start on entry, stop on exit, and a crash is not lost."""

from __future__ import annotations

import asyncio

import pytest

from hamlet.tasks import TaskOwner, stop_tasks


class Worker(TaskOwner):
    """Two tasks: one that runs until cancelled, one that may crash when told to."""

    def __init__(self, crash: BaseException | None = None) -> None:
        super().__init__()
        self.crash = crash
        self.running = asyncio.Event()
        self.go = asyncio.Event()
        self.cleaned: list[str] = []

    def _start(self) -> None:
        self._spawn(self._forever(), "worker-forever")
        self.crasher = self._spawn(self._maybe_crash(), "worker-crash")

    async def _forever(self) -> None:
        try:
            self.running.set()
            await asyncio.Event().wait()
        finally:
            self.cleaned.append("forever")

    async def _maybe_crash(self) -> None:
        await self.go.wait()
        if self.crash is not None:
            raise self.crash


async def test_tasks_start_on_entry_and_are_awaited_on_exit() -> None:
    async with Worker() as w:
        await w.running.wait()
        assert w.task is not None
        assert w.task.get_name() == "worker-forever"
        assert not w.task.done()
    # Exit returned only after the task ran its clean-up.
    assert w.cleaned == ["forever"]
    assert w.task.cancelled()


async def test_a_crashed_task_is_raised_on_exit_not_swallowed() -> None:
    w = await Worker(crash=OSError(5, "Input/output error")).__aenter__()
    w.go.set()
    await asyncio.wait([w.crasher])
    with pytest.raises(OSError, match="Input/output error"):
        await w.__aexit__(None, None, None)
    assert w.cleaned == ["forever"]  # the healthy task was still stopped


async def test_several_crashes_are_all_raised() -> None:
    async def boom(err: Exception) -> None:
        raise err

    tasks = [asyncio.create_task(boom(ValueError("a"))), asyncio.create_task(boom(KeyError("b")))]
    await asyncio.wait(tasks)
    with pytest.raises(BaseExceptionGroup) as info:
        await stop_tasks(tasks)
    assert [type(e) for e in info.value.exceptions] == [ValueError, KeyError]


async def test_a_cancelled_caller_is_not_swallowed() -> None:
    """The caller cancelled while a task winds down: the cancellation reaches the caller."""
    started, winding, release = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            winding.set()
            await release.wait()  # a clean-up that takes a while

    task = asyncio.create_task(slow_to_stop())
    await started.wait()
    stopper = asyncio.create_task(stop_tasks([task]))
    await winding.wait()
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
