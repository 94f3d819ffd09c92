"""MQTT payload decoders: topic + bytes -> records, or :class:`PayloadError` with a reason.

Pure functions of (config, topic, payload): no I/O, so Hypothesis can fuzz them. Every way a
payload can be wrong has its own reason, because an installer reads these in the dead-letter
list and must know whether to fix the firmware, the topic or the mapping.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.records import Event, Reading, Record
from gateway.sources.mqtt.config import FieldMapping, MqttSourceConfig
from hamlet.contract import RecordKind, Scalar, is_ident
from hamlet.metrics import METRICS

_METRIC_KEY: Final = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_MAX_DEPTH: Final = 6  # the deepest legitimate payload (Tasmota) nests 3
_MAX_READINGS: Final = 64
_MAX_ATTRS: Final = 32  # EventRecord.attrs max_length in the contract
_MAX_ATTR_STR: Final = 256
_U32_MAX: Final = 2**32 - 1
_STATUS_WORDS: Final = {"online": "online", "offline": "offline"}


class PayloadError(ValueError):
    """A message that can never become records; ``str(err)`` is the dead-letter reason.

    Reasons read ``code: detail``: the dead-letter store counts per code.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


@dataclass(frozen=True, slots=True)
class Decoded:
    device: str
    records: list[Record]
    seq: int | None = None
    status: str | None = None  # "online"/"offline" when the message is a status/LWT
    extra: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------- helpers


def _ident(value: str, what: str) -> str:
    if not is_ident(value):
        raise PayloadError("bad_ident", f"{what} {value[:70]!r} is not a valid identifier")
    return value


def _reject_constant(name: str) -> float:
    raise PayloadError("json_nan", f"JSON contains {name}, which is not a number")


def _depth(obj: object) -> int:
    """Nesting depth, iteratively (a hostile payload must not exhaust the stack here)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in node)
    return deepest


def parse_json(payload: bytes) -> Any:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PayloadError(
            "not_utf8", f"payload is not UTF-8 text (bad byte at {err.start})"
        ) from err
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except RecursionError as err:
        raise PayloadError("too_deep", "JSON nested too deeply") from err
    except PayloadError:
        raise
    except ValueError as err:  # JSONDecodeError, and int() refusing >4300 digits
        raise PayloadError("bad_json", f"payload is not valid JSON: {str(err)[:120]}") from err
    # Depth can never exceed the number of opening brackets: skip the walk for flat payloads.
    if payload.count(b"{") + payload.count(b"[") > _MAX_DEPTH and _depth(obj) > _MAX_DEPTH:
        raise PayloadError("too_deep", f"JSON nested deeper than {_MAX_DEPTH} levels")
    return obj


def _number(value: object, what: str) -> float:
    # bool is an int in Python but never a measurement.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError("bad_type", f"{what} must be a number, got {type(value).__name__}")
    try:
        f = float(value)
    except OverflowError:  # an integer beyond any float (JSON allows 1 followed by 400 zeros)
        raise PayloadError("not_finite", f"{what} is too large for a number") from None
    if not math.isfinite(f):
        raise PayloadError("not_finite", f"{what} is not finite ({value})")
    return f


def _status_word(payload: bytes, what: str) -> str:
    word = payload.strip().decode("ascii", errors="replace").lower()
    state = _STATUS_WORDS.get(word)
    if state is None:
        raise PayloadError("bad_status", f"{what} must be 'online' or 'offline', got {word[:40]!r}")
    return state


def _status_event(device: str, state: str, source: str, retained: bool) -> Decoded:
    attrs: dict[str, Scalar] = {"state": state}
    if retained:
        attrs["retained"] = True  # replayed by the broker on (re)subscribe, not news
    return Decoded(device, [Event(device, "status", attrs, source=source)], status=state)


# ---------------------------------------------------------------- hamlet preset

# Kiosk and service-device events whose attributes we know: checked so a firmware bug shows
# up in the dead letters instead of as a wrong "share of dossiers online" on the report card.
_CHANNELS: Final = frozenset({"online", "assisted", "in_person"})


def _check_dossier(attrs: Mapping[str, Scalar]) -> None:
    if attrs.get("channel") not in _CHANNELS:
        raise PayloadError(
            "bad_event",
            f"dossier_submitted.channel must be one of {sorted(_CHANNELS)}, "
            f"got {attrs.get('channel')!r}",
        )


def _check_rating(attrs: Mapping[str, Scalar]) -> None:
    scale, score = attrs.get("scale"), attrs.get("score")
    if isinstance(scale, bool) or scale not in (3, 5):
        raise PayloadError("bad_event", f"rating.scale must be 3 or 5, got {scale!r}")
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= int(scale):
        raise PayloadError(
            "bad_event", f"rating.score must be an integer 1..{scale}, got {score!r}"
        )


EVENT_RULES: Final[Mapping[str, Callable[[Mapping[str, Scalar]], None]]] = {
    "dossier_submitted": _check_dossier,
    "rating": _check_rating,
}


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _attrs(raw: object) -> dict[str, Scalar]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PayloadError("bad_attrs", f"'attrs' must be an object, got {type(raw).__name__}")
    if len(raw) > _MAX_ATTRS:
        raise PayloadError("bad_attrs", f"'attrs' has {len(raw)} entries; at most {_MAX_ATTRS}")
    out: dict[str, Scalar] = {}
    for key, val in raw.items():
        _ident(key, "attribute name")
        if isinstance(val, str):
            if not val.isascii() and _has_surrogate(val):
                # JSON's "\ud800" escape decodes to a lone surrogate: not text, not storable.
                raise PayloadError(
                    "bad_text", f"attribute {key!r} holds a lone surrogate, which is not text"
                )
            if len(val) > _MAX_ATTR_STR:
                raise PayloadError(
                    "bad_attrs", f"attribute {key!r} is longer than {_MAX_ATTR_STR} characters"
                )
        elif isinstance(val, float):
            if not math.isfinite(val):
                raise PayloadError("bad_attrs", f"attribute {key!r} is not finite")
        elif not isinstance(val, int | bool):
            raise PayloadError(
                "bad_attrs",
                f"attribute {key!r} must be a string, number or boolean, got {type(val).__name__}",
            )
        out[key] = val
    return out


def _hamlet(cfg: MqttSourceConfig, topic: str, payload: bytes, retained: bool) -> Decoded:
    parts = topic.split("/")
    prefix = cfg.topic_prefix
    if len(parts) != 3 or parts[0] != prefix:
        raise PayloadError(
            "unknown_topic", f"unknown topic {topic[:100]!r} (expected {prefix}/<device>/<kind>)"
        )
    device = _ident(parts[1], "device id in topic")
    kind = parts[2]
    if kind == "status":
        return _status_event(device, _status_word(payload, "status payload"), cfg.name, retained)
    if kind not in ("telemetry", "heartbeat", "event"):
        raise PayloadError(
            "unknown_topic",
            f"unknown topic kind {kind[:40]!r} (expected telemetry, heartbeat, event or status)",
        )
    obj = parse_json(payload)
    if not isinstance(obj, dict):
        raise PayloadError("bad_type", f"payload must be a JSON object, got {type(obj).__name__}")
    dev_id = obj.get("id", device)
    if dev_id != device:
        raise PayloadError(
            "id_mismatch", f"'id' {str(dev_id)[:70]!r} does not match the topic's device {device!r}"
        )
    seq = obj.get("seq")
    if seq is not None and (
        isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= _U32_MAX
    ):
        raise PayloadError(
            "bad_seq", f"'seq' must be an integer 0..{_U32_MAX}, got {str(seq)[:40]}"
        )
    ts = obj.get("ts")
    t_ms: int | None = None
    if ts is not None:
        t = _number(ts, "'ts'")
        if t <= 0 or t > 1e11:  # seconds; 1e11 s is year 5138: someone sent milliseconds
            raise PayloadError("bad_ts", f"'ts' must be epoch seconds, got {t:g}")
        t_ms = round(t * 1000)
    if kind == "event":
        name = obj.get("event")
        if not isinstance(name, str):
            raise PayloadError("bad_event", "'event' (the event name) is missing or not a string")
        _ident(name, "event name")
        attrs = _attrs(obj.get("attrs"))
        rule = EVENT_RULES.get(name)
        if rule is not None:
            rule(attrs)
        return Decoded(
            device, [Event(device, name, attrs, device_time_ms=t_ms, source=cfg.name)], seq
        )
    readings = obj.get("readings")
    units = obj.get("units", {})
    rkind = RecordKind.HEARTBEAT if kind == "heartbeat" else RecordKind.READING
    if readings is None and kind == "heartbeat":
        readings = {}
    if not isinstance(readings, dict):
        raise PayloadError("bad_readings", "'readings' is missing or not an object")
    if not isinstance(units, dict):
        raise PayloadError("bad_readings", "'units' must be an object of metric -> unit")
    if len(readings) > _MAX_READINGS:
        raise PayloadError(
            "bad_readings", f"{len(readings)} readings in one message; at most {_MAX_READINGS}"
        )
    if not readings and kind == "telemetry":
        raise PayloadError("bad_readings", "'readings' is empty")
    records: list[Record] = []
    for key, val in readings.items():
        if not _METRIC_KEY.fullmatch(key):  # fullmatch: `$` would allow "key\n"
            raise PayloadError(
                "bad_readings", f"reading name {key[:40]!r} is not [a-z][a-z0-9_]{{0,31}}"
            )
        value = _number(val, f"reading {key!r}")
        unit = units.get(key)
        if unit is not None and (not isinstance(unit, str) or len(unit) > 16):
            raise PayloadError("bad_readings", f"unit for {key!r} must be a short string")
        records.append(Reading(device, key, value, unit, rkind, t_ms, cfg.name))
    if not records:  # a bare heartbeat still says "alive"
        records.append(Reading(device, "heartbeat", 1.0, None, rkind, t_ms, cfg.name))
    return Decoded(device, records, seq)


# ---------------------------------------------------------------- tasmota preset


def _lookup(obj: object, path: str) -> object:
    node = obj
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _mappings_for(cfg: MqttSourceConfig, device: str) -> list[FieldMapping]:
    return [m for m in cfg.field_mappings() if m.device in (None, device)]


def _tasmota(cfg: MqttSourceConfig, topic: str, payload: bytes, retained: bool) -> Decoded:
    parts = topic.split("/")
    prefix = cfg.topic_prefix
    if len(parts) != 3 or parts[0] != prefix:
        raise PayloadError(
            "unknown_topic", f"unknown topic {topic[:100]!r} (expected {prefix}/<device>/SENSOR)"
        )
    device = _ident(parts[1], "device id in topic")
    if parts[2] == "LWT":
        return _status_event(device, _status_word(payload, "LWT payload"), cfg.name, retained)
    if parts[2] != "SENSOR":
        raise PayloadError(
            "unknown_topic",
            f"unknown Tasmota topic kind {parts[2][:40]!r} (expected SENSOR or LWT)",
        )
    obj = parse_json(payload)
    if not isinstance(obj, dict):
        raise PayloadError("bad_type", f"payload must be a JSON object, got {type(obj).__name__}")
    temp_unit = obj.get("TempUnit", "C")
    records: list[Record] = []
    seen: set[str] = set()
    for m in _mappings_for(cfg, device):
        if m.field in seen:
            continue  # a site mapping overrides the default for the same field
        raw = _lookup(obj, m.field)
        if raw is None:
            continue
        seen.add(m.field)
        value = _number(raw, f"field {m.field!r}")
        unit = m.unit
        if unit is None and m.field.endswith("Temperature") and temp_unit == "F":
            unit = "°F"
        records.append(Reading(device, m.metric, value, unit, source=cfg.name))
    if not records:
        raise PayloadError(
            "unmapped",
            "no mapped field in the SENSOR payload (add a [[sources.mqtt.mappings]] entry "
            f"with field = '<Sensor>.<Quantity>'); keys: {', '.join(list(obj)[:8])[:120]}",
        )
    return Decoded(device, records)


# ---------------------------------------------------------------- esphome preset


def _esphome(cfg: MqttSourceConfig, topic: str, payload: bytes, retained: bool) -> Decoded:
    parts = topic.split("/")
    if len(parts) == 2 and parts[1] == "status":
        device = _ident(parts[0], "node name in topic")
        return _status_event(device, _status_word(payload, "status payload"), cfg.name, retained)
    if len(parts) != 4 or parts[1] != "sensor" or parts[3] != "state":
        raise PayloadError(
            "unknown_topic",
            f"unknown topic {topic[:100]!r} (expected <node>/sensor/<name>/state or <node>/status)",
        )
    device = _ident(parts[0], "node name in topic")
    name = parts[2]
    mapping = next((m for m in _mappings_for(cfg, device) if m.field == name), None)
    if mapping is not None:
        metric, unit = mapping.metric, mapping.unit
    elif name in METRICS:
        metric, unit = name, None
    else:
        raise PayloadError(
            "unmapped",
            f"ESPHome sensor {name[:40]!r} has no mapping (add a [[sources.mqtt.mappings]] "
            "entry with field = the sensor's object id and metric = a canonical metric)",
        )
    text = payload.strip().decode("ascii", errors="replace")
    try:
        value = float(text)
    except ValueError as err:
        raise PayloadError("bad_type", f"state payload {text[:40]!r} is not a number") from err
    if not math.isfinite(value):
        # ESPHome publishes "nan" while a sensor has no reading yet.
        raise PayloadError(
            "not_finite", f"state payload is not finite ({text[:10]}): sensor has no reading"
        )
    return Decoded(device, [Reading(device, metric, value, unit, source=cfg.name)])


_DECODERS: Final = {"hamlet": _hamlet, "tasmota": _tasmota, "esphome": _esphome}


def decode(cfg: MqttSourceConfig, topic: str, payload: bytes, *, retained: bool = False) -> Decoded:
    """Decode one message; raise :class:`PayloadError` with the dead-letter reason."""
    if len(payload) > cfg.max_payload_bytes:
        raise PayloadError(
            "too_large",
            f"payload of {len(payload)} bytes exceeds the {cfg.max_payload_bytes}-byte limit",
        )
    return _DECODERS[cfg.preset](cfg, topic, payload, retained)
