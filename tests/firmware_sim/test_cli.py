"""The command-line contract ``hamlet demo`` relies on, and scheduled faults end to end."""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from pathlib import Path

import pytest
import serial
import typer
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import ModbusSerialClient

from firmware_sim.cli import _override, parse_fault, parse_serial_faults, read_hamlet_gateways
from firmware_sim.fleet import FleetError, read_tokens
from tests.firmware_sim.conftest import scenario, sim_process, stats_of
from tests.firmware_sim.mqttwatch import watch
from tests.firmware_sim.refdecode import decode
from tests.support.broker import Broker
from tests.support.procs import run_hamlet


def _lines(path: str, n: int, timeout: float = 20.0) -> list[bytes]:
    buf = b""
    deadline = time.monotonic() + timeout
    with serial.Serial(path, 115200, timeout=0.2) as port:
        while buf.count(b"\r\n") < n + 1:
            assert time.monotonic() < deadline, buf[-200:]
            buf += port.read(4096)
    return buf.split(b"\r\n")[1 : n + 1]  # the first may be a partial line


def test_demo_contract_all_transports_ready_then_clean_exit(
    mqtt_broker: Broker, tmp_path: Path
) -> None:
    ser = tmp_path / "dev" / "serial" / "by-id" / "usb-hamlet-lora0"
    mb = tmp_path / "dev" / "serial" / "by-id" / "usb-hamlet-rs485"
    b = mqtt_broker
    with (
        watch(b.host, b.port, "hamlet/+/telemetry") as w,
        sim_process(
            "--scenario",
            "demo",
            "--seed",
            "1",
            "--speed",
            "1.0",
            "--mqtt-host",
            b.host,
            "--mqtt-port",
            str(b.port),
            "--serial-link",
            str(ser),
            "--modbus-link",
            str(mb),
            "--interval-s",
            "0.5",
        ) as mp,
    ):
        assert mp.lines.count("sim ready") == 1
        assert ser.is_symlink()
        assert mb.is_symlink()
        frames = [decode(x) for x in _lines(str(ser), 4)]
        assert {f.node for f in frames} <= {"wl-1", "awd-1"}
        client = ModbusSerialClient(str(mb), baudrate=9600, timeout=1)
        assert client.connect()
        try:
            r = client.read_holding_registers(0, count=7, device_id=1)
            assert not r.isError()
            assert 8 <= r.registers[0] / 10 <= 60
        finally:
            client.close()
        body = json.loads(w.wait_for(lambda m: m.topic == "hamlet/wx-1/telemetry").payload)
        assert {"air_temp", "humidity", "rain"} <= set(body["readings"])
        mp.stop()
        assert mp.proc.returncode == 0
        stats_of(mp)
    assert not ser.exists()  # links removed on exit
    assert not mb.exists()


def test_scheduled_clock_jump_reboot_and_unplug(tmp_path: Path) -> None:
    link = tmp_path / "ttyLORA"
    with sim_process(
        "-s",
        scenario("serial-two"),
        "--serial-link",
        str(link),
        "--interval-s",
        "0.05",
        "--speed",
        "1",
        "--fault",
        "clock_jump,at=0.3,jump=-3600,target=wx-1",
        "--fault",
        "reboot,at=0.6,target=wl-1",
        "--fault",
        "unplug,at=1.2,for=0.5",
    ) as mp:
        frames = [decode(x) for x in _lines(str(link), 30)]
        mp.wait_for(r"^sim replugged lora0$")
        assert link.exists()
        mp.stop()
        out = "\n".join(mp.lines)
    assert "sim clock jump -3600s wx-1" in out
    assert "sim unplugged lora0" in out
    wx = [f.time for f in frames if f.node == "wx-1"]
    assert any(a is not None and b is not None and b - a < -3000 for a, b in itertools.pairwise(wx))
    wl = [f.seq for f in frames if f.node == "wl-1"]
    assert 0 in wl[1:]  # the reboot restarted the counter
    assert wl[0] > 0


@given(st.text(max_size=60))
def test_fault_option_parsers_never_crash(text: str) -> None:
    for parse in (parse_fault, parse_serial_faults):
        with contextlib.suppress(typer.Exit):  # a clean, explained refusal is fine
            parse(text)


def test_fault_option_parsers_accept_the_documented_forms() -> None:
    f = parse_fault("unplug,at=30,for=10,target=lora0")
    assert (f.kind, f.at_s, f.duration_s, f.target) == ("unplug", 30, 10, "lora0")
    assert parse_serial_faults("corrupt=0.05,truncate=0.02").truncate == 0.02
    for bad in ("melt,at=1", "unplug,at=-1", "unplug,when=3"):
        with pytest.raises(typer.Exit):
            parse_fault(bad)
    with pytest.raises(typer.Exit):
        parse_serial_faults("corrupt=2")


@given(st.text(max_size=200))
def test_tokens_file_reader_never_crashes(text: str) -> None:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write(text)
    try:
        tokens = read_tokens(Path(fh.name))
    except FleetError:
        return
    finally:
        Path(fh.name).unlink()
    assert tokens
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in tokens.items())


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3)
    ),
    max_leaves=8,
)


@given(st.one_of(st.text(max_size=200), json_like.map(json.dumps)))
def test_gateways_file_reader_refuses_garbage_cleanly(text: str) -> None:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write(text)
    try:
        mapping = read_hamlet_gateways(Path(fh.name))
    except typer.Exit:
        return  # a clean, explained refusal
    finally:
        Path(fh.name).unlink()
    assert mapping
    assert all(isinstance(g, str) and isinstance(t, str) for g, t in mapping.values())


@given(st.text(max_size=80), st.sampled_from([None, "ordinary", "drought", "flood", ""]))
def test_scenario_overrides_refuse_garbage_cleanly(faults: str, year: str | None) -> None:
    from firmware_sim.scenario import load_scenario

    scn = load_scenario("demo")
    with contextlib.suppress(typer.Exit):
        out = _override(scn, seed=None, year_type=year, sensor_faults=faults)
        assert out.faults.sensor.dropouts >= 0


def test_gateways_file_forms(tmp_path: Path) -> None:
    lines = tmp_path / "g.txt"
    lines.write_text("# hamlet gateway token\nh1 gw-1 tok1\n\nh2 gw-2 tok2\n")
    assert read_hamlet_gateways(lines) == {"h1": ("gw-1", "tok1"), "h2": ("gw-2", "tok2")}
    js = tmp_path / "g.json"
    js.write_text(json.dumps({"h1": {"gateway": "gw-1", "token": "t"}}))
    assert read_hamlet_gateways(js) == {"h1": ("gw-1", "t")}
    for bad in ("h1 gw-1\n", "{}", '{"h1": "gw-1"}'):
        (tmp_path / "bad.txt").write_text(bad)
        with pytest.raises(typer.Exit):
            read_hamlet_gateways(tmp_path / "bad.txt")


def test_describe_json_lists_demo_devices() -> None:
    rows = json.loads(run_hamlet("sim", "describe", "--scenario", "demo", "--json"))
    by_id = {r["id"]: r for r in rows}
    assert by_id["soil-1"]["profile"] == "soil-npk-7in1"
    assert by_id["soil-1"]["address"] == 1
    assert by_id["wl-1"]["transport"] == "serial"


def test_describe_json_has_service_hours_rates_scales_and_year_type() -> None:
    rows = json.loads(run_hamlet("sim", "describe", "--scenario", "kiosk-outage", "--json"))
    by_id = {r["id"]: r for r in rows}
    onestop = by_id["kiosk-onestop"]
    assert onestop["service_hours"] == "Mon-Fri 07:00-11:30,13:30-17:00"
    assert onestop["people"] == 15000
    assert 10 <= onestop["sessions_per_day"] <= 25
    assert onestop["rating_scale"] == 5
    assert onestop["rating_share"] < 0.6
    assert onestop["heartbeat_s"] == 60
    assert by_id["kiosk-hamlet"]["rating_scale"] == 3
    assert [b["hour"] for b in by_id["radio-dp"]["broadcasts"]] == [5.0, 17.0]
    assert {r["year_type"] for r in rows} == {"auto"}
    flood = json.loads(run_hamlet("sim", "describe", "--scenario", "october-flood", "--json"))
    assert {r["year_type"] for r in flood} == {"record-flood"}
    awd = next(r for r in flood if r["model"] == "field_water")
    assert [c["name"] for c in awd["crops"]] == ["dong-xuan", "he-thu", "thu-dong"]
    commune = json.loads(run_hamlet("sim", "describe", "--scenario", "dinh-mon", "--json"))
    sal = next(r for r in commune if r["model"] == "salinity")
    assert sal["sensor_faults"]["dropouts"] == 0.02
