"""What device firmware does besides measuring: counters, reboots, clocks, batteries, radio.

A real node's sequence counter restarts at 0 when it reboots, its clock drifts (or jumps when
a GPS/NTP fix arrives), and a solar battery sags at night and over the weeks. The gateway
must cope with all of it, so the simulator does all of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from firmware_sim import noise
from firmware_sim.physics import sunlight
from firmware_sim.timebase import DAY_S

U32: Final = 1 << 32


@dataclass(frozen=True, slots=True)
class FirmwareParams:
    has_clock: bool = False
    drift_ppm: float = 0.0
    reboots_per_day: float = 0.0
    battery: bool = False
    battery_sag_v_per_day: float = 0.0
    rssi_dbm: float = -85.0
    first_seq: int = 0


class Firmware:
    """Mutable firmware state of one device, advanced as simulated time passes."""

    def __init__(self, seed: int, device_id: str, params: FirmwareParams, t: float) -> None:
        self.seed = seed
        self.key = noise.key_of(device_id + ":fw")
        self.params = params
        self.seq = params.first_seq % U32
        self.boot_t = t
        self.boots = 1
        self.clock_offset_s = 0.0  # deliberate jumps (fault injection)
        self._clock_set_t = t
        self._last_check = t

    def next_seq(self) -> int:
        s = self.seq
        self.seq = (self.seq + 1) % U32
        return s

    def reboot(self, t: float) -> None:
        """Power-cycle: the counter restarts at 0 and uptime at 0; an RTC keeps its time."""
        self.seq = 0
        self.boot_t = t
        self.boots += 1

    def maybe_reboot(self, t: float) -> bool:
        """Random watchdog reboots at ``reboots_per_day`` (checked once per simulated hour)."""
        rate = self.params.reboots_per_day
        rebooted = False
        if rate <= 0:
            self._last_check = t
            return False
        hour = math.floor(self._last_check / 3600.0)
        while (hour + 1) * 3600.0 <= t:
            hour += 1
            if noise.uniform(self.seed, self.key, hour) < rate / 24.0:
                self.reboot(hour * 3600.0)
                rebooted = True
        self._last_check = t
        return rebooted

    def clock_jump(self, seconds: float) -> None:
        self.clock_offset_s += seconds

    def device_time(self, t: float) -> float | None:
        """What the node's own clock says at true time ``t`` (None without a clock)."""
        if not self.params.has_clock:
            return None
        drift = self.params.drift_ppm * 1e-6 * (t - self._clock_set_t)
        return round(t + drift + self.clock_offset_s, 3)

    def uptime(self, t: float) -> float:
        return max(0.0, round(t - self.boot_t))

    def battery(self, t: float) -> float:
        """Solar-charged Li-ion cell: ~4.1 V in the afternoon, ~3.7 V before dawn."""
        k = self.key
        # The cell charges through the day: lag sunlight by 3 hours.
        charge = sunlight(t - 3 * 3600.0)
        days = (t - self.boot_t) / DAY_S if self.boots == 1 else 0.0
        sag = self.params.battery_sag_v_per_day * max(0.0, days)
        v = 3.72 + 0.38 * charge - sag + 0.01 * noise.smooth(self.seed, k, t, 1800.0)
        return round(max(2.9, min(4.2, v)), 2)

    def rssi(self, t: float) -> float:
        v = self.params.rssi_dbm + 4.0 * noise.smooth(self.seed, self.key, t, 900.0, 3)
        return float(round(v))
