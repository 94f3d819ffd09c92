"""An independent decoder of the serial line protocol, written from the spec for the tests.

It shares no code with firmware_sim.frames (nor with the gateway), so an encoder bug cannot
be hidden by the same bug in the decoder.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

LINE = re.compile(rb"^\$([^*]*)\*([0-9A-F]{4})$")
NODE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
KEY = re.compile(r"^[a-z][a-z0-9_]*$")


def crc_ccitt_false(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


@dataclass
class Frame:
    node: str
    seq: int
    time: float | None
    readings: dict[str, float]


class BadFrame(ValueError):
    pass


def decode(line: bytes) -> Frame:
    line = line.rstrip(b"\r\n")
    if len(line) > 256:
        raise BadFrame("too long")
    m = LINE.match(line)
    if not m:
        raise BadFrame("shape")
    body, crc = m.group(1), int(m.group(2), 16)
    if crc_ccitt_false(body) != crc:
        raise BadFrame("crc")
    try:
        parts = body.decode("ascii").split(",")
    except UnicodeDecodeError as err:
        raise BadFrame("not ascii") from err
    if len(parts) < 4:
        raise BadFrame("fields")
    node, seq, t, *kvs = parts
    if not NODE.match(node) or not seq.isdigit() or int(seq) >= 1 << 32:
        raise BadFrame("header")
    readings: dict[str, float] = {}
    for kv in kvs:
        k, sep, v = kv.partition("=")
        if not sep or not KEY.match(k):
            raise BadFrame("key")
        try:
            x = float(v)
        except ValueError as err:
            raise BadFrame("value") from err
        if not math.isfinite(x):
            raise BadFrame("value")
        readings[k] = x
    return Frame(node, int(seq), float(t) if t else None, readings)


def split_stream(data: bytes) -> list[bytes]:
    """Cut a byte stream into candidate frames the way a resynchronizing reader does:
    a frame starts at '$' and ends at the next CRLF (or the next '$')."""
    out: list[bytes] = []
    i = data.find(b"$")
    while i != -1:
        j = data.find(b"$", i + 1)
        end = data.find(b"\r\n", i)
        stop = len(data) if end == -1 else end
        if j != -1 and j < stop:
            out.append(data[i:j])
            i = j
            continue
        out.append(data[i:stop])
        i = data.find(b"$", stop)
    return out
