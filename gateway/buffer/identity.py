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

The table is a ring of ``window`` slots: the record with seq ``s`` takes slot ``s % window``,
overwriting in place the receipt of the record ``window`` seqs before it. The lookup is an
in-memory map loaded from the ring at start. Each layout before it cost the SD card more
(bench/gateway_sd_writes.py): a table keyed by the random digests dirtied one b-tree page per
record (7.5 KB written per reading with a full window); an append-only log with eviction
wrote its pages twice, once to append and once to delete, plus the freelist (about a third
of every commit's WAL frames). Updating a slot rewrites only the few pages the commit's
consecutive slots share, and the file never grows or frees pages for receipts. The map
changes only after COMMIT, so a rolled-back transaction never leaves a key that was not
stored.
"""

from __future__ import annotations

import hashlib
import sqlite3
from array import array
from dataclasses import dataclass
from typing import Final

from gateway.buffer.schema import Txn


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
    """The receipt ring as the store's writer thread sees it (inside its transactions).

    A key is recognised while its slot has not been overwritten: at least until ``window``
    more records are stored (a record stored without a receipt, such as a heartbeat, leaves
    its slot as it was, so an older key may be remembered longer, never shorter).
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self.count = 0  # receipts remembered (filled slots)
        self.recognised = 0  # copies recognised since start (a counter for status/heartbeat)
        self._keys: dict[int, int] = {}  # key -> filled slots carrying it (committed)
        self._slots = array("q", [_EMPTY]) * window  # slot -> key (committed)
        self._pending: dict[int, int] = {}  # slot -> key, written in the open transaction

    def load(self, con: sqlite3.Connection) -> None:
        """Load the committed ring (its table and the conversions of older layouts:
        gateway/buffer/schema.py), first re-slotting it if the window changed."""
        rows = con.execute("SELECT slot, seq, key FROM receipt_ring").fetchall()
        if any(slot >= self.window or seq % self.window != slot for slot, seq, _ in rows):
            rows = self._reslot(con, rows)
        self._slots = array("q", [_EMPTY]) * self.window
        self._keys = {}
        for slot, _seq, key in rows:
            self._slots[slot] = key
            self._keys[key] = self._keys.get(key, 0) + 1
        self.count = len(rows)
        self._pending = {}

    def _reslot(
        self, con: sqlite3.Connection, rows: list[tuple[int, int, int]]
    ) -> list[tuple[int, int, int]]:
        """Another window (configuration or budget changed): keep the newest receipts,
        each in the slot its seq takes in this window."""
        newest: dict[int, tuple[int, int]] = {}
        for _slot, seq, key in sorted(rows, key=lambda r: r[1], reverse=True)[: self.window]:
            newest.setdefault(seq % self.window, (seq, key))
        kept = [(slot, seq, key) for slot, (seq, key) in newest.items()]
        with Txn(con):  # once, at open, before the store's own transactions
            con.execute("DELETE FROM receipt_ring")
            con.executemany("INSERT INTO receipt_ring(slot, seq, key) VALUES (?, ?, ?)", kept)
        return kept

    def seen(self, con: sqlite3.Connection, receipt: Receipt) -> bool:
        """True when ``receipt`` is a copy of a stored record (call inside the transaction;
        copies within the transaction itself are the caller's to catch)."""
        return receipt.check and receipt.key in self._keys

    def remember(self, con: sqlite3.Connection, rows: list[tuple[int, int]]) -> None:
        """Store (key, seq) pairs in their slots (same transaction as the records)."""
        if not rows:
            return
        # An upsert updates the row in place; REPLACE would delete it and insert it anew.
        con.executemany(
            "INSERT INTO receipt_ring(slot, seq, key) VALUES (?, ?, ?) "
            "ON CONFLICT(slot) DO UPDATE SET seq = excluded.seq, key = excluded.key",
            [(seq % self.window, seq, key) for key, seq in rows],
        )
        for key, seq in rows:
            self._pending[seq % self.window] = key

    def committed(self) -> None:
        """After COMMIT: the transaction's keys count from now on, and those they
        overwrote no longer do."""
        keys, slots = self._keys, self._slots
        for slot, key in self._pending.items():
            old = slots[slot]
            if old == _EMPTY:
                self.count += 1
            else:
                n = keys[old] - 1
                if n:
                    keys[old] = n
                else:
                    del keys[old]
            slots[slot] = key
            keys[key] = keys.get(key, 0) + 1
        self._pending = {}

    def rolled_back(self) -> None:
        self._pending = {}


_EMPTY: Final = -1  # keys are 63-bit, never negative
