"""The record store: the SQLite side of the durable buffer. Every method runs on the
buffer's one thread.

One connection, one thread: no "database is locked", no reader holding the WAL open. Rows
are keyed by the gateway's sequence number (``seq`` is the rowid), which only grows; every
ordering, expiry and deletion is by seq, never by wall time.

The store itself is the insert/commit path (group commit, receipts through
gateway/buffer/identity.py, refusals through gateway/buffer/refusal.py), the uplink's reads
and the deletes after upload. Its helpers, one job each: seq allocation
(gateway/buffer/seqstate.py), the byte budget (gateway/buffer/budget.py), corruption
recovery (gateway/buffer/recovery.py, gateway/buffer/salvage.py), and the file's settings
and tables (gateway/buffer/schema.py).

One batch in flight
-------------------
The uplink reads one batch (:meth:`Store.read_batch`) and settles it (:meth:`Store.confirm`,
:meth:`Store.give_up` or :meth:`Store.release`) before it reads the next; ``inflight`` holds
that batch's seq runs. Why: the server may be storing those records right now, so the
budget must neither aggregate nor drop them (an aggregate or a gap over a seq the server
then also stores would count it twice or contradict it), and a confirmation can be matched
to exactly the rows it settles (which lets a small confirmed batch be deleted with the next
group commit instead of in a transaction of its own). Who enforces it: the uplink
(gateway/uplink/client.py), by construction: it is the buffer's only reader, and settles each
batch it read before reading again. The store does not check it (``read_batch`` replaces
``inflight``, so a second reader would leave the first batch unprotected); the budget
(gateway/buffer/budget.py) relies on it and skips the span from the batch's first to its
last seq.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from gateway import deadletter
from gateway.buffer import budget as policy
from gateway.buffer import recovery, salvage, schema
from gateway.buffer.budget import CODE_KIND, KIND_CODE, Budget, runs
from gateway.buffer.config import BufferConfig
from gateway.buffer.identity import Receipts
from gateway.buffer.records import (
    DUPLICATE,
    REFUSED,
    BufferError,
    NewRecord,
    PendingGap,
    StoredRecord,
)
from gateway.buffer.refusal import DATA_ERRORS, refused_letter, unstorable
from gateway.buffer.schema import DB_NAME
from gateway.buffer.seqstate import Seqs, SeqState, read_state, write_state
from gateway.clock import PENDING, Anchor
from hamlet.contract import GapReason, TimeQuality

log = logging.getLogger(__name__)

SEQ_NAME: Final = "buffer.seq"
MAX_GAPS_PER_BATCH: Final = 1000
# Free pages kept for reuse after a drain: handing them back and growing the file again for
# every batch would only wear the SD card.
KEEP_FREE_PAGES: Final = 256
# A confirmed batch this small is deleted in the next group commit's transaction rather than
# in one of its own: at a hamlet's load that saves a transaction and its fsync per window
# (bench/gateway_sd_writes.py). Bigger ones (a backlog draining) are deleted at once.
DEFER_MAX_ROWS: Final = 1000


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
    seqs: Seqs = field(init=False)
    depth: int = field(init=False, default=0)
    inflight: list[tuple[int, int]] = field(default_factory=list)
    _con: sqlite3.Connection | None = field(init=False, default=None)
    _series: dict[tuple[str, str], int] = field(init=False, default_factory=dict)
    _series_rev: dict[int, tuple[str, str]] = field(init=False, default_factory=dict)
    _boot_idx: int = field(init=False, default=0)
    _boot_of: dict[int, str] = field(init=False, default_factory=dict)
    _anchor: Anchor | None = field(init=False, default=None)
    # Confirmed by the server, deleted with the next commit (see DEFER_MAX_ROWS). Until
    # then no read returns them; after a crash they are sent again and the server, which
    # keys on (gateway, seq), keeps them once.
    _settled: list[tuple[int, int]] = field(init=False, default_factory=list)
    receipts: Receipts = field(init=False)

    def __post_init__(self) -> None:
        self.budget = Budget.for_max(self.cfg.max_bytes)
        self.seqs = Seqs(self.seq_path)
        # Dead letters cannot give way to the budget, so they get a bounded share of it.
        dead_bytes = min(self.cfg.dead_letter_max_bytes, self.budget.dead_letter_bytes)
        self.cfg = self.cfg.model_copy(update={"dead_letter_max_bytes": dead_bytes})
        # About 9 bytes a receipt in the ring (gateway/buffer/identity.py): 400 bytes of
        # budget per receipt keeps the receipts under a fortieth of the byte budget.
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
            busy = recovery.in_use(self.db_path, err)
            if busy is not None:
                raise busy from err
            lost = self._quarantine(f"cannot open or check: {err}")
            self._connect()
            healthy = False
        self._load_caches()
        self.counters.duplicates_recognised = self._meta("duplicates_recognised") or 0
        if healthy:
            last = self._meta("last_seq") or 0
            self.seqs.next = last + 1
            self.depth = int(self.con.execute("SELECT count(*) FROM rec").fetchone()[0])
        else:
            self._start_after_loss(state, existed, lost)
        if state is None or state.reserved <= self.seqs.next:
            self._reserve(self.seqs.next)
        else:
            self.seqs.reserved = state.reserved
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
        """Open and configure the file (settings and tables: gateway/buffer/schema.py)."""
        con, self.budget = schema.connect(self.db_path, self.budget)
        try:
            self.receipts.load(con)
        except BaseException:
            con.close()
            raise
        self._con = con

    def _quarantine(self, why: str) -> salvage.Salvage:
        self.counters.corrupt_files += 1
        return recovery.quarantine(self.data_dir, self.cfg.keep_corrupt_files, why)

    def _start_after_loss(
        self, state: SeqState | None, existed: bool, lost: salvage.Salvage
    ) -> None:
        """A fresh file: resume and declare the loss as planned by recovery.plan_resume."""
        plan = recovery.plan_resume(state, existed, lost)
        self.seqs.next = plan.next_seq
        self.counters.lost_corrupt += plan.count(GapReason.CORRUPT)
        self.counters.unused += plan.count(GapReason.UNUSED)
        if plan.gaps:
            with self.txn():
                for reason in GapReason:
                    policy.declare(
                        self.con,
                        [(a, b) for a, b, r in plan.gaps if r is reason and a >= 1],
                        reason,
                    )
        with self.txn():
            self.save_last_seq()
        self.depth = 0

    def recover_runtime(self, err: sqlite3.DatabaseError) -> None:
        """Corruption found while running: same path as at start, never a crash loop."""
        try:
            floor = self._floor()
        except sqlite3.DatabaseError:
            old = read_state(self.seq_path)
            floor = old.floor if old else 1
        state = SeqState(self.seqs.reserved, floor)
        self.inflight = []
        self._settled = []
        self.close()
        lost = self._quarantine(f"error while running: {err}")
        self._series.clear()
        self._series_rev.clear()
        self._connect()
        self._load_caches()
        self._start_after_loss(state, True, lost)
        self._reserve(self.seqs.next)

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
                write_state(self.seq_path, SeqState(self.seqs.next, self._floor()))
            except sqlite3.DatabaseError as err:
                log.warning("buffer: seq state left as reserved (%s)", err)
            self.seqs.reserved = self.seqs.next
        self.close()

    def close(self) -> None:
        if self._con is not None:
            try:
                self._con.close()
            finally:
                self._con = None

    # -- helpers --------------------------------------------------------------------
    # The budget policy (budget.py) works inside the store's transactions and numbering:
    # txn, take_seqs, save_last_seq and commit_group are for it, nothing else outside.
    def txn(self) -> schema.Txn:
        """One transaction on the buffer's connection (the buffer thread only)."""
        return schema.Txn(self.con)

    def save_last_seq(self) -> None:
        """The highest seq handed out, into the file (inside the caller's transaction)."""
        self._set_meta("last_seq", self.seqs.next - 1)

    def _meta(self, key: str) -> int | None:
        return schema.meta(self.con, key)

    def _set_meta(self, key: str, value: int) -> None:
        schema.set_meta(self.con, key, value)

    def _floor(self) -> int:
        row = self.con.execute("SELECT min(seq) FROM rec").fetchone()
        grow = self.con.execute("SELECT min(first) FROM gap").fetchone()
        cands = [self.seqs.next]
        if row[0] is not None:
            cands.append(int(row[0]))
        if grow[0] is not None:
            cands.append(int(grow[0]))
        return min(cands)

    def _reserve(self, upto: int) -> None:
        self.seqs.reserve(upto, self._floor() if self._con is not None else self.seqs.next)

    def _sid(self, device: str, metric: str) -> int:
        key = (device, metric)
        sid = self._series.get(key)
        if sid is None:
            cur = self.con.execute("INSERT INTO series(device, metric) VALUES (?, ?)", key)
            sid = int(cur.lastrowid or 0)
            self._series[key] = sid
            self._series_rev[sid] = key
        return sid

    def take_seqs(self, n: int) -> int:
        """The first of ``n`` consecutive new seqs (reserved on disk first when needed)."""
        return self.seqs.take(n, self._floor)

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
            return self.commit_group(records, dead)
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
            if not recovery.is_corrupt(err):
                raise BufferError(f"cannot commit to {self.db_path}: {err}") from err
            self.recover_runtime(err)
            return self.commit_group(records, dead)

    def commit_group(
        self, records: Sequence[NewRecord], dead: Sequence[deadletter.DeadLetter]
    ) -> list[int]:
        """One group in one transaction; a record SQLite cannot take is refused alone."""
        seq0, changed0 = self.seqs.next, self.receipts.count
        try:
            try:
                outcomes, letters, evicted = self._insert(records, dead, isolate=False)
            except DATA_ERRORS:
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
        self.seqs.next = seq0
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
        with self.txn():
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
                    seq = self.seqs.next - 1
                else:
                    seq = self.take_seqs(1)
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
            self.save_last_seq()
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
        seq0 = self.seqs.next
        try:
            seq = self.take_seqs(1)
            self.con.execute(
                "INSERT INTO rec(seq, kind, sid, value, wall_ms, tq, boot, mono_ns, attrs) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                self._row(seq, r),
            )
        except DATA_ERRORS as err:
            self.con.execute("ROLLBACK TO one")
            self.con.execute("RELEASE one")
            self.seqs.next = seq0
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
            with self.txn():
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
            with self.txn():
                self._delete_settled()
            self._settled = []

    def _settled_bytes(self) -> int:
        return sum(b - a + 1 for a, b in self._settled) * policy.ROW_BYTES

    def release(self) -> None:
        self.inflight = []

    def give_up(self, seqs: Sequence[int], dead: Sequence[deadletter.DeadLetter]) -> int:
        """Records the server refuses as invalid: dead-letter, delete, declare REJECTED."""
        seq_runs = runs(sorted(seqs))
        with self.txn():
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

    def count_kinds(self, device: str | None = None) -> dict[str, int]:
        if device is None:
            rows = self.con.execute("SELECT kind, count(*) FROM rec GROUP BY kind")
        else:
            rows = self.con.execute(
                "SELECT kind, count(*) FROM rec WHERE sid IN "
                "(SELECT id FROM series WHERE device = ?) GROUP BY kind",
                (device,),
            )
        return {CODE_KIND[int(k)].value: int(c) for k, c in rows}
