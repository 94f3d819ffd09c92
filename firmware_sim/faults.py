"""Line-level faults a noisy radio or a flaky UART produces, applied to outgoing frames.

Deterministic for a seed (its own ``random.Random``) and counted, so a test can compare
what was injected with what the gateway reported.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from firmware_sim.scenario import SerialFaults


@dataclass
class LineFaults:
    """Turns one good frame into what actually goes on the wire (0, 1 or more chunks)."""

    cfg: SerialFaults
    rng: random.Random
    counts: Counter[str] = field(default_factory=Counter)
    _held: bytes | None = None

    def apply(self, frame: bytes) -> list[bytes]:
        c = self.cfg
        out: list[bytes] = []
        if c.garbage and self.rng.random() < c.garbage:
            n = self.rng.randint(4, 40)
            # Noise bytes, never '$' (a real start) so the injected count stays exact.
            # No line end: the reader must resynchronize on the next '$'.
            out.append(bytes(self.rng.choice(_NOISE) for _ in range(n)))
            self.counts["garbage"] += 1
        faulted = True
        if c.corrupt and self.rng.random() < c.corrupt:
            frame = self._corrupt(frame)
            self.counts["corrupt"] += 1
        elif c.bitflip and self.rng.random() < c.bitflip:
            frame = self._bitflip(frame)
            self.counts["bitflip"] += 1
        elif c.truncate and self.rng.random() < c.truncate:
            cut = self.rng.randint(2, max(2, len(frame) - 8))
            frame = frame[:cut]  # the tail (CRC, CRLF) lost: the next '$' resyncs
            self.counts["truncate"] += 1
        else:
            faulted = False
        copies = [frame]
        # Reordering (a repeater's queue) and duplicates (a retransmission whose ACK was
        # lost) happen to frames that made it through intact; one fault per frame.
        if self._held is not None:
            if faulted:  # keep holding: the swap happens with the next intact frame
                out.extend(copies)
                return out
            copies.append(self._held)  # the one held back goes out after this one
            self._held = None
        elif not faulted and c.reorder and self.rng.random() < c.reorder:
            self._held = frame
            self.counts["reorder"] += 1
            copies = []
        elif not faulted and c.duplicate and self.rng.random() < c.duplicate:
            copies.append(frame)
            self.counts["duplicate"] += 1
        out.extend(copies)
        return out

    def flush(self) -> list[bytes]:
        """The frame still held goes out last. Nothing overtook it, so it arrives in order
        and is no longer counted as reordered (a reader would see no step back)."""
        held, self._held = self._held, None
        if held is None:
            return []
        self.counts["reorder"] -= 1
        return [held]

    def _corrupt(self, frame: bytes) -> bytes:
        star = frame.rfind(b"*")
        # Change one digit of the payload into another digit: still well-formed, wrong CRC.
        digits = [i for i in range(1, star) if 48 <= frame[i] <= 57]
        if not digits:
            return self._bitflip(frame)
        i = self.rng.choice(digits)
        new = 48 + (frame[i] - 48 + self.rng.randint(1, 9)) % 10
        return frame[:i] + bytes([new]) + frame[i + 1 :]

    def _bitflip(self, frame: bytes) -> bytes:
        star = frame.rfind(b"*")
        i = self.rng.randrange(1, max(2, star))  # inside the body: the CRC must catch it
        bit = 1 << self.rng.randrange(7)  # keep it 7-bit ASCII as a UART would deliver
        b = frame[i] ^ bit
        if b in (0x0A, 0x0D, 0x24):  # would turn into a line end or start: flip another bit
            b = frame[i] ^ (bit ^ 0x40 if bit != 0x40 else 0x01)
        return frame[:i] + bytes([b]) + frame[i + 1 :]


_NOISE = bytes(b for b in range(1, 256) if b not in (0x24, 0x0A, 0x0D))
