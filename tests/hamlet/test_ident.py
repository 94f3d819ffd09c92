"""One identifier rule for gateway and server (hamlet.contract.is_ident / Ident).

Issue 9, finding 7: the gateway checked ids with Python's ``re.match`` on a ``$``-anchored
pattern, which accepts ``"name\\n"``; the server (pydantic, Rust regex) refuses it, so the
whole batch came back 422.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from gateway.buffer import DurableBuffer
from gateway.buffer.config import BufferConfig
from gateway.clock import Clock, ClockConfig
from gateway.pipeline import Pipeline
from gateway.records import Reading
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.sources.mqtt.decode import PayloadError, decode
from hamlet.contract import IDENT_BODY, INGEST_PATH, Ident, is_ident
from tests.server.helpers import batch, block
from tests.support.procs import ServerProcess

_SERVER_IDENT = TypeAdapter(Ident)  # what the server's request models validate with

TRICKY = [
    "soil-1",
    "soil-1\n",
    "soil-1\r\n",
    "\nsoil-1",
    "soil 1",
    "a" * 64,
    "a" * 65,
    "-lead",
    "gw:hamlet.v2_1",
    "s\u00f4ng",
]


def _server_accepts(value: str) -> bool:
    try:
        _SERVER_IDENT.validate_python(value)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("value", TRICKY, ids=repr)
def test_gateway_check_is_the_server_check(value: str) -> None:
    assert is_ident(value) == _server_accepts(value)


@settings(max_examples=400)
@given(
    st.one_of(
        st.text(max_size=70),
        st.from_regex(IDENT_BODY, fullmatch=True).flatmap(
            lambda s: st.sampled_from([s, s + "\n", s + "\r", "\n" + s, s + " "])
        ),
    )
)
def test_is_ident_agrees_with_the_server_model(value: str) -> None:
    assert is_ident(value) == _server_accepts(value)


def _post_device(client: httpx.Client, token: str, device: str) -> int:
    """A batch whose one reading comes from ``device``, as raw JSON (pydantic would refuse
    to build a bad one on our side)."""
    doc = json.loads(batch("gw-ident", [block("placeholder", "salinity", [1])]).model_dump_json())
    doc["series"][0]["device"] = device
    resp = client.post(
        INGEST_PATH,
        content=gzip.compress(json.dumps(doc).encode()),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
    )
    return resp.status_code


def test_real_server_refuses_what_the_gateway_refuses(server: ServerProcess) -> None:
    token = server.add_gateway("gw-ident")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for value in ["soil-1", "soil-1\n", "soil 1", "a" * 65]:
            code = _post_device(client, token, value)
            assert code in (200, 422), code
            assert (code == 200) == is_ident(value), (value, code)


async def test_pipeline_dead_letters_a_trailing_newline(tmp_path: Path) -> None:
    clock = Clock(ClockConfig(sync="always"))
    async with DurableBuffer(
        BufferConfig(durability_window_s=0.2), tmp_path, clock.boot_id
    ) as buffer:
        pipeline = Pipeline(buffer, clock)
        await pipeline.submit(
            [
                Reading("soil-1\n", "soil_moisture", 30.0, source="test"),
                Reading("soil-1", "soil_moisture\n", 31.0, source="test"),
                Reading("soil-1", "soil_moisture", 32.0, source="test"),
            ]
        )
        stored, _ = await buffer.read_batch(0, None, 100, hold_pending=False)
        _, by_code, _ = await buffer.dead_summary(10)
    assert [(r.device, r.metric, r.value) for r in stored] == [("soil-1", "soil_moisture", 32.0)]
    assert by_code == {"bad_ident": 2}


@pytest.mark.parametrize(
    "body",
    [
        {"id": "soil-1\n", "seq": 1, "readings": {"soil_moisture": 30}},
        {"id": "soil-1", "seq": 1, "readings": {"soil_moisture\n": 30}},
    ],
    ids=["device", "reading name"],
)
def test_mqtt_decode_refuses_a_trailing_newline(body: dict[str, object]) -> None:
    cfg = MqttSourceConfig(preset="hamlet")
    with pytest.raises(PayloadError):
        decode(cfg, "hamlet/soil-1/telemetry", json.dumps(body).encode())
