"""Pseudo-terminals without socat: what a USB-serial adapter looks like to the gateway.

:class:`PtyPort` is one pty whose slave side is exposed at a stable symlink (like
``/dev/serial/by-id/usb-…``); the simulator writes into the master as a device would into
the UART. :class:`PtyBridge` is two ptys with a relay between their masters (a null-modem
cable), both slave sides symlinked: a program opens each end (pymodbus' server on one, the
gateway on the other). "Unplugging" removes the symlink and closes the pty, so the reader
gets EIO/hang-up exactly as with a real adapter; "replugging" makes a new pty and link.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import termios
import time
import tty
from pathlib import Path
from types import TracebackType
from typing import Self


class PtyError(Exception):
    """A pseudo-terminal or its symlink could not be made."""


def _link(target: str, link: Path) -> None:
    """Point ``link`` at ``target`` atomically (readers never see it half made)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _unlink_if_ours(link: Path, target: str) -> None:
    with contextlib.suppress(FileNotFoundError, OSError):
        if os.readlink(link) == target:
            link.unlink()


class _Pty:
    """One pty pair; we keep a slave fd open so the master never sees EIO between readers."""

    def __init__(self, link: Path) -> None:
        self.link = link
        try:
            self.master, self.slave = os.openpty()
        except OSError as err:
            raise PtyError(f"cannot allocate a pseudo-terminal: {err}") from err
        tty.setraw(self.slave)  # no echo, no CR/LF translation before a reader configures it
        os.set_blocking(self.master, False)
        self.name = os.ttyname(self.slave)
        try:
            _link(self.name, link)
        except OSError as err:
            self.close()
            raise PtyError(f"cannot create the link {link}: {err}") from err

    def flush_input(self) -> None:
        """Drop what no reader took (a UART with nobody listening loses bytes too)."""
        with contextlib.suppress(termios.error):
            termios.tcflush(self.slave, termios.TCIFLUSH)

    def unread(self) -> int:
        """Bytes written that no reader has taken yet."""
        try:
            buf = fcntl.ioctl(self.slave, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        return int(struct.unpack("i", buf)[0])

    def close(self) -> None:
        _unlink_if_ours(self.link, self.name)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class PtyPort:
    """A device-side serial port: ``write()`` bytes; the gateway reads them at ``link``."""

    def __init__(self, link: str | Path) -> None:
        self.link = Path(link)
        self._pty: _Pty | None = None
        self.dropped_bytes = 0
        self.written_bytes = 0
        self.backlog_flushes = 0  # times a full buffer's unread backlog was discarded

    @property
    def plugged(self) -> bool:
        return self._pty is not None

    def plug(self) -> None:
        if self._pty is None:
            self._pty = _Pty(self.link)

    def unplug(self) -> None:
        if self._pty is not None:
            self._pty.close()
            self._pty = None

    def write(self, data: bytes) -> int:
        """Write without blocking; bytes that do not fit are dropped (and counted)."""
        p = self._pty
        if p is None:
            self.dropped_bytes += len(data)
            return 0
        view = memoryview(data)
        done = 0
        for attempt in range(2):
            try:
                while done < len(view):
                    done += os.write(p.master, view[done:])
                break
            except BlockingIOError:
                if attempt == 0:
                    p.flush_input()  # nobody is reading: discard the stale backlog
                    self.backlog_flushes += 1
            except OSError:
                break
        self.written_bytes += done
        self.dropped_bytes += len(data) - done
        return done

    def drain(self, timeout_s: float) -> None:
        """Give a reader up to ``timeout_s`` to take what is still queued: closing a pty
        hangs it up, and the kernel discards what the reader had not read (the last frames
        would vanish without any fault to count). The kernel offers no event for "read", so
        this checks every 10 ms, only at shutdown."""
        deadline = time.monotonic() + timeout_s
        while self._pty is not None and self._pty.unread() and time.monotonic() < deadline:
            time.sleep(0.01)

    def __enter__(self) -> Self:
        self.plug()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unplug()


class PtyBridge:
    """Two symlinked pty ends joined by a relay: a null-modem cable in software."""

    def __init__(self, link_a: str | Path, link_b: str | Path) -> None:
        self.link_a = Path(link_a)
        self.link_b = Path(link_b)
        self._a: _Pty | None = None
        self._b: _Pty | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.relayed = {"a->b": 0, "b->a": 0}

    @property
    def b_plugged(self) -> bool:
        return self._b is not None

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._a = _Pty(self.link_a)
        self._loop.add_reader(self._a.master, self._pump, "a")
        self.plug_b()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unplug_b()
        if self._a is not None and self._loop is not None:
            self._loop.remove_reader(self._a.master)
            self._a.close()
            self._a = None

    def plug_b(self) -> None:
        """(Re)create the gateway's end, as a USB adapter appearing."""
        if self._b is None and self._loop is not None:
            self._b = _Pty(self.link_b)
            self._loop.add_reader(self._b.master, self._pump, "b")

    def unplug_b(self) -> None:
        """Remove the gateway's end, as a USB adapter pulled out."""
        if self._b is not None and self._loop is not None:
            self._loop.remove_reader(self._b.master)
            self._b.close()
            self._b = None

    def _pump(self, side: str) -> None:
        src, dst = (self._a, self._b) if side == "a" else (self._b, self._a)
        if src is None:
            return
        try:
            data = os.read(src.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            # EIO when nothing holds the slave side; we hold one, so this is rare.
            return
        if dst is None or not data:
            return  # the other end is unplugged: bytes fall on the floor, as on a real bus
        try:
            os.write(dst.master, data)
            self.relayed["a->b" if side == "a" else "b->a"] += len(data)
        except (BlockingIOError, OSError):
            dst.flush_input()
