"""What was received, remembered in the same transaction as the record it became.

A broker redelivers every QoS1 message that was committed but not yet acknowledged when the
gateway died; a field node retransmits a frame whose acknowledgement it missed. Each such copy
carries the same *receipt key* (a 63-bit digest of what arrived, computed by the source), so
the buffer recognises it and gives it no new seq. The key row is written in the very
transaction that stores the record: either both survive a power cut or neither does, so a
copy arriving after any restart is recognised exactly when the original was stored.

Keys are kept for a bounded recent window (``BufferConfig.receipt_window`` records, oldest
evicted first, by the seq they were stored under); see docs/store-and-forward.md for why the
window's size follows the broker's queue.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from typing import Final

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS receipt (key INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS receipt_seq ON receipt(seq);
"""
# Evict in steps, not one row per commit: one DELETE per this many records stored.
_EVICT_SLACK: Final = 1000


@dataclass(frozen=True, slots=True)
class Receipt:
    """A record's identity as received.

    ``check``: whether an earlier record with this key means *this* one is a copy. A message
    that carries its own seq or timestamp is unique by construction, so a match is always a
    copy; a bare message (no seq, no time) may legitimately repeat byte for byte, so only a
    transport-flagged redelivery (MQTT DUP) is checked, though every key is remembered.
    """

    key: int
    check: bool = True


def receipt_key(*parts: bytes | str | int) -> int:
    """A 63-bit digest of ``parts`` (an SQLite INTEGER PRIMARY KEY: the row is the index)."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(4, "big"))  # length-prefixed: ("ab","c") != ("a","bc")
        h.update(data)
    return int.from_bytes(h.digest(), "big") >> 1


def receipts_for(key: int, n: int, *, check: bool) -> list[Receipt]:
    """One receipt per record a message became (record ``i`` of the message)."""
    return [Receipt(receipt_key(key, i), check) for i in range(n)]


class Receipts:
    """The receipt table as the store's writer thread sees it (inside its transactions)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.count = 0
        self.recognised = 0  # copies recognised since start (a counter for status/heartbeat)

    def load(self, con: sqlite3.Connection) -> None:
        con.executescript(SCHEMA)
        self.count = int(con.execute("SELECT count(*) FROM receipt").fetchone()[0])

    def seen(self, con: sqlite3.Connection, receipt: Receipt) -> bool:
        """True when ``receipt`` is a copy of a stored record (call inside the transaction)."""
        if not receipt.check:
            return False
        row = con.execute("SELECT 1 FROM receipt WHERE key = ?", (receipt.key,)).fetchone()
        return row is not None

    def remember(self, con: sqlite3.Connection, rows: list[tuple[int, int]]) -> None:
        """Store (key, seq) pairs, then evict beyond the window (same transaction)."""
        if not rows:
            return
        before = con.total_changes
        con.executemany("INSERT OR REPLACE INTO receipt(key, seq) VALUES (?, ?)", rows)
        self.count += con.total_changes - before
        if self.count > self.window + _EVICT_SLACK:
            (cut,) = con.execute(
                "SELECT seq FROM receipt ORDER BY seq DESC LIMIT 1 OFFSET ?", (self.window,)
            ).fetchone()
            con.execute("DELETE FROM receipt WHERE seq <= ?", (cut,))
            # Recount: INSERT OR REPLACE of a known key changed a row without adding one.
            self.count = int(con.execute("SELECT count(*) FROM receipt").fetchone()[0])
