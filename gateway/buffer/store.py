"""The SQLite side of the durable buffer. Every method runs on the buffer's one thread.

One connection, one thread: no "database is locked", no reader holding the WAL open. Rows
are keyed by the gateway's sequence number (``seq`` is the rowid), which only grows; every
ordering, expiry and deletion is by seq, never by wall time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from gateway import deadletter
from gateway.buffer.config import BufferConfig
from gateway.buffer.identity import Receipt, Receipts
from gateway.buffer.seqstate import SeqState, read_state, write_state
from gateway.clock import PENDING, Anchor
from hamlet.contract import GapReason, RecordKind, TimeQuality

log = logging.getLogger(__name__)

DB_NAME: Final = "buffer.db"
SEQ_NAME: Final = "buffer.seq"
PAGE_SIZE: Final = 4096
# Seqs reserved per write of the state file: at 10,000 readings/s one small fsync every 5 s.
SEQ_BLOCK: Final = 50_000
MAX_GAPS_PER_BATCH: Final = 1000
# Free pages kept for reuse after a drain: handing them back and growing the file again for
# every batch would only wear the SD card.
KEEP_FREE_PAGES: Final = 256
_CORRUPT_ERRORS: Final = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})

KIND_CODE: Final[dict[RecordKind, int]] = {
    RecordKind.READING: 0,
    RecordKind.AGGREGATE: 1,
    RecordKind.HEARTBEAT: 2,
    RecordKind.EVENT: 3,
    RecordKind.ALERT: 4,
}
CODE_KIND: Final[dict[int, RecordKind]] = {v: k for k, v in KIND_CODE.items()}

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, device TEXT NOT NULL, metric TEXT NOT NULL,
    UNIQUE (device, metric)
);
CREATE TABLE IF NOT EXISTS boots (id INTEGER PRIMARY KEY, boot_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS rec (
    seq INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    sid INTEGER NOT NULL,
    value REAL,
    wall_ms INTEGER NOT NULL,
    tq INTEGER NOT NULL,
    boot INTEGER NOT NULL,
    mono_ns INTEGER NOT NULL,
    vmin REAL,
    vmax REAL,
    n INTEGER,
    attrs TEXT
);
CREATE TABLE IF NOT EXISTS gap (
    first INTEGER PRIMARY KEY, last INTEGER NOT NULL, reason TEXT NOT NULL
);
"""


class BufferError(Exception):
    """The buffer could not commit; the caller must not acknowledge its source."""


# Per-record outcomes of a commit besides a seq (seqs start at 1).
DUPLICATE: Final = 0
REFUSED: Final = -1
# What one record's data (not the database) can make SQLite or the driver raise.
_DATA_ERRORS: Final = (
    UnicodeError,
    ValueError,
    TypeError,
    OverflowError,
    sqlite3.InterfaceError,
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,  # "Error binding parameter": a value of a type SQLite refuses
)
_I64: Final = 2**63


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A stamped record on its way into the buffer (the pipeline builds these)."""

    kind: RecordKind
    device: str
    metric: str  # metric name, or event name for events/alerts
    value: float | None
    wall_ms: int
    tq: int
    mono_ns: int
    attrs: str | None = None  # JSON object, events only
    receipt: Receipt | None = None  # identity as received: a copy gets no new seq
    source: str = ""  # for the dead letter, should the record prove unstorable


@dataclass(frozen=True, slots=True)
class StoredRecord:
    seq: int
    kind: RecordKind
    device: str
    metric: str
    value: float | None
    wall_ms: int
    tq: int
    vmin: float | None = None
    vmax: float | None = None
    n: int | None = None
    attrs: str | None = None


@dataclass(frozen=True, slots=True)
class PendingGap:
    first: int
    last: int
    reason: GapReason


@dataclass
class Counters:
    committed: int = 0
    commits: int = 0
    aggregated: int = 0  # raw readings replaced by aggregates
    aggregates: int = 0  # aggregate records created
    dropped: int = 0  # records deleted for the budget
    lost_corrupt: int = 0  # seqs declared lost with a corrupt file
    corrupt_files: int = 0
    confirmed: int = 0
    dead_lettered: int = 0
    dead_evicted: int = 0
    duplicates_recognised: int = 0  # copies of stored records (redeliveries), given no seq
    refused: int = 0  # records that could not be stored: dead-lettered by the store

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True, slots=True)
class Budget:
    """How ``max_bytes`` is split; see docs/store-and-forward.md."""

    max_bytes: int
    wal_cap: int  # WAL file may reach this before checkpoint + truncation bring it back
    high: int  # used database pages above this start the budget enforcement
    low: int  # enforcement stops below this

    @classmethod
    def for_max(cls, max_bytes: int) -> Budget:
        wal_cap = min(max(max_bytes // 16, 256 * 1024), 4 * 1024 * 1024)
        margin = max(max_bytes // 32, 64 * 1024)  # one group commit + in-transaction growth
        high = max_bytes - wal_cap - margin
        return cls(max_bytes, wal_cap, high, high * 9 // 10)


def runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
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


@dataclass
class Store:
    """Synchronous buffer store; only the buffer thread calls it."""

    cfg: BufferConfig
    data_dir: Path
    boot_id: str
    counters: Counters = field(default_factory=Counters)
    budget: Budget = field(init=False)
    next_seq: int = field(init=False, default=1)
    depth: int = field(init=False, default=0)
    inflight: list[tuple[int, int]] = field(default_factory=list)
    _con: sqlite3.Connection | None = field(init=False, default=None)
    _series: dict[tuple[str, str], int] = field(init=False, default_factory=dict)
    _series_rev: dict[int, tuple[str, str]] = field(init=False, default_factory=dict)
    _boot_idx: int = field(init=False, default=0)
    _reserved: int = field(init=False, default=0)
    _boot_of: dict[int, str] = field(init=False, default_factory=dict)
    _anchor: Anchor | None = field(init=False, default=None)
    receipts: Receipts = field(init=False)

    def __post_init__(self) -> None:
        self.budget = Budget.for_max(self.cfg.max_bytes)
        # About 37 bytes a receipt (row + seq index): at most a tenth of the byte budget.
        self.receipts = Receipts(min(self.cfg.receipt_window, max(self.cfg.max_bytes // 400, 1000)))

    # -- paths ----------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_NAME

    @property
    def seq_path(self) -> Path:
        return self.data_dir / SEQ_NAME

    @property
    def con(self) -> sqlite3.Connection:
        if self._con is None:
            raise BufferError("buffer is closed")
        return self._con

    # -- open / recover -------------------------------------------------------------
    def open(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        state = read_state(self.seq_path)
        existed = self.db_path.exists()
        try:
            self._connect()
            healthy = existed and self._meta("last_seq") is not None
        except sqlite3.DatabaseError as err:
            self._quarantine(f"cannot open or check: {err}")
            self._connect()
            healthy = False
        self._load_caches()
        self.counters.duplicates_recognised = self._meta("duplicates_recognised") or 0
        if healthy:
            last = self._meta("last_seq") or 0
            self.next_seq = last + 1
            self.depth = int(self.con.execute("SELECT count(*) FROM rec").fetchone()[0])
        else:
            self._start_after_loss(state, existed)
        if state is None or state.reserved <= self.next_seq:
            self._reserve(self.next_seq)
        else:
            self._reserved = state.reserved
        # Records of an earlier boot that never saw sync can no longer be re-anchored.
        self.con.execute(
            "UPDATE rec SET tq = ? WHERE tq = ? AND boot != ?",
            (int(TimeQuality.UNSYNCED), PENDING, self._boot_idx),
        )

    def _connect(self) -> None:
        con = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        try:
            self._configure(con)
        except BaseException:
            con.close()
            raise
        self._con = con

    def _configure(self, con: sqlite3.Connection) -> None:
        # page_size and auto_vacuum only take effect on a new file (before any table).
        con.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        con.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.DatabaseError(f"cannot enable WAL (got {mode})")
        # FULL: the WAL is fsynced at every commit, so "committed" survives a power cut.
        con.execute("PRAGMA synchronous = FULL")
        con.execute(f"PRAGMA wal_autocheckpoint = {self.budget.wal_cap // 2 // PAGE_SIZE}")
        con.execute(f"PRAGMA journal_size_limit = {self.budget.wal_cap // 2}")
        con.execute("PRAGMA cache_size = -4096")  # 4 MB page cache: bounded RSS
        con.execute("PRAGMA mmap_size = 0")
        con.execute("PRAGMA temp_store = MEMORY")
        check = con.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check}")
        con.executescript(SCHEMA + deadletter.SCHEMA)
        self.receipts.load(con)

    def _quarantine(self, why: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        moved = self.data_dir / f"{DB_NAME}.corrupt-{stamp}"
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.db_path) + suffix)
            if src.exists():
                os.replace(src, Path(str(moved) + suffix))
        self.counters.corrupt_files += 1
        log.error(
            "buffer: %s is corrupt (%s); moved aside to %s and starting a new buffer. "
            "Records not yet uploaded from it are reported to the server as lost. / "
            "Tệp bộ đệm bị hỏng, đã chuyển sang %s và tạo tệp mới.",
            self.db_path,
            why,
            moved.name,
            moved.name,
        )
        kept = sorted(
            p
            for p in self.data_dir.glob(f"{DB_NAME}.corrupt-*")
            if not p.name.endswith(("-wal", "-shm"))
        )
        for old in kept[: max(len(kept) - self.cfg.keep_corrupt_files, 0)]:
            for suffix in ("", "-wal", "-shm"):
                Path(str(old) + suffix).unlink(missing_ok=True)

    def _start_after_loss(self, state: SeqState | None, existed: bool) -> None:
        """A fresh file. If seqs were handed out before (state file), resume above them."""
        if state is None:
            self.next_seq = 1
            if existed:
                log.error("buffer: replaced a corrupt file and no seq state survived; seq restarts")
        else:
            self.next_seq = max(state.reserved, 1)
            if state.floor < state.reserved:
                lost = state.reserved - state.floor
                self.counters.lost_corrupt += lost
                log.error(
                    "buffer: seqs %d..%d reported lost (corrupt or missing buffer file)",
                    state.floor,
                    state.reserved - 1,
                )
                with self._txn():
                    self.con.execute(
                        "INSERT OR REPLACE INTO gap(first, last, reason) VALUES (?,?,?)",
                        (state.floor, state.reserved - 1, GapReason.CORRUPT.value),
                    )
        with self._txn():
            self._set_meta("last_seq", self.next_seq - 1)
        self.depth = 0

    def recover_runtime(self, err: sqlite3.DatabaseError) -> None:
        """Corruption found while running: same path as at start, never a crash loop."""
        state = SeqState(self._reserved, self._floor())
        self.close()
        self._quarantine(f"error while running: {err}")
        self._series.clear()
        self._series_rev.clear()
        self._connect()
        self._load_caches()
        self._start_after_loss(state, existed=True)
        self._reserve(self.next_seq)

    def _load_caches(self) -> None:
        for sid, dev, met in self.con.execute("SELECT id, device, metric FROM series"):
            self._series[(dev, met)] = sid
            self._series_rev[sid] = (dev, met)
        self.con.execute("INSERT OR IGNORE INTO boots(boot_id) VALUES (?)", (self.boot_id,))
        self._boot_idx = int(
            self.con.execute("SELECT id FROM boots WHERE boot_id = ?", (self.boot_id,)).fetchone()[
                0
            ]
        )
        self._boot_of = {
            int(i): str(b) for i, b in self.con.execute("SELECT id, boot_id FROM boots")
        }

    def close(self) -> None:
        if self._con is not None:
            try:
                self._con.close()
            finally:
                self._con = None

    # -- helpers --------------------------------------------------------------------
    def _txn(self) -> _Txn:
        return _Txn(self.con)

    def _meta(self, key: str) -> int | None:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def _set_meta(self, key: str, value: int) -> None:
        self.con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def _floor(self) -> int:
        row = self.con.execute("SELECT min(seq) FROM rec").fetchone()
        grow = self.con.execute("SELECT min(first) FROM gap").fetchone()
        cands = [self.next_seq]
        if row[0] is not None:
            cands.append(int(row[0]))
        if grow[0] is not None:
            cands.append(int(grow[0]))
        return min(cands)

    def _reserve(self, upto: int) -> None:
        reserved = upto + SEQ_BLOCK
        floor = self._floor() if self._con is not None else self.next_seq
        write_state(self.seq_path, SeqState(reserved, floor))
        self._reserved = reserved

    def _sid(self, device: str, metric: str) -> int:
        key = (device, metric)
        sid = self._series.get(key)
        if sid is None:
            cur = self.con.execute("INSERT INTO series(device, metric) VALUES (?, ?)", key)
            sid = int(cur.lastrowid or 0)
            self._series[key] = sid
            self._series_rev[sid] = key
        return sid

    def _take_seqs(self, n: int) -> int:
        first = self.next_seq
        if first + n > self._reserved:
            self._reserve(first + n)
        self.next_seq += n
        return first

    # -- append (group commit) -----------------------------------------------------
    def commit(
        self, records: Sequence[NewRecord], dead: Sequence[deadletter.DeadLetter]
    ) -> list[int]:
        """Commit ``records`` in one transaction; one outcome per record, in order.

        An outcome is the seq assigned, :data:`DUPLICATE` (a copy of a stored record, by its
        receipt) or :data:`REFUSED` (unstorable: dead-lettered in the same transaction).
        """
        try:
            return self._commit(records, dead)
        except sqlite3.DatabaseError as err:
            if getattr(err, "sqlite_errorname", "") not in _CORRUPT_ERRORS:
                raise BufferError(f"cannot commit to {self.db_path}: {err}") from err
            self.recover_runtime(err)
            return self._commit(records, dead)

    def _commit(
        self, records: Sequence[NewRecord], dead: Sequence[deadletter.DeadLetter]
    ) -> list[int]:
        seq0, changed0 = self.next_seq, self.receipts.count
        try:
            try:
                outcomes, letters, evicted = self._insert(records, dead, isolate=False)
            except _DATA_ERRORS:
                # One record SQLite cannot take must not sink the group: redo it with a
                # savepoint per record, so only the culprit is refused.
                self._rolled_back(seq0, changed0)
                outcomes, letters, evicted = self._insert(records, dead, isolate=True)
        except BaseException:
            self._rolled_back(seq0, changed0)
            raise
        # Only now, after COMMIT, do the numbers count.
        stored = sum(1 for o in outcomes if o > 0)
        self.depth += stored
        self.counters.committed += stored
        self.counters.commits += 1
        self.counters.duplicates_recognised += outcomes.count(DUPLICATE)
        self.counters.refused += outcomes.count(REFUSED)
        self.receipts.recognised = self.counters.duplicates_recognised
        self.counters.dead_lettered += len(letters)
        self.counters.dead_evicted += evicted
        if self.used_bytes() > self.budget.high:
            self.enforce_budget()
        return outcomes

    def _rolled_back(self, seq0: int, receipts0: int) -> None:
        """After a ROLLBACK: these seqs were never used; caches may hold rolled-back rows."""
        self.next_seq = seq0
        self.receipts.count = receipts0
        self._series.clear()
        self._series_rev.clear()
        self._load_caches()

    def _insert(
        self,
        records: Sequence[NewRecord],
        dead: Sequence[deadletter.DeadLetter],
        *,
        isolate: bool,
    ) -> tuple[list[int], list[deadletter.DeadLetter], int]:
        outcomes: list[int] = []
        letters = list(dead)
        with self._txn():
            keys: list[tuple[int, int]] = []
            batch_keys: set[int] = set()
            rows: list[tuple[object, ...]] = []
            for r in records:
                rc = r.receipt
                if (
                    rc is not None
                    and rc.check
                    and (rc.key in batch_keys or self.receipts.seen(self.con, rc))
                ):
                    outcomes.append(DUPLICATE)
                    continue
                problem = unstorable(r)
                if problem is None and isolate:
                    problem = self._insert_one(r)  # takes the seq when it succeeds
                if problem is not None:
                    outcomes.append(REFUSED)
                    letters.append(refused_letter(r, problem))
                    continue
                if isolate:
                    seq = self.next_seq - 1
                else:
                    seq = self._take_seqs(1)
                    rows.append(self._row(seq, r))
                outcomes.append(seq)
                if rc is not None:
                    keys.append((rc.key, seq))
                    batch_keys.add(rc.key)
            if rows:
                self.con.executemany(
                    "INSERT INTO rec(seq, kind, sid, value, wall_ms, tq, boot, mono_ns, attrs) "
                    "VALUES (?,?,?,?,?,?,?,?,?)",
                    rows,
                )
            self.receipts.remember(self.con, keys)
            self._set_meta("last_seq", self.next_seq - 1)
            copies = outcomes.count(DUPLICATE)
            if copies:
                # Cumulative across restarts, so the heartbeat tells the server the total.
                self._set_meta(
                    "duplicates_recognised", self.counters.duplicates_recognised + copies
                )
            evicted = deadletter.put_many(
                self.con, letters, self.cfg.dead_letter_max_count, self.cfg.dead_letter_max_bytes
            )
        return outcomes, letters, evicted

    def _row(self, seq: int, r: NewRecord) -> tuple[object, ...]:
        return (
            seq,
            KIND_CODE[r.kind],
            self._sid(r.device, r.metric),
            r.value,
            *self._time(r),
            self._boot_idx,
            r.mono_ns,
            r.attrs,
        )

    def _insert_one(self, r: NewRecord) -> str | None:
        """Insert one record under a savepoint; the reason it was refused, or None."""
        self.con.execute("SAVEPOINT one")
        seq0 = self.next_seq
        try:
            seq = self._take_seqs(1)
            self.con.execute(
                "INSERT INTO rec(seq, kind, sid, value, wall_ms, tq, boot, mono_ns, attrs) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                self._row(seq, r),
            )
        except _DATA_ERRORS as err:
            self.con.execute("ROLLBACK TO one")
            self.con.execute("RELEASE one")
            self.next_seq = seq0
            self._series.clear()
            self._series_rev.clear()
            self._load_caches()
            return f"unstorable: {type(err).__name__}: {err}"
        self.con.execute("RELEASE one")
        return None

    def _time(self, r: NewRecord) -> tuple[int, int]:
        # Stamped before sync but committed after it (another source's group): anchor now.
        if r.tq == PENDING and self._anchor is not None:
            return self._anchor.wall_for(r.mono_ns), int(TimeQuality.REANCHORED)
        return r.wall_ms, r.tq

    # -- sizes ----------------------------------------------------------------------
    def used_bytes(self) -> int:
        pages = int(self.con.execute("PRAGMA page_count").fetchone()[0])
        free = int(self.con.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * PAGE_SIZE

    def file_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(str(self.db_path) + suffix).st_size
        return total

    # -- budget ---------------------------------------------------------------------
    def _chunk(self) -> int:
        return max(500, min(20_000, self.cfg.max_bytes // 2000))

    def _not_inflight(self, seqs: list[int]) -> list[int]:
        if not self.inflight:
            return seqs
        return [s for s in seqs if not any(a <= s <= b for a, b in self.inflight)]

    def enforce_budget(self) -> None:
        """Bring used pages under ``budget.low``: aggregate raw readings, then drop."""
        stages: list[tuple[str, tuple[int, ...]]] = [
            ("aggregate", (0,)),
            ("drop", (0, 1)),
            ("drop", (2,)),
            ("drop", (3,)),
            ("drop", (4,)),
        ]
        for stage, kinds in stages:
            while self.used_bytes() > self.budget.low:
                done = self._aggregate_chunk() if stage == "aggregate" else self._drop_chunk(kinds)
                if done == 0:
                    break
            if self.used_bytes() <= self.budget.low:
                break
        # A file bigger than the budget (it was lowered, or grew inside one transaction)
        # hands its free pages back; otherwise free pages stay for reuse.
        pages = int(self.con.execute("PRAGMA page_count").fetchone()[0])
        excess = pages - self.budget.high // PAGE_SIZE
        if excess > 0:
            self.con.executescript(f"PRAGMA incremental_vacuum({excess});")

    def _aggregate_chunk(self) -> int:
        rows = self.con.execute(
            "SELECT seq, sid, value, wall_ms, tq, boot, mono_ns FROM rec WHERE kind = 0 "
            "ORDER BY seq LIMIT ?",
            (self._chunk(),),
        ).fetchall()
        if self.inflight:
            keep = set(self._not_inflight([r[0] for r in rows]))
            rows = [r for r in rows if r[0] in keep]
        if not rows:
            return 0
        width = self.cfg.aggregate_interval_s * 1000
        groups: dict[tuple[int, int], list[float]] = {}
        meta: dict[tuple[int, int], tuple[int, int, int, int]] = {}
        for _seq, sid, value, wall, tq, boot, mono in rows:
            key = (sid, wall // width)
            g = groups.get(key)
            v = float(value)
            if g is None:
                groups[key] = [v, v, v, 1.0]
                meta[key] = (wall, tq, boot, mono)
            else:
                g[0] = min(g[0], v)
                g[1] = max(g[1], v)
                g[2] += v
                g[3] += 1
                w0, tq0, b0, m0 = meta[key]
                meta[key] = (w0, max(tq0, tq) if PENDING not in (tq0, tq) else PENDING, b0, m0)
        if len(groups) * 2 > len(rows):
            # Too sparse to gain space (an aggregate row is bigger than a raw one):
            # leave them raw; the drop stage takes over.
            return 0
        seq_runs = runs(r[0] for r in rows)
        seq0 = self.next_seq
        try:
            new_rows = self._replace_with_aggregates(groups, meta, seq_runs)
        except BaseException:
            self.next_seq = seq0
            raise
        self.depth += len(new_rows) - len(rows)
        self.counters.aggregated += len(rows)
        self.counters.aggregates += len(new_rows)
        log.warning(
            "buffer: byte budget reached; %d oldest readings reduced to %d aggregates",
            len(rows),
            len(new_rows),
        )
        return len(rows)

    def _replace_with_aggregates(
        self,
        groups: dict[tuple[int, int], list[float]],
        meta: dict[tuple[int, int], tuple[int, int, int, int]],
        seq_runs: list[tuple[int, int]],
    ) -> list[tuple[object, ...]]:
        new_rows: list[tuple[object, ...]] = []
        with self._txn():
            first = self._take_seqs(len(groups))
            for i, (key, (lo, hi, total, cnt)) in enumerate(groups.items()):
                wall, tq, boot, mono = meta[key]
                new_rows.append(
                    (
                        first + i,
                        1,
                        key[0],
                        min(max(total / cnt, lo), hi),
                        wall,
                        tq,
                        boot,
                        mono,
                        lo,
                        hi,
                        int(cnt),
                    )
                )
            self.con.executemany("DELETE FROM rec WHERE seq BETWEEN ? AND ? AND kind = 0", seq_runs)
            self.con.executemany(
                "INSERT INTO rec(seq, kind, sid, value, wall_ms, tq, boot, mono_ns, vmin, vmax, n)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                new_rows,
            )
            self.con.executemany(
                "INSERT OR REPLACE INTO gap(first, last, reason) VALUES (?,?,?)",
                [(a, b, GapReason.AGGREGATED.value) for a, b in seq_runs],
            )
            self._set_meta("last_seq", self.next_seq - 1)
        return new_rows

    def _drop_chunk(self, kinds: tuple[int, ...]) -> int:
        marks = ",".join("?" * len(kinds))
        seqs = [
            int(r[0])
            for r in self.con.execute(
                f"SELECT seq FROM rec WHERE kind IN ({marks}) ORDER BY seq LIMIT ?",
                (*kinds, self._chunk()),
            )
        ]
        seqs = self._not_inflight(seqs)
        if not seqs:
            return 0
        seq_runs = runs(seqs)
        with self._txn():
            self.con.executemany(
                f"DELETE FROM rec WHERE seq BETWEEN ? AND ? AND kind IN ({marks})",
                [(a, b, *kinds) for a, b in seq_runs],
            )
            self.con.executemany(
                "INSERT OR REPLACE INTO gap(first, last, reason) VALUES (?,?,?)",
                [(a, b, GapReason.DROPPED.value) for a, b in seq_runs],
            )
        self.depth -= len(seqs)
        self.counters.dropped += len(seqs)
        log.warning(
            "buffer: byte budget reached; dropped %d oldest records (kinds %s)",
            len(seqs),
            ",".join(CODE_KIND[k].value for k in kinds),
        )
        return len(seqs)

    # -- uplink side ----------------------------------------------------------------
    def read_batch(
        self, after: int, upto: int | None, limit: int, hold_pending: bool
    ) -> tuple[list[StoredRecord], list[PendingGap]]:
        """Oldest records with ``after < seq <= upto``, marked in flight; plus pending gaps."""
        sql = (
            "SELECT seq, kind, sid, value, wall_ms, tq, vmin, vmax, n, attrs FROM rec WHERE seq > ?"
        )
        args: list[int] = [after]
        if upto is not None:
            sql += " AND seq <= ?"
            args.append(upto)
        if hold_pending:
            sql += f" AND tq != {PENDING}"
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        out: list[StoredRecord] = []
        rev = self._series_rev
        for seq, kind, sid, value, wall, tq, vmin, vmax, n, attrs in self.con.execute(sql, args):
            dev, met = rev[sid]
            out.append(
                StoredRecord(seq, CODE_KIND[kind], dev, met, value, wall, tq, vmin, vmax, n, attrs)
            )
        gaps = [
            PendingGap(int(a), int(b), GapReason(r))
            for a, b, r in self.con.execute(
                "SELECT first, last, reason FROM gap ORDER BY first LIMIT ?", (MAX_GAPS_PER_BATCH,)
            )
        ]
        self.inflight = runs(r.seq for r in out)
        return out, gaps

    def confirm(self, seqs: Sequence[int], gap_firsts: Sequence[int]) -> int:
        """Delete records (and declared gaps) the server settled; by seq only."""
        seq_runs = runs(sorted(seqs))
        with self._txn():
            before = self.con.total_changes
            self.con.executemany("DELETE FROM rec WHERE seq BETWEEN ? AND ?", seq_runs)
            deleted = self.con.total_changes - before
            self.con.executemany("DELETE FROM gap WHERE first = ?", [(g,) for g in gap_firsts])
        self.inflight = []
        self.depth -= deleted
        self.counters.confirmed += deleted
        if self.depth == 0:
            # Drained after an outage: hand the space back, keeping a little for reuse.
            free = int(self.con.execute("PRAGMA freelist_count").fetchone()[0])
            if free > 2 * KEEP_FREE_PAGES:
                # executescript steps the pragma to the end (execute() frees one page).
                self.con.executescript(f"PRAGMA incremental_vacuum({free - KEEP_FREE_PAGES});")
        return deleted

    def release(self) -> None:
        self.inflight = []

    def give_up(self, seqs: Sequence[int], dead: Sequence[deadletter.DeadLetter]) -> int:
        """Records the server refuses as invalid: dead-letter, delete, declare REJECTED."""
        seq_runs = runs(sorted(seqs))
        with self._txn():
            before = self.con.total_changes
            self.con.executemany("DELETE FROM rec WHERE seq BETWEEN ? AND ?", seq_runs)
            deleted = self.con.total_changes - before
            self.con.executemany(
                "INSERT OR REPLACE INTO gap(first, last, reason) VALUES (?,?,?)",
                [(a, b, GapReason.REJECTED.value) for a, b in seq_runs],
            )
            evicted = deadletter.put_many(
                self.con, list(dead), self.cfg.dead_letter_max_count, self.cfg.dead_letter_max_bytes
            )
        self.inflight = []
        self.depth -= deleted
        self.counters.dead_lettered += len(dead)
        self.counters.dead_evicted += evicted
        return deleted

    # -- clock ----------------------------------------------------------------------
    def reanchor(self, anchor: Anchor) -> int:
        if anchor.boot_id != self.boot_id:
            return 0
        self._anchor = anchor
        with self._txn():
            cur = self.con.execute(
                "UPDATE rec SET wall_ms = ? - (? - mono_ns) / 1000000, tq = ? "
                "WHERE tq = ? AND boot = ?",
                (
                    anchor.wall_ms,
                    anchor.mono_ns,
                    int(TimeQuality.REANCHORED),
                    PENDING,
                    self._boot_idx,
                ),
            )
        return int(cur.rowcount)

    def mark_unsynced(self) -> int:
        """Give up waiting for sync: PENDING records of this boot are sent as UNSYNCED."""
        with self._txn():
            cur = self.con.execute(
                "UPDATE rec SET tq = ? WHERE tq = ?", (int(TimeQuality.UNSYNCED), PENDING)
            )
        return int(cur.rowcount)

    # -- status ---------------------------------------------------------------------
    def oldest(self) -> tuple[int, str, int, int] | None:
        """(seq, boot id, mono_ns, wall_ms) of the oldest unsent record."""
        row = self.con.execute(
            "SELECT seq, boot, mono_ns, wall_ms FROM rec ORDER BY seq LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return int(row[0]), self._boot_of.get(int(row[1]), ""), int(row[2]), int(row[3])

    def pending_gaps(self) -> list[PendingGap]:
        return [
            PendingGap(int(a), int(b), GapReason(r))
            for a, b, r in self.con.execute("SELECT first, last, reason FROM gap ORDER BY first")
        ]

    def dead_summary(self, n: int) -> tuple[int, dict[str, int], list[deadletter.DeadLetter]]:
        stored, by = deadletter.counts(self.con)
        return stored, by, deadletter.recent(self.con, n)

    def count_kinds(self) -> dict[str, int]:
        return {
            CODE_KIND[int(k)].value: int(c)
            for k, c in self.con.execute("SELECT kind, count(*) FROM rec GROUP BY kind")
        }

    @staticmethod
    def attrs_json(attrs: dict[str, object]) -> str:
        return json.dumps(attrs, separators=(",", ":"), ensure_ascii=False)


class _Txn:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error (autocommit connection)."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self._con = con

    def __enter__(self) -> None:
        self._con.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._con.execute("COMMIT")
        elif self._con.in_transaction:
            self._con.execute("ROLLBACK")


def unstorable(r: NewRecord) -> str | None:
    """Why ``r`` cannot be stored as it is (checked before SQL sees it), or None."""
    if r.kind not in KIND_CODE:
        return f"bad_kind: {r.kind!r} is not a record kind"
    for what, text in (("device", r.device), ("name", r.metric), ("attrs", r.attrs)):
        if not isinstance(text, str):
            continue  # not text at all: SQLite decides (and refuses it alone, see _commit)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            return (
                f"bad_text: {what} holds {text[err.start : err.end]!r} at {err.start}, "
                "which is not valid text (a lone surrogate)"
            )
        if "\x00" in text and what != "attrs":
            return f"bad_text: {what} holds a NUL character"
    if r.value is not None and (
        not isinstance(r.value, float) or r.value != r.value or abs(r.value) == float("inf")
    ):
        return f"bad_value: {r.value!r} is not a finite number"
    for what, n in (("wall_ms", r.wall_ms), ("mono_ns", r.mono_ns)):
        if not isinstance(n, int) or not -_I64 <= n < _I64:
            return f"bad_time: {what}={n} does not fit 64 bits"
    return None


def refused_letter(r: NewRecord, reason: str) -> deadletter.DeadLetter:
    raw = json.dumps(
        {
            "kind": r.kind.value,
            "device": r.device,
            "name": r.metric,
            "value": r.value,
            "attrs": r.attrs,
            "wall_ms": r.wall_ms,
        },
        ensure_ascii=True,  # escapes lone surrogates and NULs: the raw stays readable
        default=repr,  # whatever it holds, the letter can be written
    )
    return deadletter.make(now_ms(), r.source or "buffer", reason, raw)


def now_ms() -> int:
    return time.time_ns() // 1_000_000
