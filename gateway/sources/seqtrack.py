"""Per-device firmware sequence numbers: radio losses (gaps) and reboots (resets).

Field nodes count their own frames (u32, starting again at 0 or 1 after a reboot). A jump
forward means frames were lost between node and gateway; a step back means the node
restarted. A repeated number is a retransmission (radio retry, MQTT redelivery).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

SEQ_MODULUS: Final = 2**32
# A "step back" this small across the u32 boundary is a wrap-around, not a reboot.
_WRAP_WINDOW: Final = 2**16


class SeqOutcome(StrEnum):
    FIRST = "first"
    NEXT = "next"
    GAP = "gap"
    REPEAT = "repeat"
    RESET = "reset"


@dataclass
class SeqStats:
    last: int | None = None
    frames: int = 0
    gaps: int = 0  # gap events
    lost: int = 0  # frames missing in those gaps
    resets: int = 0
    repeats: int = 0


class SeqTracker:
    """Counts gaps and resets per device. Bounded by the number of devices seen."""

    def __init__(self, max_devices: int = 10_000) -> None:
        self._stats: dict[str, SeqStats] = {}
        self._max = max_devices

    def stats(self, device: str) -> SeqStats | None:
        return self._stats.get(device)

    def observe(self, device: str, seq: int) -> tuple[SeqOutcome, int]:
        """Record ``seq`` for ``device``; return the outcome and the frames lost (gap size)."""
        st = self._stats.get(device)
        if st is None:
            if len(self._stats) >= self._max:
                # A flood of fake device ids must not grow memory without bound.
                self._stats.pop(next(iter(self._stats)))
            st = self._stats[device] = SeqStats()
        st.frames += 1
        prev, st.last = st.last, seq
        if prev is None:
            return SeqOutcome.FIRST, 0
        step = (seq - prev) % SEQ_MODULUS  # u32 wrap-around is a normal step forward
        if step == 1:
            return SeqOutcome.NEXT, 0
        if step == 0:
            st.repeats += 1
            return SeqOutcome.REPEAT, 0
        if seq < prev and step > _WRAP_WINDOW:
            # Backwards, and not a u32 wrap-around: the node restarted its counter.
            st.resets += 1
            return SeqOutcome.RESET, 0
        lost = step - 1
        st.gaps += 1
        st.lost += lost
        return SeqOutcome.GAP, lost
