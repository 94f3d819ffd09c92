"""Records the store refuses: why a record cannot be stored, and the dead letter it becomes.

A record SQLite cannot take must never sink the group it came with: the store checks each
record before SQL sees it (:func:`unstorable`), and what SQLite or the driver still raise
for one record's data (:data:`DATA_ERRORS`) makes it retry the group a record at a time.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Final

from gateway import deadletter
from gateway.buffer.budget import KIND_CODE
from gateway.buffer.records import NewRecord

# What one record's data (not the database) can make SQLite or the driver raise.
DATA_ERRORS: Final = (
    UnicodeError,
    ValueError,
    TypeError,
    OverflowError,
    sqlite3.InterfaceError,
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,  # "Error binding parameter": a value of a type SQLite refuses
)
_I64: Final = 2**63


def unstorable(r: NewRecord) -> str | None:
    """Why ``r`` cannot be stored as it is (checked before SQL sees it), or None."""
    if r.kind not in KIND_CODE:
        return f"bad_kind: {r.kind!r} is not a record kind"
    for what, text in (("device", r.device), ("name", r.metric), ("attrs", r.attrs)):
        if not isinstance(text, str):
            continue  # not text: SQLite decides (and refuses it alone: Store.commit_group)
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
