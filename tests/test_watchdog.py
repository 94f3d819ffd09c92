"""The watchdog behind pytest-timeout (tests/support/watchdog.py), in a pytest of its own.

Each case is a test hung the way one hung ``make test-fast`` for 16 minutes: pytest-timeout's
one SIGALRM is lost (swallowed where it lands, or the test fails and the loop's teardown then
waits for a task that ignores cancellation). The run must end with the test's id and the
stuck task's stack, not hang; an ordinary timeout must still just fail its test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

HUNG = """
import asyncio
import time

import pytest


@pytest.mark.timeout(1)
async def test_plain_timeout() -> None:
    await asyncio.sleep(60)  # pytest-timeout fails this one; the run goes on


def test_runs_after_a_plain_timeout() -> None:
    pass


async def deaf() -> None:
    while True:
        try:
            await asyncio.sleep(0.05)
        except BaseException:  # eats the cancellation and pytest-timeout's Failed alike
            pass


@pytest.mark.timeout(1)
async def test_deaf_task() -> None:
    task = asyncio.create_task(deaf())
    await asyncio.sleep(0.1)
    task.cancel()
    await task


@pytest.mark.timeout(1)
async def test_alarm_in_a_callback() -> None:
    # The loop is nearly always inside a callback, where asyncio's Handle._run hands an
    # exception from the signal handler to the loop's exception handler.
    loop = asyncio.get_running_loop()

    def busy() -> None:
        end = time.monotonic() + 0.2
        while time.monotonic() < end:
            pass
        loop.call_soon(busy)

    loop.call_soon(busy)
    await asyncio.Event().wait()
"""


def _run(tmp_path: Path, *select: str) -> tuple[subprocess.CompletedProcess[str], float]:
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    (tmp_path / "test_hung.py").write_text(textwrap.dedent(HUNG))
    env = {**os.environ, "PYTHONPATH": str(REPO), "HAMLET_TEST_WATCHDOG_GRACE_S": "1"}
    argv = [sys.executable, "-m", "pytest", "-p", "tests.support.watchdog", "-q"]
    argv += [
        "-p",
        "no:cacheprovider",
        "-c",
        str(tmp_path / "pytest.ini"),
        "--rootdir",
        str(tmp_path),
    ]
    argv += [f"{tmp_path / 'test_hung.py'}::{name}" for name in select]
    t0 = time.monotonic()
    # The bound is for this test only: without the watchdog the child would never end.
    proc = subprocess.run(
        argv, check=False, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
    )
    return proc, time.monotonic() - t0


def test_a_plain_timeout_fails_one_test_and_the_run_goes_on(tmp_path: Path) -> None:
    proc, _ = _run(tmp_path, "test_plain_timeout", "test_runs_after_a_plain_timeout")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 1 passed" in proc.stdout, proc.stdout
    assert "WATCHDOG" not in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    ("name", "stuck_at"),
    [
        ("test_deaf_task", "await asyncio.sleep(0.05)"),
        ("test_alarm_in_a_callback", "Event().wait()"),
    ],
)
def test_a_hang_the_timeout_cannot_stop_ends_the_run(
    tmp_path: Path, name: str, stuck_at: str
) -> None:
    proc, took = _run(tmp_path, name, "test_runs_after_a_plain_timeout")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"WATCHDOG: test_hung.py::{name} still running" in proc.stderr, proc.stderr
    # The stuck task's own stack is printed, not only the event loop's.
    assert stuck_at in proc.stderr, proc.stderr
    assert "passed" not in proc.stdout  # the run ended there
    # 1 s timeout + 1 s grace, plus starting pytest on a loaded machine; never the 60 s bound.
    assert took < 30, took
