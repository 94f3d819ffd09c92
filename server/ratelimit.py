"""Small in-process rate limiters (per worker: with N workers the bound is N times looser,
which is still a bound; a shared limiter would need a shared store for little gain)."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Final

_MAX_KEYS: Final = 100_000  # bounded memory even under a flood of distinct keys


class TokenBucket:
    """``rate`` tokens a second up to ``burst``, per key."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> float:
        """0.0 if allowed, else seconds until a token is available."""
        now = time.monotonic() if now is None else now
        tokens, last = self._state.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._state[key] = (tokens, now)
        if len(self._state) > _MAX_KEYS:
            self._state.popitem(last=False)
        return wait


class AttemptWindow:
    """At most ``attempts`` failures per ``window`` seconds per key (login throttling)."""

    def __init__(self, attempts: int, window: float) -> None:
        self.attempts = attempts
        self.window = window
        self._fails: OrderedDict[str, list[float]] = OrderedDict()

    def blocked_for(self, key: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        fails = [t for t in self._fails.get(key, []) if now - t < self.window]
        if fails:
            self._fails[key] = fails
        else:
            self._fails.pop(key, None)
        if len(fails) >= self.attempts:
            return self.window - (now - fails[0])
        return 0.0

    def fail(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._fails.setdefault(key, []).append(now)
        self._fails.move_to_end(key)
        if len(self._fails) > _MAX_KEYS:
            self._fails.popitem(last=False)

    def reset(self, key: str) -> None:
        self._fails.pop(key, None)
