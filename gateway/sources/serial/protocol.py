"""The hamlet serial line protocol v1: one ASCII frame per line (see docs/serial-protocol.md).

    $<node>,<seq>,<time>,<key>=<value>[,<key>=<value>...]*<CRC>\\r?\\n

Pure functions only: :func:`parse_frame` turns one line into a :class:`Frame` or raises
:class:`FrameError` whose ``code`` names exactly what is wrong; :class:`LineSplitter` cuts a
byte stream into candidate lines, resynchronizing on ``$`` and bounding line length.
"""

from __future__ import annotations

import binascii
import math
import re
from dataclasses import dataclass, field
from typing import Final

MAX_LINE: Final = 256  # bytes, without the line ending
U32_MAX: Final = 2**32 - 1
MAX_READINGS: Final = 32

_NODE: Final = re.compile(rb"[A-Za-z0-9_.\-]{1,32}")
_SEQ: Final = re.compile(rb"[0-9]{1,10}")
_TIME: Final = re.compile(rb"[0-9]{1,12}(?:\.[0-9]{1,6})?")
_KEY: Final = re.compile(rb"[a-z][a-z0-9_]{0,31}")
_VALUE: Final = re.compile(rb"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
_CRC: Final = re.compile(rb"[0-9A-F]{4}")
_NONFINITE: Final = re.compile(rb"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_NUM: Final = rb"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?"
_KV: Final = rb"[a-z][a-z0-9_]{0,31}=" + _NUM
# The whole frame in one match: the common case (a good frame) costs one regex and a CRC.
# Anything it does not match goes through the field-by-field path for its specific reason.
_FAST: Final = re.compile(
    rb"\$([A-Za-z0-9_.\-]{1,32}),([0-9]{1,10}),([0-9]{1,12}(?:\.[0-9]{1,6})?)?,"
    rb"((?:" + _KV + rb",){0,%d}" % (MAX_READINGS - 1) + _KV + rb")\*([0-9A-F]{4})"
)


class FrameError(ValueError):
    """A line that is not a valid frame. ``str(err)`` reads ``code: detail``."""

    def __init__(self, code: str, detail: str, node: str | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.node = node  # best guess, so CRC failures can be counted per node


@dataclass(frozen=True, slots=True)
class Frame:
    node: str
    seq: int
    time: float | None
    readings: tuple[tuple[str, float], ...]


def crc16(body: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor."""
    return binascii.crc_hqx(body, 0xFFFF)


def encode_frame(node: str, seq: int, time: float | None, readings: dict[str, float]) -> bytes:
    """The reference encoder (docs, tests, benchmarks). Firmware has its own."""
    t = "" if time is None else f"{time:.6f}".rstrip("0").rstrip(".")
    body = f"{node},{seq},{t}," + ",".join(f"{k}={v:g}" for k, v in readings.items())
    raw = body.encode("ascii")
    return b"$" + raw + b"*" + f"{crc16(raw):04X}".encode() + b"\r\n"


def _guess_node(body: bytes) -> str | None:
    head = body.split(b",", 1)[0]
    return head.decode() if _NODE.fullmatch(head) else None


def parse_frame(line: bytes) -> Frame:
    """Parse one line (without ``\\r\\n``). Raise :class:`FrameError` with a specific code."""
    if len(line) <= MAX_LINE:
        m = _FAST.fullmatch(line)
        if m is not None:
            frame = _fast(line, m)
            if frame is not None:
                return frame
    return _slow(line)


def _fast(line: bytes, m: re.Match[bytes]) -> Frame | None:
    """A well-formed frame, or None to let :func:`_slow` name what is wrong."""
    if crc16(line[1 : m.start(5) - 1]) != int(m.group(5), 16):
        return None
    seq = int(m.group(2))
    if seq > U32_MAX:
        return None
    readings: list[tuple[str, float]] = []
    keys: set[str] = set()
    for item in m.group(4).split(b","):
        k, _, v = item.partition(b"=")
        key = k.decode()
        value = float(v)
        if key in keys or value in (_INF, -_INF):
            return None
        keys.add(key)
        readings.append((key, value))
    t = m.group(3)
    return Frame(m.group(1).decode(), seq, None if t is None else float(t), tuple(readings))


_INF: Final = float("inf")


def _slow(line: bytes) -> Frame:
    if len(line) > MAX_LINE:
        raise FrameError("too_long", f"{len(line)} bytes; a frame is at most {MAX_LINE}")
    if not line.startswith(b"$"):
        raise FrameError("no_start", "line does not start with '$'")
    star = line.rfind(b"*")
    if star < 0:
        raise FrameError("no_crc", "truncated: no '*' and checksum", _guess_node(line[1:]))
    body, crc_text = line[1:star], line[star + 1 :]
    node_guess = _guess_node(body)
    if not _CRC.fullmatch(crc_text):
        raise FrameError(
            "bad_crc_format",
            f"checksum {crc_text[:8]!r} is not 4 uppercase hex digits",
            node_guess,
        )
    if not _printable(body):
        raise FrameError("not_ascii", "frame contains non-printable or non-ASCII bytes", node_guess)
    want, got = int(crc_text, 16), crc16(body)
    if want != got:
        raise FrameError("crc_mismatch", f"checksum {want:04X}, computed {got:04X}", node_guess)
    fields = body.split(b",")
    if len(fields) < 4 or fields[3] == b"":
        raise FrameError("no_readings", "a frame carries at least one key=value", node_guess)
    node_b, seq_b, time_b = fields[0], fields[1], fields[2]
    if not _NODE.fullmatch(node_b):
        raise FrameError("bad_node", f"node id {node_b[:40]!r} is not [A-Za-z0-9_.-]{{1,32}}")
    node = node_b.decode()
    if not _SEQ.fullmatch(seq_b) or int(seq_b) > U32_MAX:
        raise FrameError("bad_seq", f"sequence {seq_b[:20]!r} is not a u32 decimal", node)
    t: float | None = None
    if time_b:
        if not _TIME.fullmatch(time_b):
            raise FrameError("bad_time", f"time {time_b[:20]!r} is not epoch seconds", node)
        t = float(time_b)
    readings_b = fields[3:]
    if len(readings_b) > MAX_READINGS:
        raise FrameError(
            "too_many_readings", f"{len(readings_b)} readings; at most {MAX_READINGS}", node
        )
    readings: list[tuple[str, float]] = []
    seen: set[bytes] = set()
    for item in readings_b:
        key, eq, val = item.partition(b"=")
        if not eq:
            raise FrameError("bad_reading", f"{item[:40]!r} is not key=value", node)
        if not _KEY.fullmatch(key):
            raise FrameError("bad_key", f"key {key[:40]!r} is not [a-z][a-z0-9_]{{0,31}}", node)
        if key in seen:
            raise FrameError("dup_key", f"key {key.decode()!r} appears twice", node)
        seen.add(key)
        if _NONFINITE.fullmatch(val):
            raise FrameError("not_finite", f"{key.decode()}={val.decode()} is not finite", node)
        if not _VALUE.fullmatch(val):
            raise FrameError("bad_value", f"{key.decode()}={val[:20]!r} is not a number", node)
        v = float(val)
        if not math.isfinite(v):
            raise FrameError("not_finite", f"{key.decode()}={val.decode()} overflows", node)
        readings.append((key.decode(), v))
    return Frame(node, int(seq_b), t, tuple(readings))


def _printable(body: bytes) -> bool:
    return all(0x20 <= b < 0x7F for b in body)


# How much of an overlong line a dead letter keeps: enough to recognise the babbling device.
TOO_LONG_SAMPLE: Final = 96
_MAX_PENDING_TOO_LONG: Final = 1000


@dataclass
class SplitStats:
    lines: int = 0
    overlong: int = 0  # lines that grew past MAX_LINE: their bytes before a resync dropped
    garbage_bytes: int = 0  # bytes outside any frame (noise before a '$')


@dataclass(frozen=True, slots=True)
class TooLong:
    """A line that grew past the bound without a newline (reason code ``too_long``)."""

    dropped: int  # bytes dropped from it so far
    sample: bytes  # its first bytes, for the dead letter

    @property
    def reason(self) -> str:
        return (
            f"too_long: a line grew past {MAX_LINE} bytes without a newline; dropped "
            f"{self.dropped} bytes and resynchronised at the next '$'"
        )


@dataclass
class LineSplitter:
    """Cut a byte stream into candidate frames.

    A line is what lies between newlines. Its frame starts at its *last* ``$`` (``$`` never
    occurs inside a valid frame, so anything before it is noise or a frame cut short by a
    reset). At most ``max_line`` (+1 for a ``\r``) bytes of a line are kept: when a line
    grows past that, everything before its last ``$`` is dropped (a frame after a long
    stretch of noise still gets through), or all of it when no ``$`` leaves a candidate
    short enough. Each such line is reported once in :attr:`too_long`, so a babbling device
    can neither grow memory nor hide.
    """

    max_line: int = MAX_LINE
    stats: SplitStats = field(default_factory=SplitStats)
    # Overlong lines seen since the caller last emptied this list (the caller drains it).
    too_long: list[TooLong] = field(default_factory=list)
    _buf: bytearray = field(default_factory=bytearray)
    _dropped: int = 0  # bytes of the current line dropped so far
    _sample: bytes = b""

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        """Return ``(frame_candidate, noise_before_it)`` pairs for each completed line."""
        out: list[tuple[bytes, bytes]] = []
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                break
            self._add(chunk[start:nl])
            start = nl + 1
            line = bytes(self._buf)
            self._buf.clear()
            self._dropped, self._sample = 0, b""
            self._emit(line.removesuffix(b"\r"), out)
        self._add(chunk[start:])
        return out

    def _add(self, piece: bytes) -> None:
        self._buf += piece
        limit = self.max_line + 1
        if len(self._buf) <= limit:
            return
        dollar = self._buf.rfind(b"$")
        # Keep a candidate only if it can still be a frame: from the last '$', short enough.
        cut = dollar if dollar > 0 and len(self._buf) - dollar <= limit else len(self._buf)
        if self._dropped == 0:
            self.stats.overlong += 1
            self._sample = bytes(self._buf[:TOO_LONG_SAMPLE])
            if len(self.too_long) < _MAX_PENDING_TOO_LONG:  # a caller that never drains
                self.too_long.append(TooLong(cut, self._sample))
        self._dropped += cut
        self.stats.garbage_bytes += cut
        del self._buf[:cut]

    def _emit(self, line: bytes, out: list[tuple[bytes, bytes]]) -> None:
        if not line:
            return
        self.stats.lines += 1
        dollar = line.rfind(b"$")
        if dollar < 0:
            self.stats.garbage_bytes += len(line)
            out.append((b"", line))
            return
        self.stats.garbage_bytes += dollar
        out.append((line[dollar:], line[:dollar]))
