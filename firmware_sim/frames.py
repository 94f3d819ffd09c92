"""The serial line protocol, device side: one ASCII frame per line.

``$<node>,<seq>,<time>,<key>=<value>[,<key>=<value>...]*<CRC>\\r\\n`` where CRC is four
uppercase hex digits of CRC-16/CCITT-FALSE over the bytes between ``$`` and ``*``
(``binascii.crc_hqx(body, 0xFFFF)``). Documented with vectors in
docs/serial-protocol-vectors.json; the encoder reproduces the valid ones exactly.
"""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Mapping
from typing import Final

MAX_LINE: Final = 256
NODE_RE: Final = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
KEY_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class FrameError(ValueError):
    """A frame the firmware must not send (bad id, key or value, or too long)."""


def crc16(body: bytes) -> int:
    return binascii.crc_hqx(body, 0xFFFF)


def format_number(v: float) -> str:
    """Plain decimal, no exponent, no trailing zeros: 81.0 -> '81', 0.25 -> '0.25'."""
    if not math.isfinite(v):
        raise FrameError(f"value is not finite ({v})")
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    s = f"{v:.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def encode_body(node: str, seq: int, time: float | None, readings: Mapping[str, float]) -> bytes:
    if not NODE_RE.match(node):
        raise FrameError(f"node id {node!r} must match {NODE_RE.pattern}")
    if not 0 <= seq < 1 << 32:
        raise FrameError(f"seq {seq} is not a u32")
    if not readings:
        raise FrameError("a frame needs at least one reading")
    parts = [node, str(seq), "" if time is None else format_number(time)]
    for key, value in readings.items():
        if not KEY_RE.match(key):
            raise FrameError(f"key {key!r} must match {KEY_RE.pattern}")
        parts.append(f"{key}={format_number(value)}")
    return ",".join(parts).encode("ascii")


def encode_frame(node: str, seq: int, time: float | None, readings: Mapping[str, float]) -> bytes:
    """One complete line, ``$`` to ``\\r\\n``."""
    body = encode_body(node, seq, time, readings)
    line = b"$" + body + b"*" + f"{crc16(body):04X}".encode("ascii") + b"\r\n"
    if len(line) > MAX_LINE:  # strict: the CRLF counts, so any reader's bound is met
        raise FrameError(f"frame is {len(line)} bytes; the limit is {MAX_LINE}")
    return line
