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

The table is a ring of slots, at least ``window`` of them: the record with seq ``s`` takes
slot ``s % slots``, overwriting in place the receipt of the record stored a ring earlier.
Slots are kept 120 to a row (``KEYS_PER_BLOCK``, 960 bytes of keys: one row fills a 1 KiB
page), so a commit rewrites the two or three pages its consecutive slots share. The lookup
is an in-memory map loaded from the ring at start. Each layout before it cost the SD card
more (bench/gateway_sd_writes.py): a table keyed by the random digests dirtied one b-tree
page per record (7.5 KB written per reading with a full window); an append-only log with
eviction wrote its pages twice, once to append and once to delete, plus the freelist; a
row per slot held five times fewer keys per page. The map changes only after COMMIT, so a
rolled-back transaction never leaves a key that was not stored.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import sys
from array import array
from dataclasses import dataclass
from typing import Final

from gateway.buffer.schema import Txn, meta, set_meta

log = logging.getLogger(__name__)


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


# 960 bytes of keys: a row fills a 1 KiB page without overflowing it.
KEYS_PER_BLOCK: Final = 120
_EMPTY: Final = -1  # keys are 63-bit, never negative


class Receipts:
    """The receipt ring as the store's writer thread sees it (inside its transactions).

    A key is recognised while its slot has not been overwritten: at least until ``window``
    more records are stored (a record stored without a receipt, such as a heartbeat, leaves
    its slot as it was, so an older key may be remembered longer, never shorter).
    """

    def __init__(self, window: int, per_block: int = KEYS_PER_BLOCK) -> None:
        self.window = window
        self.per_block = per_block
        self.slots = -(-window // per_block) * per_block  # whole blocks, >= window
        self.count = 0  # receipts remembered (filled slots)
        self.recognised = 0  # copies recognised since start (a counter for status/heartbeat)
        self._keys: dict[int, int] = {}  # key -> filled slots carrying it (committed)
        self._slots = _empty(self.slots)  # slot -> key (committed)
        self._pending: dict[int, int] = {}  # slot -> key, written in the open transaction

    # -- open -------------------------------------------------------------------------
    def load(self, con: sqlite3.Connection) -> None:
        """Load the committed ring; first convert the receipts of an earlier layout, or
        re-slot the ring if the window changed (configuration or budget)."""
        geometry = (meta(con, "receipt_slots"), meta(con, "receipt_block"))
        old = _legacy_rows(con)
        if old is not None:
            self._rewrite(con, old, drop_legacy=True)
        elif geometry[0] is not None and geometry != (self.slots, self.per_block):
            old_slots, old_block = geometry[0], geometry[1] or 1
            try:
                self._rewrite(con, self._derived_rows(con, old_slots, old_block))
            except sqlite3.OperationalError as err:
                if getattr(err, "sqlite_errorname", "") != "SQLITE_FULL":
                    raise
                # A larger ring needs pages the byte budget does not have now: keep the
                # ring as it is (its receipts stay valid) rather than fail the open, which
                # would set the whole buffer aside as corrupt.
                log.warning(
                    "buffer: no room for a receipt ring of %d slots; keeping %d this run",
                    self.slots,
                    old_slots,
                )
                self.slots, self.per_block = old_slots, old_block
        elif geometry[0] is None:
            self._rewrite(con, [])  # a new file: record the ring's geometry
        slots, pb = _empty(self.slots), self.per_block
        for blk, blob in con.execute("SELECT blk, keys FROM receipt_block"):
            if 0 <= blk < self.slots // pb:  # a slice assignment must never resize the ring
                block = _unpack(blob)[:pb]
                slots[blk * pb : blk * pb + len(block)] = block
        self._slots = slots
        self._keys = {}
        for key in slots:
            if key != _EMPTY:
                self._keys[key] = self._keys.get(key, 0) + 1
        self.count = sum(self._keys.values())
        self._pending = {}

    def _derived_rows(
        self, con: sqlite3.Connection, old_slots: int, old_block: int
    ) -> list[tuple[int, int]]:
        """(seq, key) of the ring written with another geometry: slot ``i`` holds the
        newest seq at or below the last stored one that falls in it."""
        last = meta(con, "last_seq") or 0
        rows: list[tuple[int, int]] = []
        for blk, blob in con.execute("SELECT blk, keys FROM receipt_block"):
            if not 0 <= blk < old_slots // old_block:
                continue  # outside the ring (a damaged file): not a receipt
            for i, key in enumerate(_unpack(blob)[:old_block]):
                slot = blk * old_block + i
                if key != _EMPTY:
                    rows.append((last - (last - slot) % old_slots, key))
        return rows

    def _rewrite(
        self, con: sqlite3.Connection, rows: list[tuple[int, int]], *, drop_legacy: bool = False
    ) -> None:
        """Write the ring anew from (seq, key) rows: the newest that fit, each in its slot."""
        slots = _empty(self.slots)
        taken: set[int] = set()
        for seq, key in sorted(rows, reverse=True):
            slot = seq % self.slots
            if slot not in taken:
                taken.add(slot)
                slots[slot] = key
        pb = self.per_block
        blocks = {s // pb for s in taken}
        with Txn(con):  # once, at open, before the store's own transactions
            if drop_legacy:
                con.execute("DROP INDEX IF EXISTS receipt_seq")
                con.execute("DROP TABLE receipt")
            con.execute("DELETE FROM receipt_block")
            con.executemany(
                "INSERT INTO receipt_block(blk, keys) VALUES (?, ?)",
                [(b, _pack(slots[b * pb : (b + 1) * pb])) for b in sorted(blocks)],
            )
            set_meta(con, "receipt_slots", self.slots)
            set_meta(con, "receipt_block", pb)

    # -- in the store's transactions ----------------------------------------------------
    def seen(self, con: sqlite3.Connection, receipt: Receipt) -> bool:
        """True when ``receipt`` is a copy of a stored record (call inside the transaction;
        copies within the transaction itself are the caller's to catch)."""
        return receipt.check and receipt.key in self._keys

    def remember(self, con: sqlite3.Connection, rows: list[tuple[int, int]]) -> None:
        """Store (key, seq) pairs in their slots (same transaction as the records)."""
        if not rows:
            return
        pb, pending = self.per_block, self._pending
        touched: set[int] = set()
        for key, seq in rows:
            slot = seq % self.slots
            pending[slot] = key
            touched.add(slot // pb)
        blobs = []
        for b in sorted(touched):
            block = self._slots[b * pb : (b + 1) * pb]
            for i in range(pb):
                new = pending.get(b * pb + i)
                if new is not None:
                    block[i] = new
            blobs.append((b, _pack(block)))
        # An upsert of a same-sized row overwrites it in place; REPLACE would delete the
        # row and insert it anew.
        con.executemany(
            "INSERT INTO receipt_block(blk, keys) VALUES (?, ?) "
            "ON CONFLICT(blk) DO UPDATE SET keys = excluded.keys",
            blobs,
        )

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


def _empty(n: int) -> array[int]:
    return array("q", [_EMPTY]) * n


def _pack(block: array[int]) -> bytes:
    """Little-endian on any host, so a buffer file moves between machines."""
    if sys.byteorder == "big":
        block = array("q", block)
        block.byteswap()
    return block.tobytes()


def _unpack(blob: bytes) -> array[int]:
    block = array("q")
    block.frombytes(blob[: len(blob) // 8 * 8])
    if sys.byteorder == "big":
        block.byteswap()
    return block


def _legacy_rows(con: sqlite3.Connection) -> list[tuple[int, int]] | None:
    """(seq, key) of the receipt table of an earlier release (keyed by digest, then a log
    in seq order; both have these columns), or None when there is none."""
    if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'receipt'").fetchone() is None:
        return None
    return [(int(s), int(k)) for s, k in con.execute("SELECT seq, key FROM receipt")]
