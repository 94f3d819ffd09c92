"""Shared fixtures: real broker, real pseudo-terminals, real server process, temp dirs.

Tests that need a tool the machine lacks skip on a developer's machine and *fail* in CI
(``HAMLET_STRICT_TESTS=1``, set by ``.ci/run``), so a missing install step cannot hide.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker, start_broker
from tests.support.procs import ServerProcess, start_server
from tests.support.pty import PtyPair, open_pty_pair
from tests.support.slowness import is_slow

# Behind pytest-timeout, a watchdog that ends a wedged run with stack traces.
pytest_plugins = ["tests.support.watchdog"]

STRICT = os.environ.get("HAMLET_STRICT_TESTS") == "1"
# The repository root, for tests that read docs/, examples/ or templates (independent of
# how deep the test file sits).
REPO = Path(__file__).resolve().parent.parent


def require_tool(name: str) -> str:
    """Path of ``name`` on PATH; skip without it, or fail under HAMLET_STRICT_TESTS=1."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name!r} is not installed (apt-get install {name})"
        if STRICT:
            pytest.fail(f"{msg}; HAMLET_STRICT_TESTS=1 forbids skipping", pytrace=False)
        pytest.skip(msg)
    return path


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the slow tests, which ``make test-fast`` leaves out (rules: support/slowness.py)."""
    root = Path(__file__).parent
    for item in items:
        if is_slow(item, root):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[Broker]:
    """A real MQTT broker on an ephemeral port: Mosquitto if installed, else amqtt."""
    use_mosquitto = shutil.which("mosquitto") is not None
    if not use_mosquitto and STRICT:
        require_tool("mosquitto")
    with start_broker(tmp_path / "broker", prefer_mosquitto=use_mosquitto) as broker:
        yield broker


@pytest.fixture
def amqtt_broker(tmp_path: Path) -> Iterator[Broker]:
    """The embedded amqtt broker (what ``hamlet demo`` uses), always."""
    with start_broker(tmp_path / "broker", prefer_mosquitto=False) as broker:
        yield broker


@pytest.fixture
def pty_pair() -> Iterator[PtyPair]:
    """A connected pair of pseudo-terminals: write on ``a``, read on ``b`` and back."""
    with open_pty_pair() as pair:
        yield pair


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """``hamlet server run`` as a real process on an ephemeral port with a fresh SQLite store."""
    with start_server(tmp_path / "server") as proc:
        yield proc


@pytest.fixture
def python() -> str:
    return sys.executable
