"""Faults of the sensor itself: fouling drift, stuck values, spikes, dropouts, a dead battery.

Deterministic for (seed, device, time) like the physics, so a backfill and a live run show
the same faults at the same instants. Only the stuck value carries state (the reading the
probe froze on), which is fine because a device is sampled forward in time.
"""

from __future__ import annotations

import math
from typing import Final

from firmware_sim import noise
from firmware_sim.scenario import SensorFaults
from firmware_sim.timebase import DAY_S
from hamlet.metrics import METRICS

# A biofilm on the electrodes lowers every conductivity-derived reading alike.
FOULED_METRICS: Final = frozenset({"salinity", "ec", "soil_ec", "tds"})
# Never spike or freeze the node's own figures: those are not the probe's.
NODE_METRICS: Final = frozenset({"battery", "rssi"})
# A failing cell loses this much a day, and the node browns out a day after it fails.
DEAD_CELL_V_PER_DAY: Final = 0.5
DEAD_AFTER_S: Final = DAY_S


class SensorFaultModel:
    def __init__(self, spec: SensorFaults, seed: int, device_id: str, dead_at: float | None):
        self.spec = spec
        self.seed = seed
        self.key = noise.key_of(device_id + ":sensorfault")
        self.dead_at = dead_at
        # Cleaning days differ from probe to probe.
        self._clean_phase = noise.uniform(seed, self.key, 0, 99) * spec.clean_every_days * DAY_S
        self._stuck: tuple[int, dict[str, float]] | None = None

    def fouling_factor(self, t: float) -> float:
        """1.0 just after a cleaning, falling by ``fouling_per_day`` a day until the next."""
        if not self.spec.fouling_per_day:
            return 1.0
        period = self.spec.clean_every_days * DAY_S
        since = (t - self._clean_phase) % period
        return max(0.2, 1.0 - self.spec.fouling_per_day * since / DAY_S)

    def stuck_episode(self, t: float) -> int | None:
        """The id (local day) of the stuck episode covering ``t``, if any."""
        rate = self.spec.stuck_per_month / 30.0
        if rate <= 0:
            return None
        day = math.floor((t + 7 * 3600) / DAY_S)
        span = math.ceil(self.spec.stuck_hours / 24.0)
        for d in range(day - span, day + 1):
            if noise.uniform(self.seed, self.key, d, 1) >= rate:
                continue
            start = d * DAY_S - 7 * 3600 + 24 * 3600 * noise.uniform(self.seed, self.key, d, 2)
            if start <= t < start + self.spec.stuck_hours * 3600:
                return d
        return None

    def dead(self, t: float) -> bool:
        return self.dead_at is not None and t >= self.dead_at + DEAD_AFTER_S

    def battery(self, t: float, volts: float) -> float:
        if self.dead_at is None or t < self.dead_at:
            return volts
        return round(volts - DEAD_CELL_V_PER_DAY * (t - self.dead_at) / DAY_S, 2)

    def apply(self, t: float, out: dict[str, float]) -> dict[str, float]:
        """The readings as the faulty sensor reports them; {} when the reading is lost."""
        s = self.spec
        idx = int(t * 1000)  # per reading, also for sub-second test intervals
        if s.dropouts and noise.uniform(self.seed, self.key, idx, 3) < s.dropouts:
            return {}
        probe = {k: v for k, v in out.items() if k not in NODE_METRICS}
        factor = self.fouling_factor(t)
        if factor != 1.0:
            for k in FOULED_METRICS & probe.keys():
                probe[k] = round(probe[k] * factor, 3)
        episode = self.stuck_episode(t)
        if episode is not None:
            if self._stuck is None or self._stuck[0] != episode:
                self._stuck = (episode, dict(probe))
            probe = dict(self._stuck[1])
        elif s.spikes and probe and noise.uniform(self.seed, self.key, idx, 4) < s.spikes:
            name = sorted(probe)[int(noise.uniform(self.seed, self.key, idx, 5) * len(probe))]
            v = probe[name] + s.spike_size * max(abs(probe[name]), 1.0)
            m = METRICS.get(name)
            probe[name] = round(min(m.hi, v) if m is not None else v, 3)
        return {**probe, **{k: v for k, v in out.items() if k in NODE_METRICS}}
