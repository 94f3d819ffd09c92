"""Dead letters: input the gateway could not use, kept (bounded) for an installer to inspect.

Stored in the buffer's SQLite file and written by the buffer's single writer thread, so a
dead letter costs no extra fsync: it rides on the next group commit. Bounded by count and
by bytes; the oldest are evicted first and every eviction is counted.

A reason starts with a short code, then ``:`` and the detail
(``out_of_range: water_level=99 m is outside …``); counts are kept per code.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Final

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    raw BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_count (code TEXT PRIMARY KEY, n INTEGER NOT NULL);
"""
# A dead letter keeps at most this much of the raw input: enough to see what went wrong.
MAX_RAW_BYTES: Final = 2048
MAX_REASON_CHARS: Final = 500
EVICTED: Final = "(evicted)"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    at_ms: int
    source: str
    reason: str
    raw: bytes

    @property
    def code(self) -> str:
        return reason_code(self.reason)

    def as_json(self) -> dict[str, object]:
        return {
            "at": self.at_ms / 1000,
            "source": self.source,
            "reason": self.reason,
            # Invalid UTF-8 shown as \xNN escapes: what came in, byte for byte.
            "raw": self.raw.decode("utf-8", errors="backslashreplace"),
        }


def reason_code(reason: str) -> str:
    head = reason.split(":", 1)[0].strip()
    return (head or "unknown")[:60]


def safe_text(text: str) -> str:
    """``text`` made storable: lone surrogates become ``\\udXXX`` escapes (never an error)."""
    return text.encode("utf-8", errors="backslashreplace").decode("utf-8")


def make(at_ms: int, source: str, reason: str, raw: bytes | str) -> DeadLetter:
    # Bytes are kept as they came (NULs and invalid UTF-8 included: raw is a BLOB); text that
    # is not valid Unicode keeps every character, escaped, so the letter itself is storable.
    data = raw.encode("utf-8", errors="backslashreplace") if isinstance(raw, str) else bytes(raw)
    return DeadLetter(
        at_ms,
        safe_text(source[:100]),
        safe_text(reason[:MAX_REASON_CHARS]),
        data[:MAX_RAW_BYTES],
    )


def put_many(
    con: sqlite3.Connection, letters: list[DeadLetter], max_count: int, max_bytes: int
) -> int:
    """Insert ``letters`` and evict the oldest beyond the bounds; returns evictions.

    Runs inside the caller's transaction (the buffer's group commit).
    """
    if not letters:
        return 0
    con.executemany(
        "INSERT INTO dead(at_ms, source, code, reason, raw) VALUES (?,?,?,?,?)",
        [(d.at_ms, d.source, d.code, d.reason, d.raw) for d in letters],
    )
    counts: dict[str, int] = {}
    for d in letters:
        counts[d.code] = counts.get(d.code, 0) + 1
    con.executemany(
        "INSERT INTO dead_count(code, n) VALUES (?, ?) "
        "ON CONFLICT(code) DO UPDATE SET n = n + excluded.n",
        list(counts.items()),
    )
    evicted = 0
    (count, size) = con.execute(
        "SELECT count(*), coalesce(sum(length(raw) + length(reason)), 0) FROM dead"
    ).fetchone()
    while count > max_count or size > max_bytes:
        over = max(count - max_count, 1)
        rows = con.execute(
            "SELECT id, length(raw) + length(reason) FROM dead ORDER BY id LIMIT ?", (over,)
        ).fetchall()
        if not rows:
            break
        last_id = rows[-1][0]
        con.execute("DELETE FROM dead WHERE id <= ?", (last_id,))
        evicted += len(rows)
        count -= len(rows)
        size -= sum(r[1] for r in rows)
    if evicted:
        con.execute(
            "INSERT INTO dead_count(code, n) VALUES (?, ?) "
            "ON CONFLICT(code) DO UPDATE SET n = n + excluded.n",
            (EVICTED, evicted),
        )
    return evicted


def recent(con: sqlite3.Connection, n: int) -> list[DeadLetter]:
    rows = con.execute(
        "SELECT at_ms, source, reason, raw FROM dead ORDER BY id DESC LIMIT ?", (n,)
    ).fetchall()
    return [DeadLetter(r[0], r[1], r[2], bytes(r[3])) for r in rows]


def counts(con: sqlite3.Connection) -> tuple[int, dict[str, int]]:
    """(dead letters currently stored, cumulative count per reason code incl. evictions)."""
    (stored,) = con.execute("SELECT count(*) FROM dead").fetchone()
    by = {str(c): int(n) for c, n in con.execute("SELECT code, n FROM dead_count")}
    return int(stored), by
