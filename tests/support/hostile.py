"""Hostile MQTT payloads, one table for the Hypothesis property test and the 10,000-payload run.

Each kind says how to build a payload around a marker (so its dead letter can be found one
by one) and which dead-letter reason code it must get. Good payloads carry the marker where
the committed record keeps it: an event's attrs, or a reading's value.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

KIOSK: Final = "kiosk-1"
NODE: Final = "wl-1"
EVENT_TOPIC: Final = f"hamlet/{KIOSK}/event"
TELEMETRY_TOPIC: Final = f"hamlet/{NODE}/telemetry"


@dataclass(frozen=True, slots=True)
class Hostile:
    kind: str
    code: str  # the dead-letter reason code it must get
    build: Callable[[str, int], tuple[str, bytes]]  # (marker, size knob) -> (topic, payload)


def _event(marker: str, attrs_json: str, name: str = '"lookup"') -> tuple[str, bytes]:
    text = f'{{"id":"{KIOSK}","event":{name},"attrs":{{"m":"{marker}",{attrs_json}}}}}'
    return EVENT_TOPIC, text.encode()


def _tele(marker: str, readings_json: str, extra: str = "") -> tuple[str, bytes]:
    text = f'{{"m":"{marker}","id":"{NODE}","readings":{{{readings_json}}}{extra}}}'
    return TELEMETRY_TOPIC, text.encode()


def _surrogate(m: str, k: int) -> tuple[str, bytes]:
    lone = ["\\ud800", "\\udfff", "\\udc80", "a\\ud83d"][k % 4]  # JSON escapes, not text
    return _event(m, f'"note":"{lone}"')


def _bad_utf8(m: str, k: int) -> tuple[str, bytes]:
    junk = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"][k % 4]
    return EVENT_TOPIC, f'{{"m":"{m}","note":"'.encode() + junk + b'"}'


def _nan(m: str, k: int) -> tuple[str, bytes]:
    return _tele(m, f'"water_level":{["NaN", "Infinity", "-Infinity"][k % 3]}')


def _huge_float(m: str, k: int) -> tuple[str, bytes]:
    return _tele(m, f'"water_level":1e{309 + k % 1000}')


def _huge_int(m: str, k: int) -> tuple[str, bytes]:
    return _tele(m, '"water_level":' + "9" * (4301 + k % 5000))


def _deep(m: str, k: int) -> tuple[str, bytes]:
    depth = 7 + k % 3000
    return _tele(m, '"water_level":1', ',"x":' + "[" * depth + "]" * depth)


def _nul_name(m: str, k: int) -> tuple[str, bytes]:
    return _event(m, '"note":"x"', name='"look\\u0000up"')


def _out_of_range(m: str, k: int) -> tuple[str, bytes]:
    return _tele(m, f'"water_level":{1e6 + k}')


def _surrogate_name(m: str, k: int) -> tuple[str, bytes]:
    return _event(m, '"note":"x"', name='"\\udc80"')


def _not_object(m: str, k: int) -> tuple[str, bytes]:
    return TELEMETRY_TOPIC, f'{{"m":"{m}","id":"{NODE}","readings":[{k}]}}'.encode()


HOSTILE: Final[tuple[Hostile, ...]] = (
    Hostile("lone_surrogate", "bad_text", _surrogate),
    Hostile("invalid_utf8", "not_utf8", _bad_utf8),
    Hostile("non_finite", "json_nan", _nan),
    Hostile("huge_float", "not_finite", _huge_float),
    Hostile("huge_int", "bad_json", _huge_int),
    Hostile("deep_nesting", "too_deep", _deep),
    Hostile("nul_in_name", "bad_ident", _nul_name),
    Hostile("out_of_range", "out_of_range", _out_of_range),
    Hostile("surrogate_name", "bad_ident", _surrogate_name),
    Hostile("readings_not_object", "bad_readings", _not_object),
)


# Odd but valid: a NUL and Vietnamese text in an attribute are text; they are kept.
GOOD_NOTE: Final = "tra cứu\u0000hồ sơ"


def good_event(marker: str) -> tuple[str, bytes]:
    attrs = {"m": marker, "note": GOOD_NOTE}
    return EVENT_TOPIC, json.dumps({"id": KIOSK, "event": "lookup", "attrs": attrs}).encode()


def good_reading(n: int) -> tuple[str, bytes]:
    """Reading ``n`` (0 <= n < 9,000,000): its value identifies it."""
    payload = {"id": NODE, "readings": {"water_level": n / 1_000_000}}
    return TELEMETRY_TOPIC, json.dumps(payload).encode()


def reading_id(value: float) -> int:
    return round(value * 1_000_000)
