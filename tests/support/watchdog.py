"""A backstop behind pytest-timeout: a test that outlives its timeout ends the run, loudly.

pytest-timeout's signal method raises from a SIGALRM handler, once. That exception can be
lost: raised while the event loop runs a callback, ``asyncio.Handle._run`` hands it to the
loop's exception handler; and when it does fail the test, pytest-asyncio's loop teardown
then cancels the leftover tasks and waits for them, which never ends if one ignores (or a
library under it swallows) the cancellation. Either way the run hangs with no timer left.
So each test also gets a watchdog thread: ``GRACE_S`` after the test's own timeout it prints
the test's id and the stacks of every thread and asyncio task to the real stderr and exits
the process (status 1); faulthandler's C thread dumps the threads and exits a little later
if that thread cannot get the GIL.
The signal method stays the first line: it fails one test and lets the run go on.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import io
import os
import sys
import threading
from collections.abc import Generator

import pytest

# Teardown after a timeout failure gets this long; beyond it the run is wedged. The
# variable is for the watchdog's own test, which cannot wait a minute.
GRACE_S = float(os.environ.get("HAMLET_TEST_WATCHDOG_GRACE_S", "60"))
_LAST_RESORT_S = 10.0  # after the watchdog thread, for a main thread holding the GIL
# The real stderr, duplicated before output capture swaps fd 2 during each test.
_STDERR_FD = pytest.StashKey[int]()


def item_timeout(item: pytest.Item) -> float:
    """The item's pytest-timeout limit in seconds (0: none), marker before ini/option."""
    marker = item.get_closest_marker("timeout")
    if marker is not None:
        value = marker.kwargs.get("timeout", marker.args[0] if marker.args else None)
        if value is not None:
            return float(value)
    # pytest-timeout's own resolution of PYTEST_TIMEOUT, --timeout and the ini value.
    return float(getattr(item.config, "_env_timeout", None) or 0)


def _expire(nodeid: str, limit: float, fd: int) -> None:
    msg = (
        f"\n\nWATCHDOG: {nodeid} still running {limit + GRACE_S:g} s after it started; its "
        f"{limit:g} s timeout did not stop it (a task that ignores cancellation?). "
        "Stacks of every thread and asyncio task follow; exiting.\n"
    )
    os.write(fd, msg.encode())
    faulthandler.dump_traceback(file=fd, all_threads=True)
    os.write(fd, _asyncio_tasks().encode())
    os._exit(1)


def _asyncio_tasks() -> str:
    """Where every task of a running event loop waits: the stuck one is among them.

    Read from this thread while the loop's own is wedged: good enough for a last word.
    """
    out = io.StringIO()
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]
    for loop in loops:
        if not loop.is_running():
            continue
        for task in list(asyncio.all_tasks(loop)):
            out.write(f"\nasyncio {task!r}\n")
            task.print_stack(file=out)
    return out.getvalue()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_STDERR_FD] = os.dup(sys.stderr.fileno())


def pytest_unconfigure(config: pytest.Config) -> None:
    os.close(config.stash[_STDERR_FD])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    limit = item_timeout(item)
    if limit <= 0:
        return (yield)
    fd = item.config.stash[_STDERR_FD]
    timer = threading.Timer(limit + GRACE_S, _expire, (item.nodeid, limit, fd))
    timer.name = f"watchdog {item.nodeid}"
    timer.daemon = True
    timer.start()
    # One process-wide faulthandler timer: pytest's own faulthandler_timeout must stay unset.
    faulthandler.dump_traceback_later(limit + GRACE_S + _LAST_RESORT_S, exit=True, file=fd)
    try:
        return (yield)
    finally:
        faulthandler.cancel_dump_traceback_later()
        timer.cancel()


@pytest.hookimpl(tryfirst=True)
def pytest_enter_pdb() -> None:
    """A debugging session is not a hang: stand down (pytest-timeout does the same)."""
    faulthandler.cancel_dump_traceback_later()
    for t in threading.enumerate():
        if isinstance(t, threading.Timer) and t.name.startswith("watchdog "):
            t.cancel()
