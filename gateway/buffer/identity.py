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

The table is a log in seq order (``seq`` is the rowid) and the lookup is an in-memory map
loaded from it at start: keys are random, and a table keyed by them dirtied one page of its
b-tree per record (measured: 7.5 KB written to the SD card per reading with a full window,
bench/gateway_sd_writes.py); appending writes one or two pages per commit. The map changes
only after COMMIT, so a rolled-back transaction never leaves a key that was not stored.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from typing import Final

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
    """The receipt log as the store's writer thread sees it (inside its transactions)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.count = 0
        self.recognised = 0  # copies recognised since start (a counter for status/heartbeat)
        self._keys: dict[int, int] = {}  # key -> stored rows carrying it (committed)
        self._added: list[int] = []  # in the open transaction
        self._removed: list[int] = []

    def load(self, con: sqlite3.Connection) -> None:
        """Load the committed keys (the table and its conversion: gateway/buffer/schema.py)."""
        self._keys = {}
        for (key,) in con.execute("SELECT key FROM receipt"):
            self._keys[key] = self._keys.get(key, 0) + 1
        self.count = sum(self._keys.values())
        self._added, self._removed = [], []

    def seen(self, con: sqlite3.Connection, receipt: Receipt) -> bool:
        """True when ``receipt`` is a copy of a stored record (call inside the transaction;
        copies within the transaction itself are the caller's to catch)."""
        return receipt.check and receipt.key in self._keys

    def remember(self, con: sqlite3.Connection, rows: list[tuple[int, int]]) -> None:
        """Store (key, seq) pairs, then evict beyond the window (same transaction)."""
        if not rows:
            return
        con.executemany("INSERT INTO receipt(seq, key) VALUES (?, ?)", [(s, k) for k, s in rows])
        self._added += [k for k, _ in rows]
        count = self.count + len(self._added) - len(self._removed)
        if count > self.window + _EVICT_SLACK:
            (cut,) = con.execute(
                "SELECT seq FROM receipt ORDER BY seq LIMIT 1 OFFSET ?", (count - self.window - 1,)
            ).fetchone()
            self._removed += [
                int(k) for (k,) in con.execute("SELECT key FROM receipt WHERE seq <= ?", (cut,))
            ]
            con.execute("DELETE FROM receipt WHERE seq <= ?", (cut,))

    def committed(self) -> None:
        """After COMMIT: the transaction's keys count from now on."""
        keys = self._keys
        for k in self._added:
            keys[k] = keys.get(k, 0) + 1
        for k in self._removed:
            n = keys.get(k, 0) - 1
            if n > 0:
                keys[k] = n
            else:
                keys.pop(k, None)
        self.count += len(self._added) - len(self._removed)
        self._added, self._removed = [], []

    def rolled_back(self) -> None:
        self._added, self._removed = [], []
