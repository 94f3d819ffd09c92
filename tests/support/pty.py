"""A linked pair of real pseudo-terminals made by socat (what an installer would use)."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class PtyPair:
    a: str  # stable symlink paths, like /dev/serial/by-id/… on a Pi
    b: str
    proc: subprocess.Popen[bytes]


@contextmanager
def open_pty_pair() -> Iterator[PtyPair]:
    from tests.conftest import require_tool

    socat = require_tool("socat")
    with tempfile.TemporaryDirectory(prefix="hamlet-pty-") as d:
        a, b = str(Path(d) / "ttyA"), str(Path(d) / "ttyB")
        proc = subprocess.Popen(
            [socat, "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        try:
            assert proc.stderr is not None
            # socat says "starting data transfer loop" once both ends exist.
            for raw in proc.stderr:
                if b"starting data transfer loop" in raw:
                    break
            else:
                pytest.fail(f"socat exited before the pty pair was ready (rc={proc.wait()})")
            yield PtyPair(a=a, b=b, proc=proc)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stderr is not None:
                proc.stderr.close()
