"""Each source kind hands over device units; the gateway's pipeline converts them exactly once.

A real :class:`gateway.app.Gateway` built from its config (sources from the registry):
serial frames on a pty, Modbus RTU slaves on another pty, MQTT through a real broker. Every
device reports in units that need converting (µS/cm, °F, cm, mm, mg/L), so a conversion
applied twice (3.6 mS/cm becoming 0.0036), or skipped, changes a stored value; PSS-78
salinity is derived once per frame, never again by a source.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.buffer.identity import receipt_key, receipts_for
from gateway.config import SourcesConfig
from gateway.normalize import practical_salinity
from gateway.pipeline import TailSubscriber
from gateway.records import Reading
from gateway.sources.base import SourceStatus
from gateway.sources.serial.protocol import encode_frame
from tests.gateway.conftest import gateway_config
from tests.gateway.sources.conftest import Committed, Publisher
from tests.gateway.sources.modbus_bus import rtu_slaves
from tests.support.broker import Broker
from tests.support.pty import open_pty_pair

DEAD_URL = "http://127.0.0.1:9"  # nothing listens: everything stays in the buffer
T0 = 1764309600.5
SAL_25C = round(practical_salinity(3.6, 25.0), 4)
SAL_26C = round(practical_salinity(5.0, 26.0), 4)

# (device, metric, value) as stored, one row per record: a copy would show as a second row.
EXPECTED = sorted([
    # serial: two frames of one node in one write (most likely one submit)
    ("sal-9", "ec", 3.6), ("sal-9", "water_temp", 25.0), ("sal-9", "water_level", 1.84),
    ("sal-9", "salinity", SAL_25C),
    ("sal-9", "ec", 5.0), ("sal-9", "water_temp", 26.0), ("sal-9", "water_level", 1.5),
    ("sal-9", "salinity", SAL_26C),
    # modbus: registers in µS/cm, mg/L, mm; the device's own salinity is not re-derived
    ("sal-1", "water_temp", 28.1), ("sal-1", "ec", 3.6), ("sal-1", "salinity", 2.0),
    ("sal-1", "tds", 1800.0),
    ("wl-1", "water_level", 1.84),
    # mqtt: units named in the message
    ("sal-7", "ec", 3.6), ("sal-7", "water_temp", 25.0), ("sal-7", "water_level", 1.84),
    ("sal-7", "salinity", SAL_25C),
])  # fmt: skip
DEVICES = Counter(d for d, _, _ in EXPECTED)


async def _collect(sub: TailSubscriber, timeout: float = 60.0) -> list[tuple[str, str, float]]:
    got: list[tuple[str, str, float]] = []
    async with asyncio.timeout(timeout):
        while Counter(d for d, _, _ in got) < DEVICES:
            item = await sub.queue.get()
            if item.get("device") in DEVICES and "metric" in item:
                got.append((item["device"], item["metric"], round(item["value"], 4)))
    return sorted(got)


@pytest.mark.timeout(90)
async def test_every_source_kind_is_normalized_exactly_once(
    tmp_path: Path, mqtt_broker: Broker, publisher: Publisher
) -> None:
    with open_pty_pair() as lora, open_pty_pair() as rs485:
        cfg = gateway_config(tmp_path / "gw", DEAD_URL, "t" * 40)
        cfg = cfg.model_copy(
            update={
                "sources": SourcesConfig.model_validate({
                    "serial": [{"name": "lora", "port": lora.b, "backoff_initial_s": 0.05}],
                    "modbus": [{
                        "name": "rs485", "port": rs485.b, "inter_frame_delay_s": 0.005,
                        "devices": [
                            # One poll each in this test: the next is an hour away.
                            {"id": "sal-1", "profile": "sensecap-s-ec-01", "address": 2,
                             "interval_s": 3600},
                            {"id": "wl-1", "profile": "s-yw-01b", "address": 0x1A,
                             "interval_s": 3600},
                        ],
                    }],
                    "mqtt": [{"host": mqtt_broker.host, "port": mqtt_broker.port,
                              "client_id": "gw-once", "backoff_initial_s": 0.05}],
                })
            }
        )  # fmt: skip
        slaves = {2: [2810, 0, 3600, 2000, 1800], 0x1A: [0, 0, 0, 0, 1840]}
        async with rtu_slaves(rs485.a, slaves), Gateway(cfg) as gw:
            sub = gw.pipeline.subscribe()
            collecting = asyncio.create_task(_collect(sub))
            by_kind = {s.state.kind: s for s in gw.sources}
            for kind in ("serial", "mqtt"):
                await by_kind[kind].state.wait_until(
                    lambda st: st.status == SourceStatus.RUNNING, 30
                )
            fd = os.open(lora.a, os.O_WRONLY | os.O_NOCTTY)
            try:
                os.write(
                    fd,
                    encode_frame("sal-9", 1, T0, {"ec_us": 3600, "water_temp_f": 77,
                                                  "level_cm": 184})
                    + encode_frame("sal-9", 2, T0 + 60, {"ec_us": 5000, "water_temp_f": 78.8,
                                                         "level_cm": 150}),
                )  # fmt: skip
            finally:
                os.close(fd)
            body = {
                "id": "sal-7", "seq": 1, "ts": T0,
                "readings": {"ec": 3600, "water_temp": 77, "level": 184},
                "units": {"ec": "uS/cm", "water_temp": "F", "level": "cm"},
            }  # fmt: skip
            publisher.publish("hamlet/sal-7/telemetry", json.dumps(body))
            got = await collecting
            gw.pipeline.unsubscribe(sub)
    assert got == EXPECTED


async def test_a_retransmitted_frame_derives_no_second_salinity(committed: Committed) -> None:
    """The derived reading has a receipt of its own, made from its EC reading's: a copy of
    the frame (radio retransmission, MQTT redelivery) stores nothing again, salinity included."""
    frame = [
        Reading("sal-9", "ec_us", 3600, source="lora"),
        Reading("sal-9", "water_temp", 25.0, source="lora"),
    ]
    receipts = receipts_for(receipt_key("lora", "sal-9", 7), len(frame), check=True)
    copy = [replace(r, receipt=rc) for r, rc in zip(frame, receipts, strict=True)]
    await committed.submit(copy)
    await committed.submit(copy)
    stored = [(i["device"], i["metric"], round(i["value"], 4)) for i in committed.readings]
    assert sorted(stored) == [("sal-9", "ec", 3.6), ("sal-9", "salinity", SAL_25C),
                              ("sal-9", "water_temp", 25.0)]  # fmt: skip
    assert committed.pipeline.counters.duplicates == 3
