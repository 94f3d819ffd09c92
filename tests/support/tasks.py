"""Stopping a component's task in a test without letting a stuck one hang the run."""

from __future__ import annotations

import asyncio

import pytest

# A source stops at its next await; seconds of slack only for a loaded CI machine.
STOP_WITHIN_S = 10.0


async def cancel_and_wait(task: asyncio.Task[object], within: float = STOP_WITHIN_S) -> None:
    """Cancel ``task`` and wait for it to end, failing the test if it does not in time.

    ``asyncio.wait`` does not cancel what it waits for, so a task that ignores (or a library
    under it swallows) the cancellation gives a clear failure here instead of an
    ``await task`` that never returns. Exceptions other than the cancellation propagate.
    """
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=within)
    if not done:
        pytest.fail(
            f"task {task.get_name()} did not stop within {within:g} s of its cancellation",
            pytrace=False,
        )
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
