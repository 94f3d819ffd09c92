"""Time on a Pi without a real-time clock.

A Pi boots in the past (1970, or the last fake-hwclock save) until NTP syncs. Every record
therefore carries four things: the wall time the gateway believed, whether the clock was
synchronized, the boot id and the monotonic time. Records taken before sync are stored as
``PENDING``; once sync arrives in the same boot their wall time is recomputed from the
monotonic clock (``REANCHORED``). Records of an earlier boot that never saw sync become
``UNSYNCED``. Nothing is ever ordered, expired or deleted by wall time: the buffer uses
sequence numbers for all of that.

``wall_offset_file`` is a test/diagnostic seam at the OS-clock boundary only: a file holding
an offset in milliseconds added to the system clock, so tests can step the wall clock
backwards and forwards in a real running gateway without root. Never set it in production.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hamlet.contract import MAX_FUTURE_SKEW_MS, MIN_PLAUSIBLE_TIME_MS, TimeQuality

log = logging.getLogger(__name__)

BOOT_ID_PATH: Final = Path("/proc/sys/kernel/random/boot_id")
TIMESYNC_FLAG: Final = Path("/run/systemd/timesync/synchronized")
# Local-only time quality: taken before sync in a boot that may still sync. Never sent as
# such: the uplink holds these back for a while, then sends them as UNSYNCED.
PENDING: Final = 9
# adjtimex(2) returns TIME_ERROR (5) while the kernel considers the clock unsynchronized.
_TIME_ERROR: Final = 5


class ClockConfig(BaseModel):
    """How the gateway decides its clock is trustworthy."""

    model_config = ConfigDict(extra="forbid")

    sync: str = Field(
        "auto",
        description=(
            "'auto' (systemd-timesyncd flag file or kernel adjtimex), 'always', 'never', "
            "or 'file:<path>' (synced while that file exists)"
        ),
    )
    wall_offset_file: Path | None = Field(
        None, description="TEST/DIAGNOSTIC ONLY: file with an offset in ms added to the clock"
    )
    hold_unsynced_s: float = Field(
        300.0,
        ge=0,
        description="how long after boot unsynced records wait for sync before being sent",
    )

    @field_validator("sync")
    @classmethod
    def _sync_mode(cls, v: str) -> str:
        if v in ("auto", "always", "never") or (v.startswith("file:") and len(v) > 5):
            return v
        raise ValueError("clock.sync must be 'auto', 'always', 'never' or 'file:<path>'")


@dataclass(frozen=True, slots=True)
class Stamp:
    wall_ms: int
    synced: bool
    boot_id: str
    mono_ns: int


@dataclass(frozen=True, slots=True)
class Anchor:
    """The moment sync was first seen in this boot: maps monotonic time to wall time."""

    boot_id: str
    wall_ms: int
    mono_ns: int

    def wall_for(self, mono_ns: int) -> int:
        return self.wall_ms - (self.mono_ns - mono_ns) // 1_000_000


def read_boot_id(path: Path = BOOT_ID_PATH) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError:
        # Not Linux (a developer's laptop): one id per process is the honest fallback.
        return f"proc-{os.getpid()}-{time.monotonic_ns()}"


class _Adjtimex:
    """adjtimex(2) through libc, looked up once."""

    def __init__(self) -> None:
        self._fn: object | None = None
        name = ctypes.util.find_library("c")
        if name is not None:
            try:
                self._fn = ctypes.CDLL(name, use_errno=True).adjtimex
            except (OSError, AttributeError):
                self._fn = None
        self._buf = ctypes.create_string_buffer(512)  # struct timex ~208 bytes; modes=0

    def synced(self) -> bool | None:
        """Kernel view; None when unavailable."""
        if self._fn is None:
            return None
        ctypes.memset(self._buf, 0, 512)  # modes = 0: read only, change nothing
        rc = int(self._fn(self._buf))  # type: ignore[operator]
        if rc < 0:
            return None
        return rc != _TIME_ERROR


class Clock:
    """Stamps records; notices the moment the clock becomes synchronized."""

    def __init__(self, config: ClockConfig, boot_id: str | None = None) -> None:
        self._cfg = config
        self.boot_id = boot_id or read_boot_id()
        self._offset_ms = 0
        self._offset_mtime: int | None = None
        self._synced = False
        self.anchor: Anchor | None = None
        self._adjtimex: _Adjtimex | None = None
        self._checked_at = -1.0e9
        self._last_state = False

    # -- the OS-clock boundary -------------------------------------------------------
    def _wall_offset(self) -> int:
        path = self._cfg.wall_offset_file
        if path is None:
            return 0
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            self._offset_ms, self._offset_mtime = 0, None
            return 0
        if mtime != self._offset_mtime:
            try:
                self._offset_ms = int(path.read_text(encoding="ascii").strip() or "0")
            except (OSError, ValueError) as err:
                log.warning("clock: ignoring unreadable wall_offset_file %s: %s", path, err)
                self._offset_ms = 0
            self._offset_mtime = mtime
        return self._offset_ms

    def _sync_state(self) -> bool:
        mode = self._cfg.sync
        if mode == "always":
            return True
        if mode == "never":
            return False
        if mode.startswith("file:"):
            return Path(mode[5:]).exists()
        # "auto": sync changes about once per boot; a check per second keeps stamping cheap.
        now = time.monotonic()
        if now - self._checked_at < 1.0:
            return self._last_state
        self._checked_at = now
        if TIMESYNC_FLAG.exists():
            self._last_state = True
        else:
            if self._adjtimex is None:
                self._adjtimex = _Adjtimex()  # libc looked up once, not per stamp
            self._last_state = bool(self._adjtimex.synced())
        return self._last_state

    # -- API ------------------------------------------------------------------------
    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self._wall_offset()

    def now(self) -> Stamp:
        """Current stamp; records the sync anchor the first time sync is seen."""
        synced = self._sync_state()
        mono = time.monotonic_ns()
        wall = self.wall_ms()
        if synced and not self._synced:
            self.anchor = Anchor(self.boot_id, wall, mono)
            log.info("clock: synchronized (boot %s); re-anchoring earlier records", self.boot_id)
        self._synced = synced
        return Stamp(wall_ms=wall, synced=synced, boot_id=self.boot_id, mono_ns=mono)

    @property
    def synced(self) -> bool:
        """Whether the clock is synchronized now (checking also records the anchor)."""
        return self.now().synced

    def hold_unsynced(self) -> bool:
        """Whether unsynced records of this boot should still wait for sync before sending."""
        if self.synced:
            return False
        # CLOCK_MONOTONIC counts from boot on Linux: this is "seconds since boot".
        return time.monotonic() < self._cfg.hold_unsynced_s


class TimeRejected(ValueError):
    """A device time that cannot be true (far in the future of a synchronized clock)."""


def stamp_quality(stamp: Stamp, device_time_ms: int | None) -> tuple[int, int]:
    """(wall_ms, time quality code) for a record stamped at ``stamp``.

    Raises :class:`TimeRejected` for device times far ahead of a synchronized clock.
    Implausible device times (before 2020: a node without RTC) fall back to the gateway's.
    """
    if device_time_ms is not None and device_time_ms >= MIN_PLAUSIBLE_TIME_MS:
        if stamp.synced and device_time_ms > stamp.wall_ms + MAX_FUTURE_SKEW_MS:
            ahead = (device_time_ms - stamp.wall_ms) / 1000
            raise TimeRejected(
                f"far_future: device time is {ahead:.0f} s ahead of the synchronized "
                f"gateway clock (limit {MAX_FUTURE_SKEW_MS // 1000} s); check the node's clock"
            )
        return device_time_ms, int(TimeQuality.DEVICE)
    if stamp.synced:
        return stamp.wall_ms, int(TimeQuality.SYNCED)
    return stamp.wall_ms, PENDING
