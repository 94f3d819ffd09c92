"""The alert tables in the server's SQLite file (both store backends keep them there).

``alerts``: one durable row per alert with a stable integer id; ``state`` is ``active`` or
``retracted`` (late data showed the episode never happened: kept, never deleted, so whoever
was told can be told again). At most one *open* active alert per rule × subject (a partial
unique index). ``alert_marks``: per rule × subject, how far evaluation has gone (reading time)
and the episode in progress, so in-order data continues where it left off.

Synchronous functions on a connection, run on the store's writer / reader threads.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Final

from hamlet.alerteval import Episode

DDL: Final = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT NOT NULL, severity TEXT NOT NULL,
    hamlet TEXT NOT NULL, device TEXT NOT NULL, metric TEXT NOT NULL DEFAULT '',
    start_ms INTEGER NOT NULL, end_ms INTEGER, peak REAL NOT NULL, peak_ms INTEGER NOT NULL,
    threshold REAL, gap_from INTEGER, gap_to INTEGER,
    message_vi TEXT NOT NULL, message_en TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'active', created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL, acked_by TEXT, acked_ms INTEGER);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open ON alerts(rule, hamlet, device, metric)
    WHERE end_ms IS NULL AND state = 'active';
CREATE INDEX IF NOT EXISTS alerts_by_subject ON alerts(rule, hamlet, device, metric, start_ms);
CREATE INDEX IF NOT EXISTS alerts_by_hamlet ON alerts(hamlet, start_ms);
CREATE TABLE IF NOT EXISTS alert_marks (
    rule TEXT NOT NULL, hamlet TEXT NOT NULL, device TEXT NOT NULL, metric TEXT NOT NULL,
    hwm INTEGER NOT NULL, first_t INTEGER, state TEXT, version INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (rule, hamlet, device, metric)) WITHOUT ROWID;
"""

ACTIVE: Final = "active"
RETRACTED: Final = "retracted"


@dataclass(frozen=True, slots=True)
class Key:
    rule: str
    hamlet: str
    device: str
    metric: str = ""

    def args(self) -> tuple[str, str, str, str]:
        return (self.rule, self.hamlet, self.device, self.metric)


@dataclass(slots=True)
class Mark:
    hwm: int  # latest reading time evaluated
    state: Episode | None
    version: int
    first: int | None = None  # earliest sign of life (silence rules)


@dataclass(frozen=True, slots=True)
class Draft:
    """An alert as the evaluator sees it; written by :func:`reconcile`."""

    severity: str
    start: int
    end: int | None
    peak: float
    peak_t: int
    threshold: float | None
    message_vi: str
    message_en: str
    gap_from: int | None = None
    gap_to: int | None = None


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(f"BEGIN IMMEDIATE;{DDL}COMMIT;")


_KEYW: Final = "rule = ? AND hamlet = ? AND device = ? AND metric = ?"


def load_mark(conn: sqlite3.Connection, key: Key) -> Mark | None:
    r = conn.execute(
        f"SELECT hwm, state, version, first_t FROM alert_marks WHERE {_KEYW}", key.args()
    )
    row = r.fetchone()
    if row is None:
        return None
    state = Episode.from_json(json.loads(row[1])) if row[1] else None
    return Mark(int(row[0]), state, int(row[2]), row[3])


def save_mark(
    conn: sqlite3.Connection, key: Key, hwm: int, state: Episode | None, first: int | None = None
) -> None:
    conn.execute(
        "INSERT INTO alert_marks(rule, hamlet, device, metric, hwm, first_t, state, version) "
        "VALUES (?,?,?,?,?,?,?,1) ON CONFLICT(rule, hamlet, device, metric) DO UPDATE SET "
        "hwm = excluded.hwm, first_t = excluded.first_t, state = excluded.state, "
        "version = version + 1",
        (*key.args(), hwm, first, json.dumps(state.to_json()) if state else None),
    )


def spanning_start(conn: sqlite3.Connection, key: Key, t: int) -> int | None:
    """Start of an active alert that began before ``t`` and had not ended by it."""
    r = conn.execute(
        f"SELECT min(start_ms) FROM alerts WHERE {_KEYW} AND state = ? AND start_ms < ? "
        "AND (end_ms IS NULL OR end_ms > ?)",
        (*key.args(), ACTIVE, t, t),
    ).fetchone()
    return int(r[0]) if r and r[0] is not None else None


def hamlet_marks(conn: sqlite3.Connection, hamlet: str, metrics: list[str]) -> dict[Key, Mark]:
    """Every mark of the value rules of ``metrics`` in a hamlet, in one query."""
    if not metrics:
        return {}
    ms = sorted(set(metrics))
    rows = conn.execute(
        "SELECT rule, device, metric, hwm, state, version, first_t FROM alert_marks "
        f"WHERE hamlet = ? AND metric IN ({','.join('?' * len(ms))})",
        (hamlet, *ms),
    ).fetchall()
    return {
        Key(r[0], hamlet, r[1], r[2]): Mark(
            int(r[3]), Episode.from_json(json.loads(r[4])) if r[4] else None, int(r[5]), r[6]
        )
        for r in rows
    }


def save_marks(conn: sqlite3.Connection, rows: list[tuple[Key, int, Episode | None]]) -> None:
    conn.executemany(
        "INSERT INTO alert_marks(rule, hamlet, device, metric, hwm, first_t, state, version) "
        "VALUES (?,?,?,?,?,NULL,?,1) ON CONFLICT(rule, hamlet, device, metric) DO UPDATE SET "
        "hwm = excluded.hwm, state = excluded.state, version = version + 1",
        [(*k.args(), hwm, json.dumps(st.to_json()) if st else None) for k, hwm, st in rows],
    )


def _overlaps(a0: int, a1: int | None, b0: int, b1: int | None) -> bool:
    inf = 2**62
    return a0 <= (b1 if b1 is not None else inf) and b0 <= (a1 if a1 is not None else inf)


def reconcile(  # noqa: PLR0917 -- read as a sentence
    conn: sqlite3.Connection,
    key: Key,
    since: int,
    drafts: list[Draft],
    now_ms: int,
    until: int | None = None,
) -> list[int]:
    """Make the active alerts of ``key`` starting in [since, until) equal ``drafts``.

    An existing alert that overlaps a draft keeps its id (and acknowledgement) and takes the
    draft's times and peak; drafts with no match are inserted; existing alerts with no draft
    are retracted. Returns the ids written.
    """
    rows = conn.execute(
        f"SELECT id, start_ms, end_ms FROM alerts WHERE {_KEYW} AND state = ? AND start_ms >= ? "
        "AND start_ms < ? ORDER BY start_ms, id",
        (*key.args(), ACTIVE, since, until if until is not None else 2**62),
    ).fetchall()
    free = [(int(i), int(s), e) for i, s, e in rows]
    pairs: list[tuple[int | None, Draft]] = []
    for d in sorted(drafts, key=lambda d: d.start):
        hit = next((x for x in free if _overlaps(x[1], x[2], d.start, d.end)), None)
        if hit is not None:
            free.remove(hit)
        pairs.append((hit[0] if hit else None, d))
    for i, _s, _e in free:
        retract(conn, i, now_ms)
    return [write_draft(conn, key, aid, d, now_ms) for aid, d in pairs]


def retract(conn: sqlite3.Connection, alert_id: int, now_ms: int) -> None:
    conn.execute(
        "UPDATE alerts SET state = ?, updated_ms = ? WHERE id = ?", (RETRACTED, now_ms, alert_id)
    )


def write_draft(
    conn: sqlite3.Connection, key: Key, alert_id: int | None, d: Draft, now_ms: int
) -> int:
    """Update alert ``alert_id`` to ``d`` (keeping id and acknowledgement), or insert it."""
    cols = (
        d.severity, d.start, d.end, d.peak, d.peak_t, d.threshold, d.gap_from, d.gap_to,
        d.message_vi, d.message_en,
    )  # fmt: skip
    if alert_id is not None:
        conn.execute(
            "UPDATE alerts SET severity = ?, start_ms = ?, end_ms = ?, peak = ?, peak_ms = ?, "
            "threshold = ?, gap_from = ?, gap_to = ?, message_vi = ?, message_en = ?, "
            "updated_ms = ? WHERE id = ?",
            (*cols, now_ms, alert_id),
        )
        return alert_id
    cur = conn.execute(
        "INSERT INTO alerts(severity, start_ms, end_ms, peak, peak_ms, threshold, "
        "gap_from, gap_to, message_vi, message_en, rule, hamlet, device, metric, "
        "created_ms, updated_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (*cols, *key.args(), now_ms, now_ms),
    )
    return int(cur.lastrowid or 0)


@dataclass(frozen=True, slots=True)
class SilenceRow:
    id: int
    gap_from: int
    gap_to: int | None


def silences(conn: sqlite3.Connection, key: Key, t: int | None = None) -> list[SilenceRow]:
    """Active silence alerts of ``key`` (those whose gap holds ``t``, if given)."""
    sql = f"SELECT id, gap_from, gap_to FROM alerts WHERE {_KEYW} AND state = ?"
    args: list[object] = [*key.args(), ACTIVE]
    if t is not None:
        sql += " AND gap_from < ? AND (gap_to IS NULL OR gap_to > ?)"
        args += [t, t]
    return [SilenceRow(int(i), int(a), b) for i, a, b in conn.execute(sql, args).fetchall()]


def open_keys(conn: sqlite3.Connection) -> set[Key]:
    rows = conn.execute(
        "SELECT rule, hamlet, device, metric FROM alerts WHERE end_ms IS NULL AND state = ?",
        (ACTIVE,),
    ).fetchall()
    return {Key(*r) for r in rows}


def silence_marks(conn: sqlite3.Connection, rules: tuple[str, ...]) -> list[tuple[Key, int]]:
    rows = conn.execute(
        "SELECT rule, hamlet, device, metric, hwm FROM alert_marks "
        f"WHERE rule IN ({','.join('?' * len(rules))})",
        rules,
    ).fetchall()
    return [(Key(r[0], r[1], r[2], r[3]), int(r[4])) for r in rows]
