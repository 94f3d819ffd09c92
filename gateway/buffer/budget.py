"""The buffer's byte budget: a hard cap on the files, and the order in which records give way.

``buffer.max_bytes`` caps everything the buffer keeps on disk: ``buffer.db``, ``-wal``,
``-shm`` and ``-journal`` (a rollback journal exists only for a moment while a new, empty
file is switched to WAL). It is split so that each file is bounded by construction, and the
files themselves are measured after every commit:

* ``-shm``: one 32 KiB wal-index block, enough for 4,062 WAL frames; the WAL never gets
  that long (its share is at most 4 MiB = 4,002 frames of 1 KiB pages). The store holds the
  file exclusively, so SQLite keeps the wal-index in memory and there is no ``-shm`` file
  at all; the share stays reserved all the same.
* ``-wal``: ``wal_bytes`` (max_bytes/16, clamped to 256 KiB…4 MiB). SQLite checkpoints after
  the commit that brings the WAL to ``checkpoint_frames`` (a third of it); with one
  connection that checkpoint always completes, and the next transaction rewrites the WAL from
  its start. So the WAL never holds more than ``checkpoint_frames - 1`` frames plus one
  transaction, and every transaction the buffer runs is kept under ``txn_frames`` pages:
  group commits are split, uplink batches, budget chunks, vacuum and clock updates are
  sized to it (:func:`slices`, :attr:`Budget.txn_bytes`).
* ``buffer.db``: the rest, as ``PRAGMA max_page_count`` (``db_pages``). SQLite refuses to
  grow the file beyond it (SQLITE_FULL), which the store handles by the policy below, never
  by failing the committer. During a checkpoint the file grows to at most ``db_pages`` while
  the WAL still holds its frames: both bounds hold at once, so their sum does too.

Enforcement starts when the pages in use (``page_count - freelist_count``) pass ``high``:
``db_pages`` less one transaction and a few pages of slack, so the commit that crosses it
still fits. It runs until ``low`` (90 % of ``high``) and frees pages that later commits
reuse; the file itself only shrinks after the buffer drains or when the budget was lowered.

Order (:data:`STAGES`), oldest first by seq, never by wall time: raw readings are reduced to
aggregates (min/mean/max/n per ``aggregate_interval_s``), then dropped; then aggregates; then
heartbeats, events and alerts, which are kept longest. Every seq that goes is declared as a
gap (``aggregated`` or ``dropped``) so the server can explain it.

One batch in flight (the rule is written down in gateway/buffer/store.py): the records of
that batch, the span from its first to its last seq, are never aggregated or dropped: the
server may be storing them right now. Every stage skips that span and carries on with the
records after it; a stage never gives up because its oldest records are in flight.

Kinds are stored as :class:`KindCode` (``rec.kind``); an aggregate is folded as an
:class:`Aggregate`, in the layout of the server's rollups.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import TYPE_CHECKING, Final

from gateway.clock import PENDING
from hamlet.contract import GapReason, RecordKind

if TYPE_CHECKING:
    from gateway import deadletter
    from gateway.buffer.records import NewRecord
    from gateway.buffer.store import Store

log = logging.getLogger(__name__)

# 1 KiB pages: a commit at a hamlet's load dirties a handful of pages (record and receipt
# leaves, meta, page 1, pointer map, freelist), each one WAL frame; at 4 KiB each of those
# was 4 KiB on the SD card (measured 464 -> 274 bytes per reading, bench/gateway_sd_writes.py).
# New files only: SQLite cannot change the page size of a WAL database, so a file made with
# another size (4 KiB before) keeps it and the budget is computed from what the file has
# (``Budget.for_max(..., page_size)``, ``gateway.buffer.schema.configure``).
PAGE_SIZE: Final = 1024
WAL_HEADER: Final = 32
FRAME_HEADER: Final = 24
WAL_FRAME: Final = PAGE_SIZE + FRAME_HEADER
# The wal-index: 32 KiB covers 4,062 frames; the WAL share below keeps it to one block.
SHM_BYTES: Final = 32 * 1024
WAL_MIN: Final = 256 * 1024
WAL_MAX: Final = 4 * 1024 * 1024
# Pages a transaction touches besides its rows: page 1, pointer-map, freelist trunk, b-tree
# interior pages, meta, series, dead letters (measured: 2000 readings = 20 pages of rows,
# 22 frames).
TXN_OVERHEAD_PAGES: Final = 10
# Bytes a record row is counted for in those estimates (measured ≈ 40 for a reading) plus
# its text; rows fill pages to about 75 % after deletes and reuse.
ROW_BYTES: Final = 48
FILL: Final = 0.75
SLACK_PAGES: Final = 8


class KindCode(IntEnum):
    """A record kind as stored in ``rec.kind``: fixed forever (files outlive releases)."""

    READING = 0
    AGGREGATE = 1
    HEARTBEAT = 2
    EVENT = 3
    ALERT = 4


# The lookups every row goes through (plain ints bound and read), derived from the enum.
KIND_CODE: Final[dict[RecordKind, int]] = {RecordKind[c.name]: c.value for c in KindCode}
CODE_KIND: Final[dict[int, RecordKind]] = {c.value: RecordKind[c.name] for c in KindCode}


class Action(Enum):
    AGGREGATE = "aggregate"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class Stage:
    action: Action
    kind: RecordKind


# The order in which records give way to the budget (first row first).
STAGES: Final = (
    Stage(Action.AGGREGATE, RecordKind.READING),
    Stage(Action.DROP, RecordKind.READING),
    Stage(Action.DROP, RecordKind.AGGREGATE),
    Stage(Action.DROP, RecordKind.HEARTBEAT),
    Stage(Action.DROP, RecordKind.EVENT),
    Stage(Action.DROP, RecordKind.ALERT),
)
# How long each kind is kept: the index of the first stage that touches it.
RANK: Final[dict[RecordKind, int]] = {
    k: min(i for i, s in enumerate(STAGES) if s.kind == k) for k in RecordKind
}


@dataclass(slots=True)
class Aggregate:
    """Readings of one series in one ``aggregate_interval_s`` bucket, folded in the layout of
    the server's rollups (``n, sum, min, max``: its ``hourly`` table, server/store/schema.py),
    stamped with the first reading's time."""

    n: int
    sum: float
    min: float
    max: float
    wall_ms: int
    tq: int
    boot: int
    mono_ns: int

    def add(self, value: float, tq: int) -> None:
        self.n += 1
        self.sum += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        # PENDING (not yet anchored) wins: the aggregate is re-anchored with the rest.
        self.tq = max(self.tq, tq) if PENDING not in (self.tq, tq) else PENDING

    @property
    def mean(self) -> float:
        # Within its own bounds, whatever the float sum's rounding.
        return min(max(self.sum / self.n, self.min), self.max)


@dataclass(frozen=True, slots=True)
class Budget:
    """How ``max_bytes`` is split between the files; see the module docstring."""

    max_bytes: int
    page_size: int
    wal_bytes: int
    shm_bytes: int
    db_pages: int  # PRAGMA max_page_count
    checkpoint_frames: int  # PRAGMA wal_autocheckpoint
    txn_frames: int  # the most pages one transaction may write
    high: int  # pages in use above this start enforcement
    low: int  # enforcement stops at or below this

    @classmethod
    def for_max(cls, max_bytes: int, page_size: int = PAGE_SIZE) -> Budget:
        wal = min(max(max_bytes // 16, WAL_MIN), WAL_MAX)
        frames = (wal - WAL_HEADER) // (page_size + FRAME_HEADER)
        ckpt = frames // 3
        # Peak WAL = (ckpt - 1) frames left from earlier commits + one transaction.
        txn = frames - ckpt + 1
        db_pages = (max_bytes - wal - SHM_BYTES) // page_size
        high = db_pages - txn - SLACK_PAGES
        return cls(max_bytes, page_size, wal, SHM_BYTES, db_pages, ckpt, txn, high, high * 9 // 10)

    @property
    def wal_frame(self) -> int:
        return self.page_size + FRAME_HEADER

    @property
    def txn_bytes(self) -> int:
        """Row bytes one transaction may write or delete and still fit ``txn_frames``."""
        return int((self.txn_frames - TXN_OVERHEAD_PAGES) * self.page_size * FILL)

    @property
    def high_bytes(self) -> int:
        return self.high * self.page_size

    @property
    def low_bytes(self) -> int:
        return self.low * self.page_size

    @property
    def dead_letter_bytes(self) -> int:
        """Dead letters may use a sixteenth of the budget (they cannot give way to it)."""
        return self.max_bytes // 16


def text_bytes(text: str | None) -> int:
    """UTF-8 size of ``text``, bounded from above without encoding it (4 bytes a char)."""
    if not text:
        return 0
    if not isinstance(text, str):
        # Not text at all (a bug upstream): the store refuses the record with its reason;
        # sizing must not be what fails first.
        return 4 * len(repr(text))
    return len(text) if text.isascii() else 4 * len(text)


def row_bytes(record: NewRecord) -> int:
    return ROW_BYTES + text_bytes(record.attrs) + len(record.device) + len(record.metric)


def slices(
    budget: Budget,
    records: Sequence[NewRecord],
    dead: Sequence[deadletter.DeadLetter],
    reserve: int = 0,
) -> Iterator[tuple[Sequence[NewRecord], Sequence[deadletter.DeadLetter]]]:
    """Split a group commit so no transaction outgrows the WAL's share.

    ``reserve``: row bytes the first transaction also deletes (confirmed rows whose delete
    rides on the next commit, ``Store.confirm``).
    """
    limit = budget.txn_bytes
    # Twice: at their cap, inserting dead letters evicts as many bytes of older ones.
    size = reserve + sum(2 * (ROW_BYTES + len(d.raw) + text_bytes(d.reason)) for d in dead)
    start = 0
    for i, rec in enumerate(records):
        n = row_bytes(rec)
        if size + n > limit and i > start:
            yield records[start:i], dead if start == 0 else ()
            start, size = i, 0
        size += n
    yield records[start:], dead if start == 0 else ()


def file_bytes(db_path: str) -> int:
    """What the buffer holds on disk: the database and every file SQLite keeps beside it."""
    total = 0
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            total += os.stat(db_path + suffix).st_size
        except FileNotFoundError:
            continue
    return total


def runs(seqs: Iterator[int] | Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted integers: [1,2,3,7,8] -> [(1,3), (7,8)]."""
    out: list[tuple[int, int]] = []
    first = last = -2
    for s in seqs:
        if s == last + 1:
            last = s
            continue
        if first >= 0:
            out.append((first, last))
        first = last = s
    if first >= 0:
        out.append((first, last))
    return out


def _span(store: Store) -> tuple[int, int]:
    """The seqs of the batch in flight, as one closed span ((0, -1) when none)."""
    if not store.inflight:
        return 0, -1
    return store.inflight[0][0], store.inflight[-1][1]


def used_pages(con: sqlite3.Connection) -> int:
    pages = int(con.execute("PRAGMA page_count").fetchone()[0])
    free = int(con.execute("PRAGMA freelist_count").fetchone()[0])
    return pages - free


def over(store: Store) -> bool:
    """Does the budget need enforcing (pages in use above ``high``)?"""
    return used_pages(store.con) > store.budget.high


def check_files(store: Store) -> int:
    """Measure the files against the cap; an overrun is a bug in the split: say so loudly."""
    size = file_bytes(str(store.db_path))
    if size > store.budget.max_bytes:
        store.counters.over_budget += 1
        log.error(
            "buffer: files on disk are %d bytes, over the %d-byte budget (please report)",
            size,
            store.budget.max_bytes,
        )
    return size


def enforce(store: Store) -> None:
    """Bring pages in use to ``budget.low``, stage by stage."""
    b = store.budget
    for stage in STAGES:
        while used_pages(store.con) > b.low:
            if stage.action is Action.DROP:
                done = _drop_chunk(store, stage.kind)
            else:
                try:
                    done = _aggregate_chunk(store, stage.kind)
                except sqlite3.DatabaseError as err:
                    # No page left even for the aggregates: dropping needs none.
                    if getattr(err, "sqlite_errorname", "") != "SQLITE_FULL":
                        raise
                    done = 0
            if done == 0:
                break
        if used_pages(store.con) <= b.low:
            break
    shrink(store, b.db_pages)


def shrink(store: Store, target_pages: int, keep_free: int = 0) -> None:
    """Hand free pages back until the file is at most ``target_pages`` or only ``keep_free``
    pages are free, in steps that keep each transaction inside the WAL's share."""
    step = max(store.budget.txn_frames // 2 - TXN_OVERHEAD_PAGES, 1)
    while True:
        pages = int(store.con.execute("PRAGMA page_count").fetchone()[0])
        free = int(store.con.execute("PRAGMA freelist_count").fetchone()[0])
        excess = min(pages - target_pages, free - keep_free)
        if excess <= 0:
            return
        # executescript steps the pragma to the end (execute() frees one page).
        store.con.executescript(f"PRAGMA incremental_vacuum({min(excess, step)});")


def _oldest(store: Store, kind: RecordKind, columns: str) -> list[tuple[int, ...]]:
    """The oldest records of ``kind`` outside the batch in flight, one transaction's worth."""
    lo, hi = _span(store)
    rows: list[tuple[int, ...]] = []
    size = 0
    limit = store.budget.txn_bytes // 2
    for row in store.con.execute(
        f"SELECT {columns}, coalesce(length(CAST(attrs AS BLOB)), 0) FROM rec "
        "WHERE kind = ? AND seq NOT BETWEEN ? AND ? ORDER BY seq",
        (KIND_CODE[kind], lo, hi),
    ):
        size += ROW_BYTES + int(row[-1])
        if size > limit and rows:
            break
        rows.append(row[:-1])
    return rows


def _aggregate_chunk(store: Store, kind: RecordKind) -> int:
    rows = _oldest(store, kind, "seq, sid, value, wall_ms, tq, boot, mono_ns")
    if not rows:
        return 0
    width = store.cfg.aggregate_interval_s * 1000
    groups: dict[tuple[int, int], Aggregate] = {}
    for _seq, sid, value, wall, tq, boot, mono in rows:
        key = (sid, wall // width)
        g = groups.get(key)
        v = float(value)
        if g is None:
            groups[key] = Aggregate(1, v, v, v, wall, tq, boot, mono)
        else:
            g.add(v, tq)
    if len(groups) * 2 > len(rows):
        # Too sparse to gain space (an aggregate row is bigger than a raw one):
        # leave them raw; the drop stage takes over.
        return 0
    seq_runs = runs([r[0] for r in rows])
    seq0 = store.seqs.next
    try:
        new_rows = _replace_with_aggregates(store, groups, seq_runs)
    except BaseException:
        store.seqs.next = seq0
        raise
    store.depth += len(new_rows) - len(rows)
    store.counters.aggregated += len(rows)
    store.counters.aggregates += len(new_rows)
    log.warning(
        "buffer: byte budget reached; %d oldest readings reduced to %d aggregates",
        len(rows),
        len(new_rows),
    )
    return len(rows)


def _replace_with_aggregates(
    store: Store,
    groups: dict[tuple[int, int], Aggregate],
    seq_runs: list[tuple[int, int]],
) -> list[tuple[object, ...]]:
    new_rows: list[tuple[object, ...]] = []
    con = store.con
    with store.txn():
        first = store.take_seqs(len(groups))
        for i, ((sid, _bucket), g) in enumerate(groups.items()):
            new_rows.append(
                (
                    first + i,
                    KIND_CODE[RecordKind.AGGREGATE],
                    sid,
                    g.mean,
                    g.wall_ms,
                    g.tq,
                    g.boot,
                    g.mono_ns,
                    g.min,
                    g.max,
                    g.n,
                )
            )
        con.executemany(
            "DELETE FROM rec WHERE seq BETWEEN ? AND ? AND kind = ?",
            [(a, z, KIND_CODE[RecordKind.READING]) for a, z in seq_runs],
        )
        con.executemany(
            "INSERT INTO rec(seq, kind, sid, value, wall_ms, tq, boot, mono_ns, vmin, vmax, n)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            new_rows,
        )
        declare(con, seq_runs, GapReason.AGGREGATED)
        store.save_last_seq()
    return new_rows


def _drop_chunk(store: Store, kind: RecordKind) -> int:
    seqs = [int(r[0]) for r in _oldest(store, kind, "seq")]
    if not seqs:
        return 0
    seq_runs = runs(seqs)
    code = KIND_CODE[kind]
    with store.txn():
        store.con.executemany(
            "DELETE FROM rec WHERE seq BETWEEN ? AND ? AND kind = ?",
            [(a, z, code) for a, z in seq_runs],
        )
        declare(store.con, seq_runs, GapReason.DROPPED)
    store.depth -= len(seqs)
    store.counters.dropped += len(seqs)
    log.warning(
        "buffer: byte budget reached; dropped %d oldest records of kind %s", len(seqs), kind.value
    )
    return len(seqs)


def declare(con: sqlite3.Connection, seq_runs: list[tuple[int, int]], reason: GapReason) -> None:
    """Queue ``seq_runs`` as gaps for the server (inside the caller's transaction)."""
    con.executemany(
        "INSERT OR REPLACE INTO gap(first, last, reason) VALUES (?,?,?)",
        [(a, z, reason.value) for a, z in seq_runs],
    )


def commit_when_full(
    store: Store, records: Sequence[NewRecord], dead: Sequence[deadletter.DeadLetter]
) -> list[int]:
    """The file reached ``max_page_count``: make room by the policy, else declare the group.

    Only records that give way before the group's own kinds are dropped to make room
    (readings never push out heartbeats); nothing here takes new seqs before the retry, so
    a group keeps consecutive seqs. A group that still does not fit is taken, numbered and
    declared ``dropped`` at once: counted and explained, and its source may be acknowledged.
    """
    keep_from = max((RANK[r.kind] for r in records), default=0)
    for stage in STAGES:
        if stage.action is not Action.DROP or RANK[stage.kind] > keep_from:
            continue
        while _drop_chunk(store, stage.kind):
            try:
                return store.commit_group(records, dead)
            except sqlite3.DatabaseError as err:
                if getattr(err, "sqlite_errorname", "") != "SQLITE_FULL":
                    raise
    seq0 = store.seqs.next
    try:
        with store.txn():
            first = store.take_seqs(len(records))
            if records:
                declare(store.con, [(first, first + len(records) - 1)], GapReason.DROPPED)
            store.save_last_seq()
    except BaseException:
        store.seqs.next = seq0
        raise
    store.counters.dropped += len(records)
    log.error(
        "buffer: the byte budget is full of records kept longer than these; %d new records "
        "dropped (declared to the server). / Bộ đệm đầy; %d bản ghi mới bị bỏ.",
        len(records),
        len(records),
    )
    return list(range(first, first + len(records)))


def in_steps(
    store: Store, set_sql: str, set_args: tuple[int, ...], where: str, where_args: tuple[int, ...]
) -> int:
    """``UPDATE rec SET <set_sql> WHERE <where>``, one transaction's worth of rows at a time.

    ``where`` must stop matching a row once it is updated (the loop ends when none match).
    """
    step = max(store.budget.txn_bytes // ROW_BYTES // 2, 1)
    total = 0
    while True:
        with store.txn():
            cur = store.con.execute(
                f"UPDATE rec SET {set_sql} WHERE seq IN "
                f"(SELECT seq FROM rec WHERE {where} ORDER BY seq LIMIT ?)",
                (*set_args, *where_args, step),
            )
        if cur.rowcount <= 0:
            return total
        total += int(cur.rowcount)
