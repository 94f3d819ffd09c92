"""Seq allocation, and its high-water mark kept outside the database so it survives a
corrupt file.

Seqs are handed out by :class:`Seqs` on the buffer's one thread, and only grow. They are
reserved in blocks: before any seq at or above ``reserved`` is used,
a new block is written here (write, fsync, rename, fsync the directory). If the database is
lost, the gateway resumes at ``reserved`` and reports ``[floor, reserved - 1]`` as lost, so
seq only ever grows, even across a replaced file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from hamlet.durable import write_atomic

# Seqs reserved per write of the state file: at 10,000 readings/s one small fsync every 5 s.
SEQ_BLOCK: Final = 50_000


@dataclass(frozen=True, slots=True)
class SeqState:
    reserved: int  # every seq below this may have been used
    floor: int  # every seq below this was confirmed or declared as a gap when written


def read_state(path: Path) -> SeqState | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return SeqState(int(data["reserved"]), int(data["floor"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # A torn state file: the database still knows its last seq; caller copes.
        return None


def write_state(path: Path, state: SeqState) -> None:
    write_atomic(path, json.dumps({"reserved": state.reserved, "floor": state.floor}).encode())


@dataclass(slots=True)
class Seqs:
    """The next seq to hand out, and the reservation written before any seq reaches it.

    A transaction that rolls back puts ``next`` back where it was (its seqs were never
    used); the reservation stays, so a seq never goes to two records.
    """

    path: Path
    next: int = 1
    reserved: int = 0

    def take(self, n: int, floor: Callable[[], int]) -> int:
        """``n`` consecutive seqs; the first. ``floor`` is asked only when a block is due."""
        first = self.next
        if first + n > self.reserved:
            self.reserve(first + n, floor())
        self.next += n
        return first

    def reserve(self, upto: int, floor: int) -> None:
        reserved = upto + SEQ_BLOCK
        write_state(self.path, SeqState(reserved, floor))
        self.reserved = reserved
