"""Capped, jittered exponential backoff for reconnect loops.

"Full jitter": each delay is uniform in [0, min(cap, base * 2**n)], so a hamlet's worth of
sources (or gateways) that lost the same broker do not reconnect in lock-step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base_s: float = 0.5
    cap_s: float = 30.0
    attempt: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        """The delay before the next attempt; grows until :meth:`reset`."""
        ceiling = min(self.cap_s, self.base_s * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        # Never zero: a floor of a tenth of the base keeps a broken peer from a hot loop.
        return max(self.base_s / 10, self._rng.uniform(0, ceiling))

    def reset(self) -> None:
        self.attempt = 0
