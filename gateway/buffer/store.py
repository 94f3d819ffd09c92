"""The SQLite side of the durable buffer. Every method runs on the buffer's one thread.

One connection, one thread: no "database is locked", no reader holding the WAL open. Rows
are keyed by the gateway's sequence number (``seq`` is the rowid), which only grows; every
ordering, expiry and deletion is by seq, never by wall time.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from gateway import deadletter
from gateway.buffer import budget as policy
from gateway.buffer import salvage
from gateway.buffer.budget import CODE_KIND, KIND_CODE, PAGE_SIZE, Budget, runs
from gateway.buffer.config import BufferConfig
from gateway.buffer.identity import Receipt, Receipts
from gateway.buffer.seqstate import SeqState, read_state, write_state
from gateway.clock import PENDING, Anchor
from hamlet.contract import GapReason, RecordKind, TimeQuality

log = logging.getLogger(__name__)

DB_NAME: Final = "buffer.db"
SEQ_NAME: Final = "buffer.seq"
# Seqs reserved per write of the state file: at 10,000 readings/s one small fsync every 5 s.
SEQ_BLOCK: Final = 50_000
MAX_GAPS_PER_BATCH: Final = 1000
# Free pages kept for reuse after a drain: handing them back and growing the file again for
# every batch would only wear the SD card.
KEEP_FREE_PAGES: Final = 256
# A confirmed batch this small is deleted in the next group commit's transaction rather than
# in one of its own: at a hamlet's load that saves a transaction and its fsync per window
# (bench/gateway_sd_writes.py). Bigger ones (a backlog draining) are deleted at once.
DEFER_MAX_ROWS: Final = 1000
_CORRUPT_ERRORS: Final = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})

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
    unused: int = 0  # reserved seqs declared never used after a lost file
    over_budget: int = 0  # commits after which the files measured over max_bytes (a bug)
    file_full: int = 0  # commits that met the database file's page cap (SQLITE_FULL)
    duplicates_recognised: int = 0  # copies of stored records (redeliveries), given no seq
    refused: int = 0  # records that could not be stored: dead-lettered by the store

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


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
    # Confirmed by the server, deleted with the next commit (see DEFER_MAX_ROWS). Until
    # then no read returns them; after a crash they are sent again and the server, which
    # keys on (gateway, seq), keeps them once.
    _settled: list[tuple[int, int]] = field(init=False, default_factory=list)
    receipts: Receipts = field(init=False)

    def __post_init__(self) -> None:
        self.budget = Budget.for_max(self.cfg.max_bytes)
        # Dead letters cannot give way to the budget, so they get a bounded share of it.
        dead_bytes = min(self.cfg.dead_letter_max_bytes, self.budget.dead_letter_bytes)
        self.cfg = self.cfg.model_copy(update={"dead_letter_max_bytes": dead_bytes})
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
        lost = salvage.Salvage()
        try:
            self._connect()
            healthy = existed and self._meta("last_seq") is not None
        except sqlite3.DatabaseError as err:
            if getattr(err, "sqlite_errorname", "") == "SQLITE_BUSY":
                # Held by another process: not corrupt, and never to be moved aside.
                raise BufferError(
                    f"{self.db_path} is in use by another process: is another gateway "
                    "running with this data_dir? Stop it first. / Tệp bộ đệm đang được một "
                    "tiến trình khác dùng: hãy dừng gateway kia trước."
                ) from err
            lost = self._quarantine(f"cannot open or check: {err}")
            self._connect()
            healthy = False
        self._load_caches()
        self.counters.duplicates_recognised = self._meta("duplicates_recognised") or 0
        if healthy:
            last = self._meta("last_seq") or 0
            self.next_seq = last + 1
            self.depth = int(self.con.execute("SELECT count(*) FROM rec").fetchone()[0])
        else:
            self._start_after_loss(state, existed, lost)
        if state is None or state.reserved <= self.next_seq:
            self._reserve(self.next_seq)
        else:
            self._reserved = state.reserved
        # Records of an earlier boot that never saw sync can no longer be re-anchored.
        policy.in_steps(
            self, "tq = ?", (int(TimeQuality.UNSYNCED),), "tq = ? AND boot != ?",
            (PENDING, self._boot_idx),
        )  # fmt: skip
        # A budget lowered since the last run: bring the file under it now.
        if int(self.con.execute("PRAGMA page_count").fetchone()[0]) > self.budget.db_pages:
            policy.enforce(self)
            self.con.execute(f"PRAGMA max_page_count = {self.budget.db_pages}")
            # The file itself shrinks only when the WAL is checkpointed: do it now, not
            # whenever the WAL next reaches its checkpoint size.
            self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _connect(self) -> None:
        con = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        try:
            self._configure(con)
        except BaseException:
            con.close()
            raise
        self._con = con

    def _configure(self, con: sqlite3.Connection) -> None:
        # One connection, holding the file exclusively: the WAL index then lives in this
        # process's memory, not in a -shm file the kernel writes back to the SD card after
        # every commit (bench/gateway_sd_writes.py). Must precede the first read. Another
        # process (a second gateway, `doctor`) gets SQLITE_BUSY while this one runs.
        con.execute("PRAGMA locking_mode = EXCLUSIVE")
        # page_size and auto_vacuum only take effect on a new file (before any table).
        con.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        con.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.DatabaseError(f"cannot enable WAL (got {mode})")
        # A file made with another page size keeps it (WAL): size the budget by the file.
        page = int(con.execute("PRAGMA page_size").fetchone()[0])
        if page != self.budget.page_size:
            self.budget = Budget.for_max(self.cfg.max_bytes, page)
        # FULL: the WAL is fsynced at every commit, so "committed" survives a power cut.
        con.execute("PRAGMA synchronous = FULL")
        # The WAL's share of the budget: see gateway/buffer/budget.py.
        ckpt = self.budget.checkpoint_frames
        con.execute(f"PRAGMA wal_autocheckpoint = {ckpt}")
        con.execute(f"PRAGMA journal_size_limit = {ckpt * self.budget.wal_frame}")
        con.execute("PRAGMA cache_size = -4096")  # 4 MB page cache: bounded RSS
        con.execute("PRAGMA mmap_size = 0")
        con.execute("PRAGMA temp_store = MEMORY")
        check = con.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check}")
        con.executescript(SCHEMA + deadletter.SCHEMA)
        # The database file's share: SQLite refuses to grow it further (SQLITE_FULL). It
        # cannot be set below the current size; open() shrinks a file that outgrew it.
        con.execute(f"PRAGMA max_page_count = {self.budget.db_pages}")
        self.receipts.load(con)

    def _quarantine(self, why: str) -> salvage.Salvage:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        moved = self.data_dir / f"{DB_NAME}.corrupt-{stamp}"
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.db_path) + suffix)
            if src.exists():
                os.replace(src, Path(str(moved) + suffix))
        self.counters.corrupt_files += 1
        found = salvage.read(moved)
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
        return found

    def _start_after_loss(
        self, state: SeqState | None, existed: bool, lost: salvage.Salvage
    ) -> None:
        """A fresh file. Resume above every seq handed out before; declare what was lost.

        Exactly, where the moved file still tells (its unsent records' seqs, its queued gaps,
        its last seq); else the range it used (``floor`` to its last seq, the rest of the
        reservation ``unused``); else, with nothing readable, the whole reserved range.
        """
        if state is None and lost.last_seq is None:
            self.next_seq = 1
            if existed:
                log.error("buffer: replaced a corrupt file and no seq state survived; seq restarts")
        else:
            top = lost.last_seq if lost.last_seq is not None else 0
            self.next_seq = max(state.reserved if state else 1, top + 1, 1)
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
                used = self.next_seq - 1
                if floor <= used:
                    gaps.append((floor, used, GapReason.CORRUPT))
            if used + 1 <= self.next_seq - 1:
                gaps.append((used + 1, self.next_seq - 1, GapReason.UNUSED))
            for a, b, reason in gaps:
                if reason is GapReason.CORRUPT:
                    self.counters.lost_corrupt += b - a + 1
                elif reason is GapReason.UNUSED:
                    self.counters.unused += b - a + 1
                log.error("buffer: seqs %d..%d declared %s (buffer file lost)", a, b, reason)
            with self._txn():
                for reason in GapReason:
                    policy.declare(
                        self.con, [(a, b) for a, b, r in gaps if r is reason and a >= 1], reason
                    )
        with self._txn():
            self._set_meta("last_seq", self.next_seq - 1)
        self.depth = 0

    def recover_runtime(self, err: sqlite3.DatabaseError) -> None:
        """Corruption found while running: same path as at start, never a crash loop."""
        try:
            floor = self._floor()
        except sqlite3.DatabaseError:
            old = read_state(self.seq_path)
            floor = old.floor if old else 1
        state = SeqState(self._reserved, floor)
        self.inflight = []
        self._settled = []
        self.close()
        lost = self._quarantine(f"error while running: {err}")
        self._series.clear()
        self._series_rev.clear()
        self._connect()
        self._load_caches()
        self._start_after_loss(state, True, lost)
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

    def shutdown(self) -> None:
        """Close after the last commit, leaving the seq state exact: every seq below
        ``next_seq`` may have been used, none above; so a file lost before the next start
        costs only what it held, not the rest of a reserved block."""
        if self._con is not None:
            try:
                self._delete_settled_now()
                write_state(self.seq_path, SeqState(self.next_seq, self._floor()))
            except sqlite3.DatabaseError as err:
                log.warning("buffer: seq state left as reserved (%s)", err)
            self._reserved = self.next_seq
        self.close()

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
        # UPDATE leaves the key's index page alone: one page less per commit than REPLACE
        # (which deletes and reinserts the row), a quarter of a commit's WAL frames.
        cur = self.con.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
        if cur.rowcount == 0:
            self.con.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (key, value))

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
        """Commit ``records``; one outcome per record, in order.

        An outcome is the seq assigned, :data:`DUPLICATE` (a copy of a stored record, by its
        receipt) or :data:`REFUSED` (unstorable: dead-lettered in the same transaction).
        One transaction, unless the group would outgrow the WAL's share of the budget: then
        a few, in order, and the caller is answered after the last.
        """
        parts = list(policy.slices(self.budget, records, dead, reserve=self._settled_bytes()))
        files = self.counters.corrupt_files
        outcomes: list[int] = []
        i = 0
        while i < len(parts):
            got = self._commit_part(*parts[i])
            if self.counters.corrupt_files != files:
                files = self.counters.corrupt_files
                if i > 0:
                    # The file was replaced under this group: its first slices went with the
                    # old file (declared lost); commit the whole group again in the new one.
                    outcomes, i = [], 0
                    continue
            outcomes.extend(got)
            i += 1
        try:
            if policy.over(self):
                policy.enforce(self)
        except sqlite3.DatabaseError as err:
            # The group is committed and must be answered as such; the budget is enforced
            # again after the next commit (whose own errors are handled above).
            log.error("buffer: byte budget enforcement failed: %s", err)  # noqa: TRY400
        policy.check_files(self)
        return outcomes

    def _commit_part(
        self, records: Sequence[NewRecord], dead: Sequence[deadletter.DeadLetter]
    ) -> list[int]:
        try:
            return self._commit(records, dead)
        except sqlite3.DatabaseError as err:
            name = getattr(err, "sqlite_errorname", "")
            try:
                if name == "SQLITE_FULL":
                    self.counters.file_full += 1
                    # Rows the server has go first, deleted, never declared as dropped.
                    self._delete_settled_now()
                    return policy.commit_when_full(self, records, dead)
            except sqlite3.DatabaseError as again:
                raise BufferError(f"cannot commit to {self.db_path}: {again}") from again
            if name not in _CORRUPT_ERRORS:
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
        self.receipts.committed()
        self._settled = []
        stored = sum(1 for o in outcomes if o > 0)
        self.depth += stored
        self.counters.committed += stored
        self.counters.commits += 1
        self.counters.duplicates_recognised += outcomes.count(DUPLICATE)
        self.counters.refused += outcomes.count(REFUSED)
        self.receipts.recognised = self.counters.duplicates_recognised
        self.counters.dead_lettered += len(letters)
        self.counters.dead_evicted += evicted
        return outcomes

    def _rolled_back(self, seq0: int, receipts0: int) -> None:
        """After a ROLLBACK: these seqs were never used; caches may hold rolled-back rows."""
        self.next_seq = seq0
        self.receipts.rolled_back()
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
            self._delete_settled()
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
        return policy.used_pages(self.con) * self.budget.page_size

    def file_bytes(self) -> int:
        return policy.file_bytes(str(self.db_path))

    # -- budget ---------------------------------------------------------------------
    def enforce_budget(self) -> None:
        """Bring used pages under ``budget.low`` (policy: gateway/buffer/budget.py)."""
        self._delete_settled_now()
        policy.enforce(self)

    # -- uplink side ----------------------------------------------------------------
    def read_batch(
        self, after: int, upto: int | None, limit: int, hold_pending: bool
    ) -> tuple[list[StoredRecord], list[PendingGap]]:
        """Oldest records with ``after < seq <= upto``, marked in flight; plus pending gaps.

        The one batch in flight (see gateway/buffer/budget.py) until confirm/give_up/release;
        at most one transaction's worth of rows, so confirming it keeps the WAL in budget.
        """
        sql = (
            "SELECT seq, kind, sid, value, wall_ms, tq, vmin, vmax, n, attrs FROM rec WHERE seq > ?"
        )
        args: list[int] = [after]
        if upto is not None:
            sql += " AND seq <= ?"
            args.append(upto)
        if hold_pending:
            sql += f" AND tq != {PENDING}"
        for a, b in self._settled:
            sql += " AND seq NOT BETWEEN ? AND ?"
            args += [a, b]
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        out: list[StoredRecord] = []
        rev = self._series_rev
        size, cap = 0, self.budget.txn_bytes
        for seq, kind, sid, value, wall, tq, vmin, vmax, n, attrs in self.con.execute(sql, args):
            size += policy.ROW_BYTES + policy.text_bytes(attrs)
            if size > cap and out:
                break
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
        """Delete records (and declared gaps) the server settled; by seq only.

        The batch in flight, when small and nothing else waits to be deleted, is deleted
        with the next group commit instead (``DEFER_MAX_ROWS``); it counts as confirmed now.
        """
        seq_runs = runs(sorted(seqs))
        if (
            seq_runs
            and seq_runs == self.inflight
            and not self._settled
            and not gap_firsts
            and len(seqs) <= DEFER_MAX_ROWS
            and len(seqs) * policy.ROW_BYTES <= self.budget.txn_bytes // 8
        ):
            self._settled = seq_runs
            deleted = len(seqs)  # in flight, so present: the budget never takes those rows
        else:
            with self._txn():
                self._delete_settled()
                before = self.con.total_changes
                self.con.executemany("DELETE FROM rec WHERE seq BETWEEN ? AND ?", seq_runs)
                deleted = self.con.total_changes - before
                self.con.executemany("DELETE FROM gap WHERE first = ?", [(g,) for g in gap_firsts])
            self._settled = []
        self.inflight = []
        self.depth -= deleted
        self.counters.confirmed += deleted
        if self.depth == 0 and not self._settled:
            # Drained after an outage: hand the space back, keeping a little for reuse.
            free = int(self.con.execute("PRAGMA freelist_count").fetchone()[0])
            if free > 2 * KEEP_FREE_PAGES:
                policy.shrink(self, 0, keep_free=KEEP_FREE_PAGES)
        return deleted

    def _delete_settled(self) -> None:
        """Inside a transaction: delete the confirmed rows kept for it."""
        if self._settled:
            self.con.executemany("DELETE FROM rec WHERE seq BETWEEN ? AND ?", self._settled)

    def _delete_settled_now(self) -> None:
        if self._settled:
            with self._txn():
                self._delete_settled()
            self._settled = []

    def _settled_bytes(self) -> int:
        return sum(b - a + 1 for a, b in self._settled) * policy.ROW_BYTES

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
        return policy.in_steps(
            self,
            "wall_ms = ? - (? - mono_ns) / 1000000, tq = ?",
            (anchor.wall_ms, anchor.mono_ns, int(TimeQuality.REANCHORED)),
            "tq = ? AND boot = ?",
            (PENDING, self._boot_idx),
        )

    def mark_unsynced(self) -> int:
        """Give up waiting for sync: PENDING records of this boot are sent as UNSYNCED."""
        return policy.in_steps(self, "tq = ?", (int(TimeQuality.UNSYNCED),), "tq = ?", (PENDING,))

    # -- status ---------------------------------------------------------------------
    def oldest(self) -> tuple[int, str, int, int] | None:
        """(seq, boot id, mono_ns, wall_ms) of the oldest unsent record."""
        sql = "SELECT seq, boot, mono_ns, wall_ms FROM rec WHERE 1"
        args: list[int] = []
        for a, b in self._settled:
            sql += " AND seq NOT BETWEEN ? AND ?"
            args += [a, b]
        row = self.con.execute(sql + " ORDER BY seq LIMIT 1", args).fetchone()
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
