"""Deterministic, stateless noise: the same (seed, key, index) always gives the same number.

Models are functions of simulated time, so a backfill of last month and a live run that
reaches the same instant agree. A splitmix64 hash is cheap enough for millions of samples,
unlike seeding a ``random.Random`` per call.
"""

from __future__ import annotations

import math
import zlib
from typing import Final

_MASK: Final = (1 << 64) - 1


def key_of(name: str) -> int:
    """A stable integer for a string key (``hash()`` of a str changes per process)."""
    return zlib.crc32(name.encode("utf-8"))


def _mix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def uniform(seed: int, key: int, index: int, salt: int = 0) -> float:
    """A number in [0, 1) determined by its arguments alone."""
    h = _mix((seed * 0x100000001B3) ^ _mix(key ^ _mix(index * 31 + salt)))
    return (h >> 11) / float(1 << 53)


def gauss(seed: int, key: int, index: int, salt: int = 0) -> float:
    """A standard-normal number (Box-Muller) determined by its arguments alone."""
    u1 = max(uniform(seed, key, index, salt * 2 + 1), 1e-12)
    u2 = uniform(seed, key, index, salt * 2 + 2)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def smooth(seed: int, key: int, t: float, period_s: float, salt: int = 0) -> float:
    """Smooth noise in about [-1, 1]: cosine-interpolated gaussians on a ``period_s`` grid."""
    x = t / period_s
    i = math.floor(x)
    f = x - i
    w = (1.0 - math.cos(math.pi * f)) / 2.0
    a = gauss(seed, key, i, salt)
    b = gauss(seed, key, i + 1, salt)
    return (a * (1.0 - w) + b * w) / 2.0
