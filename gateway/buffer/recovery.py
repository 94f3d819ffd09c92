"""Corruption recovery: a buffer file SQLite calls corrupt is moved aside, never repaired in
place, and the gateway starts a new one above every seq it ever handed out.

Found at start (the file cannot be opened or checked) or while running (a commit raises
``SQLITE_CORRUPT``/``SQLITE_NOTADB``), the path is the same, so a bad file never becomes
a crash loop: :func:`quarantine` moves the file (with its ``-wal``/``-shm``) to
``buffer.db.corrupt-<time>`` and keeps the last ``keep_corrupt_files`` of them;
:func:`gateway.buffer.salvage.read` reads what the moved file still tells; :func:`plan_resume`
decides the seq to resume at and the gaps to declare to the server. A file held by another
process (``SQLITE_BUSY``) is not corrupt and is never moved (:func:`in_use`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from gateway.buffer import salvage
from gateway.buffer.records import BufferError
from gateway.buffer.schema import DB_NAME
from gateway.buffer.seqstate import SeqState
from hamlet.contract import GapReason

log = logging.getLogger(__name__)

CORRUPT_ERRORS: Final = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})


def is_corrupt(err: sqlite3.DatabaseError) -> bool:
    return getattr(err, "sqlite_errorname", "") in CORRUPT_ERRORS


def in_use(db_path: Path, err: sqlite3.DatabaseError) -> BufferError | None:
    """The error to raise when ``err`` says another process holds the file, else None."""
    if getattr(err, "sqlite_errorname", "") != "SQLITE_BUSY":
        return None
    # Held by another process: not corrupt, and never to be moved aside.
    return BufferError(
        f"{db_path} is in use by another process: is another gateway "
        "running with this data_dir? Stop it first. / Tệp bộ đệm đang được một "
        "tiến trình khác dùng: hãy dừng gateway kia trước."
    )


def quarantine(data_dir: Path, keep_files: int, why: str) -> salvage.Salvage:
    """Move the buffer file aside (keeping the newest ``keep_files``); what it still tells."""
    db_path = data_dir / DB_NAME
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    moved = data_dir / f"{DB_NAME}.corrupt-{stamp}"
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(db_path) + suffix)
        if src.exists():
            os.replace(src, Path(str(moved) + suffix))
    found = salvage.read(moved)
    log.error(
        "buffer: %s is corrupt (%s); moved aside to %s and starting a new buffer. "
        "Records not yet uploaded from it are reported to the server as lost. / "
        "Tệp bộ đệm bị hỏng, đã chuyển sang %s và tạo tệp mới.",
        db_path,
        why,
        moved.name,
        moved.name,
    )
    kept = sorted(
        p for p in data_dir.glob(f"{DB_NAME}.corrupt-*") if not p.name.endswith(("-wal", "-shm"))
    )
    for old in kept[: max(len(kept) - keep_files, 0)]:
        for suffix in ("", "-wal", "-shm"):
            Path(str(old) + suffix).unlink(missing_ok=True)
    return found


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a fresh file starts, and the seqs to declare to the server as lost."""

    next_seq: int
    gaps: list[tuple[int, int, GapReason]] = field(default_factory=list)

    def count(self, reason: GapReason) -> int:
        return sum(b - a + 1 for a, b, r in self.gaps if r is reason)


def plan_resume(state: SeqState | None, existed: bool, lost: salvage.Salvage) -> Resume:
    """A fresh file. Resume above every seq handed out before; declare what was lost.

    Exactly, where the moved file still tells (its unsent records' seqs, its queued gaps,
    its last seq); else the range it used (``floor`` to its last seq, the rest of the
    reservation ``unused``); else, with nothing readable, the whole reserved range.
    """
    if state is None and lost.last_seq is None:
        if existed:
            log.error("buffer: replaced a corrupt file and no seq state survived; seq restarts")
        return Resume(1)
    top = lost.last_seq if lost.last_seq is not None else 0
    next_seq = max(state.reserved if state else 1, top + 1, 1)
    floor = state.floor if state else 1
    gaps: list[tuple[int, int, GapReason]] = []
    if lost.exact:
        gaps += [(a, b, GapReason.CORRUPT) for a, b in lost.held or []]
        gaps += lost.gaps or []
        used = top
    elif lost.last_seq is not None:
        used = top
        if floor <= used:
            gaps.append((floor, used, GapReason.CORRUPT))
    else:
        used = next_seq - 1
        if floor <= used:
            gaps.append((floor, used, GapReason.CORRUPT))
    if used + 1 <= next_seq - 1:
        gaps.append((used + 1, next_seq - 1, GapReason.UNUSED))
    for a, b, reason in gaps:
        log.error("buffer: seqs %d..%d declared %s (buffer file lost)", a, b, reason)
    return Resume(next_seq, gaps)
