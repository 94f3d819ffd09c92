"""Child processes for tests: started, watched line by line, and always reaped.

Readiness is an event (a line the program prints), never a sleep.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

HAMLET = [sys.executable, "-m", "hamlet"]
_PR_SET_PDEATHSIG = 1
# Loaded here, not in the child: between fork and exec only async-signal-safe calls belong.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL if the test runner dies, so a crashed or
    timed-out pytest never leaves brokers and gateways behind (Linux only)."""
    os.setsid()
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class ManagedProcess:
    """A child process whose merged output is collected line by line on a thread."""

    argv: Sequence[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None
    proc: subprocess.Popen[str] = field(init=False)
    lines: list[str] = field(default_factory=list, init=False)
    _q: queue.Queue[str | None] = field(default_factory=queue.Queue, init=False)

    def start(self) -> ManagedProcess:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(
            list(self.argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=self.cwd,
            # Its own process group (we can kill all it started), dying with its parent.
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - nothing threaded runs before exec
        )
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Block until a line matches ``pattern``; fail with the output so far if not."""
        rx = re.compile(pattern)
        for line in self.lines:
            m = rx.search(line)
            if m:
                return m
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(self._explain(f"no line matching {pattern!r} in {timeout}s"))
            try:
                got = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if got is None:
                raise RuntimeError(self._explain(f"process exited before {pattern!r}"))
            m = rx.search(got)
            if m:
                return m

    def _explain(self, what: str) -> str:
        tail = "\n".join(self.lines[-40:])
        return f"{what}; argv={list(self.argv)}; rc={self.proc.poll()}\n--- output ---\n{tail}"

    def kill9(self) -> None:
        """SIGKILL the whole process group, as a power cut would."""
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (a clean shutdown), then SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        # Reap anything left in the group (children it failed to stop).
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode


def run_hamlet(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    """Run ``hamlet ARGS`` to completion; return stdout, raise with output on failure."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    res = subprocess.run(
        [*HAMLET, *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if res.returncode != 0:
        raise RuntimeError(
            f"hamlet {' '.join(args)} exited {res.returncode}\n{res.stdout}\n{res.stderr}"
        )
    return res.stdout


@dataclass
class ServerProcess:
    process: ManagedProcess
    url: str
    data_dir: Path

    def add_gateway(self, gateway_id: str, hamlet: str = "dinh-phuoc") -> str:
        """Register a gateway through the real admin CLI; return its bearer token."""
        out = run_hamlet(
            "server",
            "add-gateway",
            gateway_id,
            "--hamlet",
            hamlet,
            "--data-dir",
            str(self.data_dir),
            "--json",
        )
        return str(json.loads(out)["token"])


def with_nofile_limit(limit: int) -> list[str]:
    """An argv prefix that runs the rest of the command under an open-file limit
    (what systemd and Docker give a service by default: 1,024)."""
    code = (
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit})); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    return [sys.executable, "-c", code]


@contextmanager
def start_server(
    data_dir: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    argv_prefix: Sequence[str] = (),
) -> Iterator[ServerProcess]:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {"HAMLET_SERVER__ENVIRONMENT": "development", **(env or {})}
    mp = ManagedProcess(
        [
            *argv_prefix,
            *HAMLET,
            "server",
            "run",
            "--data-dir",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            *extra,
        ],
        env=env,
    ).start()
    try:
        m = mp.wait_for(r"listening on (http://\S+)", timeout=60)
        yield ServerProcess(process=mp, url=m.group(1), data_dir=data_dir)
    finally:
        mp.stop()
