"""Client of the running gateway's control socket (``<data_dir>/control.sock``).

JSON lines: send ``{"cmd":"status"}\\n`` -> one JSON object back; ``{"cmd":"tail"}\\n`` ->
one JSON object per committed record until we hang up.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

SOCKET_NAME: Final = "control.sock"
_MAX_LINE: Final = 4 * 1024 * 1024  # a status with many devices is big, but not this big


class NotRunning(Exception):
    """No gateway is listening on the control socket."""


class ControlError(Exception):
    """The gateway answered something we cannot read."""


def socket_path(data_dir: Path) -> Path:
    return data_dir / SOCKET_NAME


def _connect(path: Path, timeout: float | None) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as err:
        s.close()
        raise NotRunning(str(path)) from err
    except PermissionError as err:
        s.close()
        raise ControlError(
            f"no permission to open {path}: run as the gateway user or join its group "
            "(sudo usermod -aG hamlet $USER)"
        ) from err
    return s


def _lines(s: socket.socket) -> Iterator[bytes]:
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            if buf.strip():
                yield buf
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield line
        if len(buf) > _MAX_LINE:
            raise ControlError("the gateway sent a line longer than 4 MiB")


def _decode(line: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except ValueError as err:
        raise ControlError(f"not JSON from the gateway: {line[:100]!r}") from err
    if not isinstance(obj, dict):
        raise ControlError(f"expected a JSON object from the gateway, got {type(obj).__name__}")
    return obj


def status(path: Path, timeout: float = 10.0) -> dict[str, Any]:
    with _connect(path, timeout) as s:
        s.sendall(b'{"cmd":"status"}\n')
        for line in _lines(s):
            return _decode(line)
    raise ControlError("the gateway closed the connection without answering")


def tail(path: Path) -> Iterator[dict[str, Any]]:
    with _connect(path, None) as s:
        s.sendall(b'{"cmd":"tail"}\n')
        for line in _lines(s):
            yield _decode(line)
