"""Hypothesis: the MQTT decoders never crash; bad input is a PayloadError with a reason."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.records import Event, Reading
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.sources.mqtt.decode import Decoded, PayloadError, decode

CFGS = [MqttSourceConfig(preset=p) for p in ("hamlet", "tasmota", "esphome")]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
topics = st.one_of(
    st.text(max_size=40),
    st.builds(
        "/".join,
        st.lists(
            st.sampled_from(
                [
                    "hamlet",
                    "tele",
                    "n1",
                    "kiosk-1",
                    "telemetry",
                    "heartbeat",
                    "event",
                    "status",
                    "SENSOR",
                    "LWT",
                    "sensor",
                    "state",
                    "salinity",
                    "",
                    "+",
                    "a b",
                ]
            ),
            min_size=1,
            max_size=5,
        ),
    ),
)


def _attempt(cfg: MqttSourceConfig, topic: str, payload: bytes) -> Decoded | PayloadError:
    try:
        return decode(cfg, topic, payload)
    except PayloadError as err:
        return err


def _check_outcome(out: Decoded | PayloadError) -> None:
    if isinstance(out, PayloadError):
        code, _, detail = str(out).partition(": ")
        assert code == out.code
        assert detail
    else:
        _check(out)


def _check(d: Decoded) -> None:
    assert d.records
    for r in d.records:
        assert r.device == d.device
        if isinstance(r, Reading):
            assert math.isfinite(r.value)
        else:
            assert isinstance(r, Event)


@settings(max_examples=400, deadline=None)
@given(topic=topics, payload=st.binary(max_size=300), cfg=st.sampled_from(CFGS))
def test_random_bytes_never_crash(topic: str, payload: bytes, cfg: MqttSourceConfig) -> None:
    _check_outcome(_attempt(cfg, topic, payload))


@settings(max_examples=200, deadline=None)
@given(
    device=st.sampled_from(["n1", "kiosk-1", "bad id", ""]),
    kind=st.sampled_from(["telemetry", "heartbeat", "event"]),
    body=st.dictionaries(
        st.sampled_from(["id", "seq", "ts", "readings", "event", "attrs", "units", "x"]),
        json_values,
        max_size=6,
    ),
)
def test_structured_json_never_crashes(device: str, kind: str, body: dict[str, object]) -> None:
    payload = json.dumps(body).encode()
    _check_outcome(_attempt(CFGS[0], f"hamlet/{device}/{kind}", payload))


@settings(max_examples=100, deadline=None)
@given(
    readings=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
        st.floats(allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=10,
    ),
    seq=st.integers(0, 2**32 - 1),
)
def test_valid_telemetry_roundtrips(readings: dict[str, float], seq: int) -> None:
    body = {"id": "n1", "seq": seq, "readings": readings}
    d = decode(CFGS[0], "hamlet/n1/telemetry", json.dumps(body).encode())
    assert d.seq == seq
    assert {r.metric: r.value for r in d.records if isinstance(r, Reading)} == readings


@settings(max_examples=100, deadline=None)
@given(depth=st.integers(7, 3000))
def test_deep_nesting_is_rejected(depth: int) -> None:
    payload = b'{"id":"n1","readings":' + b"[" * depth + b"]" * depth + b"}"
    cfg = MqttSourceConfig(max_payload_bytes=1024 * 1024)
    out = _attempt(cfg, "hamlet/n1/telemetry", payload)
    assert isinstance(out, PayloadError)
    assert out.code == "too_deep"
