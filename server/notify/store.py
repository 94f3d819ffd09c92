"""The notifier's SQLite file: subscribers, subscriptions, the outbox and its delivery log.

Each (alert, phase, subscriber, channel) has one outbox row, keyed so that enqueuing the same
alert again — after a restart, a late replay, or the gateway reporting it already sent it —
changes nothing. A row is claimed (``sending``, with a lease) before it leaves and settled
after; a claim whose lease ran out was cut off by a crash and goes again with the same key,
which webhook receivers and mail clients see (Idempotency-Key, Message-ID). The lease, not
"whatever is sending at start-up", lets several server workers share one outbox.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from hamlet.edgeplan import EdgePlan
from hamlet.sms.pdu import normalize_number
from server.notify.model import TEST_RULE, AlertEvent, Channel, Phase, Severity

VN = ZoneInfo("Asia/Ho_Chi_Minh")

SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriber (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, phone TEXT, email TEXT,
  webhook_url TEXT, webhook_secret TEXT, language TEXT NOT NULL DEFAULT 'vi',
  quiet_start INTEGER, quiet_end INTEGER,  -- minutes after local midnight
  staff INTEGER NOT NULL DEFAULT 0, active INTEGER NOT NULL DEFAULT 1,
  stop_token TEXT NOT NULL UNIQUE,
  hamlet TEXT,  -- the hamlet whose staff manage them (given, else their first subscription's)
  user_id INTEGER);  -- the farmer's own login, who may manage this subscriber themselves
CREATE TABLE IF NOT EXISTS subscription (
  id INTEGER PRIMARY KEY, subscriber_id INTEGER NOT NULL REFERENCES subscriber(id),
  rule TEXT NOT NULL DEFAULT '*', hamlet TEXT NOT NULL, field TEXT, device TEXT,
  min_severity INTEGER NOT NULL DEFAULT 2);
CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,
  subscriber_id INTEGER NOT NULL, channel TEXT NOT NULL, alert_id TEXT NOT NULL,
  phase TEXT NOT NULL, severity INTEGER NOT NULL, hamlet TEXT NOT NULL, text TEXT NOT NULL,
  status TEXT NOT NULL,  -- pending | sending | sent | failed
  origin TEXT NOT NULL DEFAULT 'server',  -- server | gateway (sent by the edge)
  attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL, last_error TEXT,
  created_at REAL NOT NULL, sent_at REAL, batch INTEGER, lease_until REAL,
  note TEXT,  -- what the log should tell about it (e.g. resent after a crash)
  sms_slots TEXT);  -- JSON list: where the modem stored the SMS's parts until it is settled
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(status, next_at);
CREATE INDEX IF NOT EXISTS subscription_of ON subscription(subscriber_id);
CREATE TABLE IF NOT EXISTS reply (  -- what farmers wrote back that was not STOP, for staff
  id INTEGER PRIMARY KEY, received_at REAL NOT NULL, sender TEXT NOT NULL, text TEXT NOT NULL,
  subscriber_id INTEGER, hamlet TEXT);  -- whose phone it is, when it is a subscriber's
CREATE TABLE IF NOT EXISTS cursor (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS escalation (
  alert_id TEXT PRIMARY KEY, due_at REAL NOT NULL, hamlet TEXT NOT NULL,
  event TEXT NOT NULL, acked_at REAL, acked_by TEXT, escalated_at REAL);
"""


@dataclass(frozen=True)
class Subscriber:
    id: int
    name: str
    phone: str | None
    email: str | None
    webhook_url: str | None
    webhook_secret: str | None
    language: str
    quiet_start: int | None
    quiet_end: int | None
    staff: bool
    active: bool
    stop_token: str
    hamlet: str | None = None
    user_id: int | None = None

    def channels(self) -> list[tuple[Channel, str]]:
        out = []
        if self.phone:
            out.append((Channel.SMS, self.phone))
        if self.email:
            out.append((Channel.EMAIL, self.email))
        if self.webhook_url:
            out.append((Channel.WEBHOOK, self.webhook_url))
        return out

    def quiet_until(self, now: float) -> float | None:
        """End of the quiet hours ``now`` falls in (local time), else None."""
        if self.quiet_start is None or self.quiet_end is None:
            return None
        local = datetime.fromtimestamp(now, VN)
        minute = local.hour * 60 + local.minute
        s, e = self.quiet_start, self.quiet_end
        inside = s <= minute < e if s <= e else (minute >= s or minute < e)
        if not inside:
            return None
        wait_min = (e - minute) % 1440
        return now + wait_min * 60 - local.second


@dataclass(frozen=True)
class Row:
    id: int
    key: str
    subscriber_id: int
    channel: Channel
    alert_id: str
    phase: str
    severity: int
    text: str
    attempts: int


@dataclass(frozen=True)
class Batch:
    """What leaves as one message: one row, or a digest of several for one person+channel."""

    subscriber: Subscriber
    channel: Channel
    rows: list[Row]
    sms_slots: tuple[int, ...] = ()  # where the modem stored this SMS before a crash cut it off

    @property
    def key(self) -> str:
        """The same messages give the same key (a receiver drops a repeat); any other set of
        messages a different one (a receiver never drops a digest holding something new)."""
        if len(self.rows) == 1:
            return self.rows[0].key
        keys = "\n".join(sorted(r.key for r in self.rows))
        return "digest:" + hashlib.sha256(keys.encode()).hexdigest()[:24]

    def text(self) -> str:
        if len(self.rows) == 1:
            return self.rows[0].text
        vi = self.subscriber.language == "vi"
        head = f"{len(self.rows)} cảnh báo: " if vi else f"{len(self.rows)} alerts: "
        return head + " | ".join(r.text for r in self.rows)


def _subscriber(r: sqlite3.Row) -> Subscriber:
    return Subscriber(
        id=r["id"], name=r["name"], phone=r["phone"], email=r["email"],
        webhook_url=r["webhook_url"], webhook_secret=r["webhook_secret"], language=r["language"],
        quiet_start=r["quiet_start"], quiet_end=r["quiet_end"], staff=bool(r["staff"]),
        active=bool(r["active"]), stop_token=r["stop_token"], hamlet=r["hamlet"],
        user_id=r["user_id"],
    )  # fmt: skip


@dataclass(frozen=True)
class Subscription:
    id: int
    subscriber_id: int
    hamlet: str
    rule: str
    field: str | None
    device: str | None
    min_severity: Severity


def _subscription(r: sqlite3.Row) -> Subscription:
    return Subscription(
        id=r["id"], subscriber_id=r["subscriber_id"], hamlet=r["hamlet"], rule=r["rule"],
        field=r["field"], device=r["device"], min_severity=Severity(r["min_severity"]),
    )  # fmt: skip


# Columns added after the first release: (table, name, declaration); added when missing.
_ADDED_COLUMNS = (
    ("subscriber", "hamlet", "TEXT"),
    ("subscriber", "user_id", "INTEGER"),
    ("outbox", "note", "TEXT"),
    ("outbox", "sms_slots", "TEXT"),
)
# Said in the delivery log of a message whose send a crash cut off, by channel: what the
# person may see. SMS has no idempotency key (at least once); the others carry the same key.
RESENT_NOTE = {
    # SMS only when the modem's storage cannot tell (text mode; no index recorded yet).
    Channel.SMS: "resent after the server stopped mid-send: the phone may get it twice",
    Channel.WEBHOOK: "resent after the server stopped mid-send, with the same Idempotency-Key",
    Channel.EMAIL: "resent after the server stopped mid-send, with the same Message-ID",
}
# An SMS cut off mid-send (the server stopped, or the modem's answer was lost), settled from
# the modem's own storage (AT+CMGR) when it is taken up again.
SMS_CONFIRMED_NOTE = "cut off mid-send; the modem's storage shows it went: not resent"
SMS_FROM_STORAGE_NOTE = "cut off before the modem sent it; sent once from the modem's storage"
SMS_UNSTORED_NOTE = "the server stopped before the modem had stored it; sent once after the restart"
SMS_LOST_NOTE = (
    "resent after the server stopped mid-send and the modem had lost its stored copy:"
    " the phone may get it twice"
)
# What a subscriber's owner may change (PATCH); everything else is fixed at creation.
MAX_REPLIES_KEPT = 1000  # the oldest replies go beyond this (bounded, kept for inspection)
EDITABLE = frozenset({"name", "phone", "email", "language", "quiet", "active", "staff"})


class NotifyStore:
    """Synchronous; the dispatcher and API call it through ``asyncio.to_thread``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a row marked sent survives power loss
        # One connection shared by worker threads (the dispatcher, API calls): one at a time.
        self._lock = threading.RLock()
        self._db.executescript(SCHEMA)
        self._add_columns()

    def close(self) -> None:
        with self._lock:  # not under a worker thread's transaction
            self._db.close()

    def _add_columns(self) -> None:
        have = {
            (t, r["name"])
            for t in ("subscriber", "outbox")
            for r in self._db.execute(f"PRAGMA table_info({t})")
        }
        missing = [(t, n, d) for t, n, d in _ADDED_COLUMNS if (t, n) not in have]
        if not missing:
            return
        with self._tx() as db:
            for table, name, decl in missing:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
            # Older files: a subscriber belongs to the hamlet of their first subscription.
            db.execute(
                "UPDATE subscriber SET hamlet=(SELECT hamlet FROM subscription u WHERE"
                " u.subscriber_id=subscriber.id ORDER BY u.id LIMIT 1) WHERE hamlet IS NULL"
            )

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- people -------------------------------------------------------------------------------
    def add_subscriber(
        self,
        name: str,
        *,
        phone: str | None = None,
        email: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        language: str = "vi",
        quiet: tuple[int, int] | None = None,
        staff: bool = False,
        hamlet: str | None = None,
        user_id: int | None = None,
    ) -> Subscriber:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO subscriber(name, phone, email, webhook_url, webhook_secret, language,"
                " quiet_start, quiet_end, staff, stop_token, hamlet, user_id)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (name, phone, email, webhook_url, webhook_secret, language,
                 quiet[0] if quiet else None, quiet[1] if quiet else None, int(staff),
                 secrets.token_urlsafe(16), hamlet, user_id),
            )  # fmt: skip
            row = db.execute("SELECT * FROM subscriber WHERE id=?", (cur.lastrowid,)).fetchone()
        return _subscriber(row)

    def subscribe(
        self,
        subscriber_id: int,
        hamlet: str,
        *,
        rule: str = "*",
        field: str | None = None,
        device: str | None = None,
        min_severity: Severity = Severity.WARNING,
    ) -> int:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO subscription(subscriber_id, rule, hamlet, field, device, min_severity)"
                " VALUES (?,?,?,?,?,?)",
                (subscriber_id, rule, hamlet, field, device, int(min_severity)),
            )
            # A subscriber made without a hamlet belongs to their first subscription's.
            db.execute(
                "UPDATE subscriber SET hamlet=? WHERE id=? AND hamlet IS NULL",
                (hamlet, subscriber_id),
            )
        return int(cur.lastrowid or 0)

    def find_subscriber(self, sid: int) -> Subscriber | None:
        with self._lock:
            r = self._db.execute("SELECT * FROM subscriber WHERE id=?", (sid,)).fetchone()
        return None if r is None else _subscriber(r)

    def subscribers(self) -> list[Subscriber]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM subscriber ORDER BY id").fetchall()
        return [_subscriber(r) for r in rows]

    def subscriptions(self, subscriber_id: int | None = None) -> list[Subscription]:
        sql, args = "SELECT * FROM subscription", tuple[object, ...]()
        if subscriber_id is not None:
            sql, args = sql + " WHERE subscriber_id=?", (subscriber_id,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [_subscription(r) for r in rows]

    def find_subscription(self, sub_id: int) -> Subscription | None:
        with self._lock:
            r = self._db.execute("SELECT * FROM subscription WHERE id=?", (sub_id,)).fetchone()
        return None if r is None else _subscription(r)

    def update_subscriber(self, sid: int, changes: dict[str, object]) -> Subscriber:
        """Change what ``EDITABLE`` names; turning someone off also drops what waits for them."""
        unknown = set(changes) - EDITABLE
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)}")
        cols = dict(changes)
        if "quiet" in cols:
            q = cols.pop("quiet")
            start, end = q if isinstance(q, tuple | list) else (None, None)
            cols["quiet_start"], cols["quiet_end"] = start, end
        for flag in ("active", "staff"):
            if flag in cols:
                cols[flag] = int(bool(cols[flag]))
        with self._tx() as db:
            if cols:
                sets = ", ".join(f"{c}=?" for c in cols)  # names from EDITABLE only
                db.execute(f"UPDATE subscriber SET {sets} WHERE id=?", (*cols.values(), sid))
            if cols.get("active") == 0:
                self._drop_waiting(db, "unsubscribed")
            row = db.execute("SELECT * FROM subscriber WHERE id=?", (sid,)).fetchone()
        return _subscriber(row)

    def remove_subscriber(self, sid: int) -> bool:
        """Forget a person: their subscriptions go, what waits for them is not sent; the
        delivery log keeps what was sent (without their name)."""
        with self._tx() as db:
            db.execute("DELETE FROM subscription WHERE subscriber_id=?", (sid,))
            db.execute(
                "UPDATE outbox SET status='failed', last_error='subscriber removed'"
                " WHERE subscriber_id=? AND status IN ('pending','sending')",
                (sid,),
            )
            return db.execute("DELETE FROM subscriber WHERE id=?", (sid,)).rowcount > 0

    def unsubscribe(self, sub_id: int) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM subscription WHERE id=?", (sub_id,)).rowcount > 0

    @staticmethod
    def _drop_waiting(db: sqlite3.Connection, why: str) -> None:
        db.execute(
            "UPDATE outbox SET status='failed', last_error=? WHERE status='pending'"
            " AND subscriber_id IN (SELECT id FROM subscriber WHERE active=0)",
            (why,),
        )

    def stop(self, *, token: str | None = None, phone: str | None = None) -> int:
        """Unsubscribe by the link's token or by the phone that replied STOP/HUY."""
        with self._tx() as db:
            if token is not None:
                cur = db.execute("UPDATE subscriber SET active=0 WHERE stop_token=?", (token,))
            else:
                # 0912…, 84912… and +84912… are the same phone.
                want = normalize_number(phone or "")
                ids = [
                    (r["id"],)
                    for r in db.execute(
                        "SELECT id, phone FROM subscriber WHERE phone IS NOT NULL AND active=1"
                    )
                    if normalize_number(r["phone"]) == want
                ]
                cur = db.executemany("UPDATE subscriber SET active=0 WHERE id=?", ids)
            # What was waiting for them does not go either.
            self._drop_waiting(db, "unsubscribed")
        return cur.rowcount

    # -- replies ------------------------------------------------------------------------------
    def add_reply(self, sender: str, text: str, now: float | None = None) -> int:
        """Keep a farmer's reply (committed before the modem deletes it: a crash between the
        two keeps it twice, never loses it); the oldest beyond ``MAX_REPLIES_KEPT`` go."""
        now = time.time() if now is None else now
        want = normalize_number(sender)
        with self._tx() as db:
            owner = next(
                (
                    r
                    for r in db.execute(
                        "SELECT id, phone, hamlet FROM subscriber WHERE phone IS NOT NULL"
                        " ORDER BY active DESC, id"
                    )
                    if normalize_number(r["phone"]) == want
                ),
                None,
            )
            cur = db.execute(
                "INSERT INTO reply(received_at, sender, text, subscriber_id, hamlet)"
                " VALUES (?,?,?,?,?)",
                (now, sender, text[:1000], owner["id"] if owner else None,
                 owner["hamlet"] if owner else None),
            )  # fmt: skip
            db.execute(
                "DELETE FROM reply WHERE id <= (SELECT id FROM reply ORDER BY id DESC"
                " LIMIT 1 OFFSET ?)",
                (MAX_REPLIES_KEPT,),
            )
        return int(cur.lastrowid or 0)

    def replies(
        self,
        *,
        hamlets: list[str] | None = None,
        subscriber_ids: list[int] | None = None,
        limit: int = 200,
    ) -> list[dict[str, object]]:
        """Newest first; ``hamlets`` / ``subscriber_ids`` narrow it (None: all)."""
        sql = (
            "SELECT r.id, r.received_at, r.sender, r.text, r.subscriber_id, r.hamlet, s.name"
            " FROM reply r LEFT JOIN subscriber s ON s.id=r.subscriber_id WHERE 1"
        )
        args: list[object] = []
        for col, values in (("r.hamlet", hamlets), ("r.subscriber_id", subscriber_ids)):
            if values is not None:
                sql += f" AND {col} IN (SELECT value FROM json_each(?))"
                args.append(json.dumps(values))
        sql += " ORDER BY r.id DESC LIMIT ?"
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, (*args, limit)).fetchall()]

    def subscriber(self, sid: int) -> Subscriber:
        return _subscriber(
            self._db.execute("SELECT * FROM subscriber WHERE id=?", (sid,)).fetchone()
        )

    # -- outbox -------------------------------------------------------------------------------
    def _matching(self, db: sqlite3.Connection, ev: AlertEvent, staff: bool) -> list[Subscriber]:
        if staff:
            rows = db.execute(
                "SELECT DISTINCT s.* FROM subscriber s JOIN subscription u ON u.subscriber_id=s.id"
                " WHERE s.active=1 AND s.staff=1 AND u.hamlet=?",
                (ev.hamlet,),
            ).fetchall()
            return [_subscriber(r) for r in rows]
        if ev.rule == TEST_RULE:  # an installer's test message: everyone of the hamlet
            rows = db.execute(
                "SELECT DISTINCT s.* FROM subscriber s JOIN subscription u ON u.subscriber_id=s.id"
                " WHERE s.active=1 AND u.hamlet=?",
                (ev.hamlet,),
            ).fetchall()
            return [_subscriber(r) for r in rows]
        rows = db.execute(
            "SELECT DISTINCT s.* FROM subscriber s JOIN subscription u ON u.subscriber_id=s.id"
            " WHERE s.active=1 AND u.hamlet=? AND (u.rule='*' OR u.rule=?)"
            " AND u.min_severity<=? AND (u.field IS NULL OR u.field=?)"
            " AND (u.device IS NULL OR u.device=?)",
            (ev.hamlet, ev.rule, int(ev.severity), ev.field, ev.device),
        ).fetchall()
        return [_subscriber(r) for r in rows]

    def enqueue(self, ev: AlertEvent, escalate_after_s: float, now: float | None = None) -> int:
        """Outbox rows for everyone subscribed to ``ev``; how many were new."""
        now = time.time() if now is None else now
        with self._tx() as db:
            n = self._enqueue(db, ev, now, staff=ev.phase is Phase.ESCALATION)
            if ev.phase is Phase.START and ev.severity is Severity.DANGER:
                db.execute(
                    "INSERT OR IGNORE INTO escalation(alert_id, due_at, hamlet, event)"
                    " VALUES (?,?,?,?)",
                    (ev.alert_id, now + escalate_after_s, ev.hamlet, _dump(ev)),
                )
            elif ev.phase is Phase.END:
                # An alert that ended needs no one to acknowledge it any more.
                db.execute(
                    "UPDATE escalation SET acked_at=?, acked_by='ended' WHERE alert_id=?"
                    " AND acked_at IS NULL",
                    (now, ev.alert_id),
                )
        return n

    def _enqueue(self, db: sqlite3.Connection, ev: AlertEvent, now: float, staff: bool) -> int:
        n = 0
        for sub in self._matching(db, ev, staff):
            for channel, _address in sub.channels():
                cur = db.execute(
                    "INSERT OR IGNORE INTO outbox(key, subscriber_id, channel, alert_id, phase,"
                    " severity, hamlet, text, status, next_at, created_at)"
                    " VALUES (?,?,?,?,?,?,?,?,'pending',?,?)",
                    (f"{ev.alert_id}:{ev.phase}:{sub.id}:{channel}", sub.id, str(channel),
                     ev.alert_id, str(ev.phase), int(ev.severity), ev.hamlet,
                     ev.message(sub.language), now, now),
                )  # fmt: skip
                n += cur.rowcount
        return n

    def record_sent_elsewhere(
        self, key: str, ev: AlertEvent, subscriber_id: int, channel: Channel, sent_at: float
    ) -> bool:
        """The gateway sent this message itself: log it as sent so the server never does."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE outbox SET status='sent', origin='gateway', sent_at=? WHERE key=?"
                " AND status IN ('pending','failed')",
                (sent_at, key),
            )
            if cur.rowcount:
                return True
            cur = db.execute(
                "INSERT OR IGNORE INTO outbox(key, subscriber_id, channel, alert_id, phase,"
                " severity, hamlet, text, status, origin, next_at, created_at, sent_at, attempts)"
                " VALUES (?,?,?,?,?,?,?,?,'sent','gateway',?,?,?,1)",
                (key, subscriber_id, str(channel), ev.alert_id, str(ev.phase), int(ev.severity),
                 ev.hamlet, ev.message("vi"), sent_at, sent_at, sent_at),
            )  # fmt: skip
            return cur.rowcount > 0

    def recover(self, now: float, *, sms_stored: bool = False) -> int:
        """Claims whose lease ran out (their process died) go again, as the same batch with
        the same key; the log notes it. ``sms_stored``: SMS go through the modem's storage, so
        an SMS with no storage index recorded had not reached the modem (sent once)."""
        notes = {**RESENT_NOTE, **({Channel.SMS: SMS_UNSTORED_NOTE} if sms_stored else {})}
        with self._tx() as db:
            # An SMS the modem stored first: its sender reads the modem's storage to learn
            # whether it went, and notes what it found.
            n = db.execute(
                "UPDATE outbox SET status='pending' WHERE status='sending' AND lease_until<=?"
                " AND channel=? AND sms_slots IS NOT NULL",
                (now, str(Channel.SMS)),
            ).rowcount
            for channel, note in notes.items():
                n += db.execute(
                    "UPDATE outbox SET status='pending', note=? WHERE status='sending'"
                    " AND lease_until<=? AND channel=? AND sms_slots IS NULL",
                    (note, now, str(channel)),
                ).rowcount
            return n

    def keep_sms_slots(self, batch: Batch, slots: list[int]) -> None:
        """Where the modem stored the batch's SMS, committed before the modem is asked to send
        it: after a crash, the stored message's status says whether it went."""
        self._set_slots(batch, json.dumps(slots))

    def forget_sms_slots(self, batch: Batch) -> None:
        self._set_slots(batch, None)

    def _set_slots(self, batch: Batch, value: str | None) -> None:
        with self._tx() as db:
            db.executemany(
                "UPDATE outbox SET sms_slots=? WHERE id=?", [(value, r.id) for r in batch.rows]
            )

    def note(self, batch: Batch, note: str) -> None:
        with self._tx() as db:
            db.executemany(
                "UPDATE outbox SET note=? WHERE id=?", [(note, r.id) for r in batch.rows]
            )

    def held_sms_slots(self) -> set[int]:
        """Modem storage indexes that rows still waiting to be settled point at."""
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT sms_slots FROM outbox WHERE sms_slots IS NOT NULL"
                " AND status IN ('pending','sending')"
            ).fetchall()
        return {int(i) for (text,) in rows for i in json.loads(text)}

    def claim(
        self, now: float, rate_limit: int, rate_window_s: float, lease_s: float = 300.0
    ) -> list[Batch]:
        """Due rows, claimed and grouped one batch per person and channel; rows held back by
        quiet hours or the rate limit get a later ``next_at`` instead."""
        batches: list[Batch] = []
        # First: their storage indexes are read before any new SMS may take a freed one.
        resumed: list[Batch] = []
        with self._tx() as db:
            due = db.execute(
                "SELECT * FROM outbox WHERE status='pending' AND next_at<=? ORDER BY id", (now,)
            ).fetchall()
            groups: dict[tuple[int, str], list[sqlite3.Row]] = {}
            for r in due:
                groups.setdefault((r["subscriber_id"], r["channel"]), []).append(r)
            for (sid, channel), group in groups.items():
                rows = group
                found = db.execute("SELECT * FROM subscriber WHERE id=?", (sid,)).fetchone()
                if found is None:  # removed since (a row cut off mid-send by a crash)
                    db.executemany(
                        "UPDATE outbox SET status='failed', last_error='subscriber removed'"
                        " WHERE id=?",
                        [(r["id"],) for r in rows],
                    )
                    continue
                sub = _subscriber(found)
                # An SMS the modem already holds is settled first: it may well have gone.
                stored = [r for r in rows if r["sms_slots"] is not None]
                rows = [r for r in rows if r["sms_slots"] is None]
                for part in _same_batches(stored):
                    resumed.append(self._claim_batch(db, sub, channel, part, now + lease_s))
                if not rows:
                    continue
                quiet = sub.quiet_until(now)
                if quiet is not None:
                    # Quiet hours hold warnings; danger still goes.
                    waiting = [r for r in rows if r["severity"] < Severity.DANGER]
                    db.executemany(
                        "UPDATE outbox SET next_at=? WHERE id=?",
                        [(quiet, r["id"]) for r in waiting],
                    )
                    rows = [r for r in rows if r["severity"] >= Severity.DANGER]
                    if not rows:
                        continue
                hold = self._rate_hold(db, sub.id, channel, now=now, limit=rate_limit,
                                       window=rate_window_s)  # fmt: skip
                if hold is not None:
                    db.executemany(
                        "UPDATE outbox SET next_at=? WHERE id=?", [(hold, r["id"]) for r in rows]
                    )
                    continue
                for part in _same_batches(rows):
                    batches.append(self._claim_batch(db, sub, channel, part, now + lease_s))
        return resumed + batches

    @staticmethod
    def _claim_batch(
        db: sqlite3.Connection, sub: Subscriber, channel: str, part: list[sqlite3.Row],
        lease_until: float,
    ) -> Batch:  # fmt: skip
        ids = [r["id"] for r in part]
        db.executemany(
            "UPDATE outbox SET status='sending', attempts=attempts+1, batch=?,"
            " lease_until=? WHERE id=?",
            [(ids[0], lease_until, i) for i in ids],
        )
        slots = part[0]["sms_slots"]
        return Batch(sub, Channel(channel), [
            Row(r["id"], r["key"], sub.id, Channel(channel), r["alert_id"], r["phase"],
                r["severity"], r["text"], r["attempts"] + 1)
            for r in part
        ], tuple(json.loads(slots)) if slots else ())  # fmt: skip

    def _rate_hold(
        self, db: sqlite3.Connection, sid: int, channel: str, *, now: float, limit: int,
        window: float,
    ) -> float | None:  # fmt: skip
        """When the person has had ``limit`` messages on ``channel`` in the window: its end."""
        sent = db.execute(
            "SELECT MIN(sent_at) AS t FROM outbox WHERE subscriber_id=? AND channel=?"
            " AND status='sent' AND origin='server' AND sent_at>? GROUP BY batch ORDER BY t",
            (sid, channel, now - window),
        ).fetchall()
        if len(sent) >= limit:
            return float(sent[0]["t"]) + window
        return None

    def settle(
        self,
        batch: Batch,
        now: float,
        error: str | None = None,
        retry_at: float | None = None,
    ) -> None:
        """Record the outcome: sent, retry at ``retry_at``, or failed for good."""
        ids = [(r.id,) for r in batch.rows]
        with self._tx() as db:
            if error is None:
                db.executemany(
                    "UPDATE outbox SET status='sent', sent_at=?, last_error=NULL, sms_slots=NULL"
                    " WHERE id=? AND status='sending'",
                    [(now, i) for (i,) in ids],
                )
            elif retry_at is not None:
                db.executemany(
                    "UPDATE outbox SET status='pending', next_at=?, last_error=? WHERE id=?",
                    [(retry_at, error, i) for (i,) in ids],
                )
            else:
                db.executemany(
                    "UPDATE outbox SET status='failed', last_error=? WHERE id=?",
                    [(error, i) for (i,) in ids],
                )

    def get_cursor(self, name: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM cursor WHERE name=?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def set_cursor(self, name: str, value: int) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO cursor(name, value) VALUES (?,?)"
                " ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                (name, value),
            )

    # -- the gateway's share ---------------------------------------------------------------------
    def edge_plan(self, hamlet: str) -> EdgePlan:
        """Who in ``hamlet`` gets SMS, and for what: what a gateway needs to send by itself."""
        with self._lock:
            rows = self._db.execute(
                "SELECT s.id, s.phone, s.language, u.rule, u.field, u.device, u.min_severity"
                " FROM subscriber s JOIN subscription u ON u.subscriber_id=s.id"
                " WHERE s.active=1 AND s.phone IS NOT NULL AND u.hamlet=? ORDER BY s.id, u.id",
                (hamlet,),
            ).fetchall()
        subs: dict[int, dict[str, object]] = {}
        for r in rows:
            d = subs.setdefault(
                r["id"], {"id": r["id"], "phone": r["phone"], "language": r["language"],
                          "subscriptions": []},
            )  # fmt: skip
            d["subscriptions"].append(  # type: ignore[attr-defined]
                {"rule": r["rule"], "field": r["field"], "device": r["device"],
                 "min_severity": r["min_severity"]}
            )  # fmt: skip
        body = json.dumps({"hamlet": hamlet, "subscribers": list(subs.values())}, sort_keys=True)
        version = hashlib.sha256(body.encode()).hexdigest()[:32]
        return EdgePlan.model_validate(
            {"hamlet": hamlet, "version": version, "subscribers": list(subs.values())}
        )

    # -- escalation -----------------------------------------------------------------------------
    def acknowledge(self, alert_id: str, by: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._tx() as db:
            return (
                db.execute(
                    "UPDATE escalation SET acked_at=?, acked_by=? WHERE alert_id=?"
                    " AND acked_at IS NULL",
                    (now, by, alert_id),
                ).rowcount
                > 0
            )

    def escalate_due(self, now: float) -> int:
        """Staff messages for danger alerts nobody acknowledged in time."""
        n = 0
        with self._tx() as db:
            for r in db.execute(
                "SELECT * FROM escalation WHERE acked_at IS NULL AND escalated_at IS NULL"
                " AND due_at<=?",
                (now,),
            ).fetchall():
                ev = _load(r["event"])
                esc = AlertEvent(**{**ev.__dict__, "phase": Phase.ESCALATION})
                n += self._enqueue(db, esc, now, staff=True)
                db.execute(
                    "UPDATE escalation SET escalated_at=? WHERE alert_id=?", (now, r["alert_id"])
                )
        return n

    def next_wake(self) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(t) FROM (SELECT MIN(next_at) t FROM outbox WHERE status='pending'"
                " UNION ALL SELECT MIN(lease_until) FROM outbox WHERE status='sending'"
                " UNION ALL SELECT MIN(due_at) FROM escalation WHERE acked_at IS NULL"
                " AND escalated_at IS NULL)"
            ).fetchone()
        return None if row[0] is None else float(row[0])

    # -- the delivery log -------------------------------------------------------------------
    def deliveries(
        self,
        alert_id: str | None = None,
        limit: int = 500,
        *,
        hamlets: list[str] | None = None,
        subscriber_ids: list[int] | None = None,
    ) -> list[dict[str, object]]:
        """The log, oldest first; ``hamlets`` / ``subscriber_ids`` narrow it (None: all)."""
        sql = (
            "SELECT o.id, o.key, o.alert_id, o.hamlet, o.phase, o.channel, o.status, o.origin,"
            " o.attempts, o.last_error, o.note, o.created_at, o.sent_at, o.subscriber_id,"
            " s.name, o.text FROM outbox o LEFT JOIN subscriber s ON s.id=o.subscriber_id WHERE 1"
        )
        args: list[object] = []
        if alert_id is not None:
            sql += " AND o.alert_id=?"
            args.append(alert_id)
        for col, values in (("o.hamlet", hamlets), ("o.subscriber_id", subscriber_ids)):
            if values is not None:
                sql += f" AND {col} IN (SELECT value FROM json_each(?))"
                args.append(json.dumps(values))
        sql += " ORDER BY o.id LIMIT ?"
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, (*args, limit)).fetchall()]


def _same_batches(rows: list[sqlite3.Row]) -> list[list[sqlite3.Row]]:
    """Rows tried before go again in the batch they went in (the same digest and key, so a
    receiver that got it before recognises it); rows never tried form one new batch."""
    old: dict[int, list[sqlite3.Row]] = {}
    new: list[sqlite3.Row] = []
    for r in rows:
        if r["attempts"] and r["batch"] is not None:
            old.setdefault(r["batch"], []).append(r)
        else:
            new.append(r)
    return [*old.values(), *([new] if new else [])]


def _dump(ev: AlertEvent) -> str:
    d = dict(ev.__dict__)
    d["severity"], d["phase"] = int(ev.severity), str(ev.phase)
    return json.dumps(d, ensure_ascii=False)


def _load(text: str) -> AlertEvent:
    d = json.loads(text)
    d["severity"], d["phase"] = Severity(d["severity"]), Phase(d["phase"])
    return AlertEvent(**d)
