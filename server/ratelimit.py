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


class LoginThrottle:
    """Login attempts counted per (address, user), per user across addresses and per address
    across users, plus a global rate of password checks (argon2 costs tens of ms of CPU, so
    a spray from many addresses must not buy unbounded CPU).

    ``admit`` checks and counts in one synchronous step: no await in between, so parallel
    requests cannot all slip past the check before any of them is counted (they did when
    only failures were counted, after the slow password check). A success clears the
    (address, user) and user counts; the address keeps its count.
    """

    def __init__(
        self,
        *,
        per_pair: int,
        per_user: int,
        per_address: int,
        window: float,
        checks_per_s: float,
    ) -> None:
        self.pairs = AttemptWindow(per_pair, window)
        self.users = AttemptWindow(per_user, window)
        self.addresses = AttemptWindow(per_address, window)
        self.checks = TokenBucket(checks_per_s, max(1, int(checks_per_s * 2)))

    def admit(self, address: str, user: str, now: float | None = None) -> float:
        """0.0 if this attempt may check a password (it is counted now), else seconds to wait."""
        now = time.monotonic() if now is None else now
        pair = f"{address}|{user}"
        user_key = user.casefold()
        wait = max(
            self.pairs.blocked_for(pair, now),
            self.users.blocked_for(user_key, now),
            self.addresses.blocked_for(address, now),
        )
        if wait > 0:
            return wait
        wait = self.checks.take("*", now)
        if wait > 0:
            return wait
        self.pairs.fail(pair, now)
        self.users.fail(user_key, now)
        self.addresses.fail(address, now)
        return 0.0

    def succeeded(self, address: str, user: str) -> None:
        self.pairs.reset(f"{address}|{user}")
        self.users.reset(user.casefold())
