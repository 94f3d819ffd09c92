"""What a buffer file that had to be moved aside still tells about the seqs it held.

A corrupt file is rarely corrupt everywhere. Before the gateway declares a loss it reads
what it can from the moved file, each part on its own (a part that fails is unknown, never
guessed): the last seq it had handed out (``meta``), the seqs of the records it still held
(``rec``) and the gaps it had queued for the server (``gap``). With those the loss is
declared exactly; without them, from the seq state file (see ``recovery.plan_resume``).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway.buffer.budget import runs
from hamlet.contract import GapReason


@dataclass(frozen=True, slots=True)
class Salvage:
    last_seq: int | None = None  # the last seq the file had handed out
    held: list[tuple[int, int]] | None = None  # runs of seqs of records not yet confirmed
    gaps: list[tuple[int, int, GapReason]] | None = None  # gaps not yet confirmed

    @property
    def exact(self) -> bool:
        return self.last_seq is not None and self.held is not None and self.gaps is not None


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A buffer file no store holds, opened read-only (a moved file; tests' closed files)."""
    # Read-only: the moved file is evidence, not a database we go on using. Without a WAL
    # beside it, immutable: SQLite then creates no -wal/-shm files next to it either.
    wal = Path(f"{path}-wal").exists()
    mode = "mode=ro" if wal else "immutable=1"
    con = sqlite3.connect(f"file:{path}?{mode}", uri=True, timeout=1)
    try:
        yield con
    finally:
        con.close()


def read(path: Path) -> Salvage:
    """What ``path`` (a moved-aside buffer file, with its ``-wal`` beside it) still says."""
    last: int | None = None
    held: list[tuple[int, int]] | None = None
    gaps: list[tuple[int, int, GapReason]] | None = None
    try:
        with read_only(path) as con:
            try:
                row = con.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
                last = None if row is None else int(row[0])
            except (sqlite3.DatabaseError, ValueError, TypeError):
                last = None
            try:
                held = runs([int(r[0]) for r in con.execute("SELECT seq FROM rec ORDER BY seq")])
            except (sqlite3.DatabaseError, ValueError, TypeError):
                held = None
            try:
                gaps = [
                    (int(a), int(b), GapReason(r))
                    for a, b, r in con.execute("SELECT first, last, reason FROM gap ORDER BY first")
                ]
            except (sqlite3.DatabaseError, ValueError, TypeError):
                gaps = None
    except sqlite3.DatabaseError:
        return Salvage()
    if last is not None:
        # Rows beyond the recorded last seq mean the file cannot be trusted on it.
        top = max([last] + [b for _, b in held or []] + [b for _, b, _ in gaps or []])
        if top != last:
            last = None
    return Salvage(last, held, gaps)
