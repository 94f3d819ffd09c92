"""Modbus device profiles as data: which registers hold what, and how to decode them."""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

Function = Literal["holding", "input"]
RegType = Literal["u16", "s16", "u32", "s32", "f32"]
WordOrder = Literal["big", "little"]

WIDTH: Final[Mapping[str, int]] = {"u16": 1, "s16": 1, "u32": 2, "s32": 2, "f32": 2}
MAX_BLOCK: Final = 125  # registers one Modbus read may return
_MERGE_HOLE: Final = 8  # read through a hole this small rather than send another request


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the profile and the register."""


class DecodeError(ValueError):
    """Registers that do not decode to a usable value (``code: detail``)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


@dataclass(frozen=True, slots=True)
class Register:
    metric: str
    address: int  # wire address (0-based)
    type: RegType = "u16"
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None  # device unit after scaling; None = the metric's canonical unit
    function: Function = "holding"
    word_order: WordOrder = "big"  # for 32-bit types: "big" = high word at the lower address

    @property
    def width(self) -> int:
        return WIDTH[self.type]


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    name: str
    description: str
    registers: tuple[Register, ...]
    default_address: int = 1
    default_baudrate: int = 9600

    def __post_init__(self) -> None:
        if not self.registers:
            raise ProfileError(f"profile {self.name!r} has no registers")
        seen: set[str] = set()
        for r in self.registers:
            if r.metric in seen:
                raise ProfileError(f"profile {self.name!r}: metric {r.metric!r} appears twice")
            seen.add(r.metric)
            if not 0 <= r.address <= 0xFFFF - r.width + 1:
                raise ProfileError(f"profile {self.name!r}: {r.metric} address out of range")
            if not math.isfinite(r.scale) or r.scale == 0:
                raise ProfileError(f"profile {self.name!r}: {r.metric} scale must be non-zero")


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` registers of ``function`` from ``start``."""

    function: Function
    start: int
    count: int


def plan_blocks(registers: Sequence[Register]) -> tuple[Block, ...]:
    """Group registers into as few reads as possible (contiguous, small holes merged)."""
    blocks: list[Block] = []
    for fn in ("holding", "input"):
        regs = sorted((r for r in registers if r.function == fn), key=lambda r: r.address)
        start = end = -1
        for r in regs:
            r_end = r.address + r.width
            if start < 0:
                start, end = r.address, r_end
            elif r.address - end <= _MERGE_HOLE and max(end, r_end) - start <= MAX_BLOCK:
                end = max(end, r_end)
            else:
                blocks.append(Block(fn, start, end - start))
                start, end = r.address, r_end
        if start >= 0:
            blocks.append(Block(fn, start, end - start))
    return tuple(blocks)


def decode_register(reg: Register, words: Sequence[int]) -> float:
    """Decode one register's words (each 0..65535) into its scaled value."""
    if len(words) != reg.width:
        raise DecodeError("short_read", f"{reg.metric}: {len(words)} words, need {reg.width}")
    if any(not 0 <= w <= 0xFFFF for w in words):
        raise DecodeError("bad_word", f"{reg.metric}: register word out of 0..65535")
    ws = list(words) if reg.word_order == "big" else list(reversed(words))
    raw_bytes = b"".join(w.to_bytes(2, "big") for w in ws)
    fmt = {"u16": ">H", "s16": ">h", "u32": ">I", "s32": ">i", "f32": ">f"}[reg.type]
    raw: float = struct.unpack(fmt, raw_bytes)[0]
    if not math.isfinite(raw):
        raise DecodeError("not_finite", f"{reg.metric}: float register holds {raw}")
    return raw * reg.scale + reg.offset


def decode_profile(
    profile: DeviceProfile, data: Mapping[Block, Sequence[int]]
) -> list[tuple[Register, float]]:
    """Every register of ``profile`` decoded from the blocks read (see :func:`plan_blocks`)."""
    out: list[tuple[Register, float]] = []
    for reg in profile.registers:
        for blk, words in data.items():
            if blk.function == reg.function and blk.start <= reg.address < blk.start + blk.count:
                i = reg.address - blk.start
                out.append((reg, decode_register(reg, words[i : i + reg.width])))
                break
        else:
            raise DecodeError("short_read", f"{reg.metric}: register {reg.address} was not read")
    return out
