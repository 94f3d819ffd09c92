"""Fixtures for the simulator's tests: scenario paths and a sim process helper."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.procs import HAMLET, ManagedProcess

SCENARIOS = Path(__file__).parent / "scenarios"


def scenario(name: str) -> str:
    return str(SCENARIOS / f"{name}.toml")


@contextmanager
def sim_process(*args: str) -> Iterator[ManagedProcess]:
    """``hamlet sim run ARGS`` as a real process, ready when it prints 'sim ready'."""
    mp = ManagedProcess([*HAMLET, "sim", "run", *args]).start()
    try:
        mp.wait_for(r"^sim ready$", timeout=30)
        yield mp
    finally:
        mp.stop()


def stats_of(mp: ManagedProcess) -> dict[str, int]:
    line = mp.wait_for(r"^sim stats (.*)$", timeout=20)
    return dict(json.loads(line.group(1)))


def signal_sim(mp: ManagedProcess, sig: signal.Signals) -> None:
    os.kill(mp.proc.pid, sig)
