"""The gateway's control plane as a typed protocol: the socket, its messages and one client.

JSON lines over the Unix socket ``<data_dir>/control.sock`` (docs/store-and-forward.md):
the client sends one line, ``{"cmd": "status"}`` -> one :class:`StatusSnapshot` line back,
then the server closes; ``{"cmd": "tail"}`` -> one :class:`TailLine` per committed record
until the client hangs up; anything else -> one :class:`ErrorReply`.

The server side is ``gateway/control.py`` (it produces these models); ``hamlet gateway
status/tail``, the demo, the benches and the tests read them through :func:`status` and
:func:`tail`. Only pydantic and the standard library here, so any caller can import it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from gateway.sources.base import SourceStatus

SOCKET_NAME: Final = "control.sock"
MAX_REQUEST: Final = 4096
MAX_LINE: Final = 4 * 1024 * 1024  # a status with many devices is big, but not this big


def socket_path(data_dir: Path) -> Path:
    return data_dir / SOCKET_NAME


class UplinkState(StrEnum):
    STARTING = "starting"
    UP = "up"
    DOWN = "down"  # server unreachable or failing; backing off
    AUTH_FAILED = "auth_failed"  # token refused; data kept, retrying


class _Model(BaseModel):
    # Both ends are the same installed package: a field one side does not know is a bug.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Request(_Model):
    cmd: Literal["status", "tail"]


class ErrorReply(_Model):
    error: str


class ClockInfo(_Model):
    synced: bool
    boot_id: str


class BufferInfo(_Model):
    depth: int
    bytes: int
    max_bytes: int
    oldest_unsent_age_s: float | None
    last_seq: int


class UplinkInfo(_Model):
    state: UplinkState
    last_upload_at: float | None
    last_error: str | None
    uploaded: int
    rejected: int
    batches: int
    bytes_sent: int
    backoff_s: float
    batch_size: int


class Health(_Model):
    """Dead components and failed sources: no failures and zero counts is a healthy gateway."""

    components: dict[str, str]
    failures: dict[str, str]
    previous_failure: dict[str, Any] | None  # what ended the previous run, as it was written
    components_failed: int
    sources_failed: int
    previous_run_failed: int


class SourceInfo(_Model):
    name: str
    kind: str
    status: SourceStatus
    since: float
    last_reading_at: float | None
    last_error: str | None
    counters: dict[str, int]
    devices: dict[str, dict[str, int | float | str | None]]


class DeadLetterInfo(_Model):
    at: float
    source: str
    reason: str
    raw: str


class DeadLetters(_Model):
    count: int
    by_reason: dict[str, int]
    recent: list[DeadLetterInfo]


class EdgeInfo(_Model):
    """``[edge_alerts]``: danger alerts by SMS from the gateway's own modem (docs/notify.md)."""

    modem_ready: bool
    plan_version: str | None  # the subscribers' plan in use; None: none yet, nobody to warn
    open_alerts: int  # episodes going on (kept on disk across restarts)
    sms_sent: int
    sms_unreported: int  # sent while the uplink was down; the server learns of them later
    sms_in_modem: int  # stored in the modem, not yet settled (a lost answer, a crash)
    repeats: int  # offers of an alert already sent: SMS not sent twice
    errors: list[str]  # newest last


class StatusSnapshot(_Model):
    gateway: str
    pid: int
    uptime_s: float
    clock: ClockInfo
    buffer: BufferInfo
    uplink: UplinkInfo
    counters: dict[str, int]
    health: Health
    sources: list[SourceInfo]
    dead_letters: DeadLetters
    edge: EdgeInfo | None = None  # None: edge alerts are off


class TailLine(_Model):
    """One committed record: a reading (``metric``/``value``) or an event (``name``/``attrs``)."""

    seq: int
    kind: str
    device: str
    t: int
    source: str
    tq: int | None = None
    metric: str | None = None
    value: float | None = None
    name: str | None = None
    attrs: dict[str, Any] | None = None


def encode(msg: BaseModel) -> bytes:
    return msg.model_dump_json(exclude_none=isinstance(msg, TailLine)).encode() + b"\n"


# -- the client ------------------------------------------------------------------------------


class ControlError(Exception):
    """The gateway answered something we cannot read."""


class NotRunning(ControlError):
    """No gateway is listening on the control socket."""


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
        if len(buf) > MAX_LINE:
            raise ControlError("the gateway sent a line longer than 4 MiB")


_M = TypeVar("_M", bound=BaseModel)


def _decode(model: type[_M], line: bytes) -> _M:
    try:
        obj = json.loads(line)
    except ValueError as err:
        raise ControlError(f"not JSON from the gateway: {line[:100]!r}") from err
    if isinstance(obj, dict) and set(obj) == {"error"}:
        raise ControlError(f"the gateway refused the request: {obj['error']}")
    try:
        return model.model_validate(obj)
    except ValidationError as err:
        raise ControlError(f"the gateway sent an unexpected {model.__name__}: {err}") from err


def _send(s: socket.socket, cmd: Literal["status", "tail"]) -> None:
    s.sendall(encode(Request(cmd=cmd)))


def status(path: Path, timeout: float = 10.0) -> StatusSnapshot:
    """One status snapshot (blocking; async callers use ``asyncio.to_thread``)."""
    with _connect(path, timeout) as s:
        _send(s, "status")
        for line in _lines(s):
            return _decode(StatusSnapshot, line)
    raise ControlError("the gateway closed the connection without answering")


def tail(path: Path) -> Iterator[TailLine]:
    """Committed records as they come, until the caller stops iterating."""
    with _connect(path, None) as s:
        _send(s, "tail")
        for line in _lines(s):
            yield _decode(TailLine, line)
