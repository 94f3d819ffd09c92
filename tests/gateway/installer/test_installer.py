"""Installer commands through the real CLI: init, doctor (real server, broker, ptys, RTU
slaves), ports, and status/tail against a running ``hamlet gateway run``."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import load_gateway_config
from gateway.control_protocol import ControlError, NotRunning, status
from gateway.installer.ports import by_id_links
from tests.gateway.sources.modbus_bus import rtu_slaves
from tests.support.broker import Broker
from tests.support.procs import HAMLET, ManagedProcess, ServerProcess
from tests.support.pty import PtyPair, open_pty_pair


def _hamlet(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [*HAMLET, *args], capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL,
        check=False,
    )  # fmt: skip
    if check and res.returncode != 0:
        raise AssertionError(f"exit {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


async def _hamlet_async(*args: str) -> tuple[int, str, str]:
    """Run the CLI while this test's event loop keeps serving (RTU slaves)."""
    proc = await asyncio.create_subprocess_exec(
        *HAMLET, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _init_args(cfg: Path, data: Path, url: str, token: str, gw: str = "gw-test") -> list[str]:
    return [
        "gateway", "init", "-c", str(cfg), "--no-prompt", "--gateway-id", gw,
        "--hamlet", "dinh-phuoc", "--server-url", url, "--token", token,
        "--data-dir", str(data),
    ]  # fmt: skip


def test_init_writes_a_valid_config_and_refuses_overwrite(tmp_path: Path) -> None:
    cfg = tmp_path / "etc" / "gateway.toml"
    args = _init_args(cfg, tmp_path / "data", "https://hamlet.example.vn", "s3cret-token")
    args += [
        "--serial", "/dev/serial/by-id/usb-FTDI-port0", "--modbus-port", "/dev/ttyUSB1",
        "--modbus-device", "soil-1:soil-npk-7in1:1:300", "--modbus-device", "wl-1:s-yw-01b",
    ]  # fmt: skip
    out = _hamlet(*args, check=True).stdout
    assert "wrote" in out
    assert "doctor" in out
    loaded = load_gateway_config(cfg)
    assert loaded.id == "gw-test"
    assert loaded.hamlet == "dinh-phuoc"
    assert loaded.uplink.token.get_secret_value() == "s3cret-token"
    assert [s.port for s in loaded.sources.serial] == ["/dev/serial/by-id/usb-FTDI-port0"]
    devs = loaded.sources.modbus[0].devices
    assert [(d.id, d.profile, d.address, d.interval_s) for d in devs] == [
        ("soil-1", "soil-npk-7in1", 1, 300.0),
        ("wl-1", "s-yw-01b", 0x1A, 60.0),  # the profile's default address
    ]
    assert loaded.sources.mqtt[0].client_id == "hamlet-gw-test"
    assert cfg.stat().st_mode & 0o077 == 0  # holds the token: owner only

    again = _hamlet(*args)
    assert again.returncode == 2
    assert "already exists" in again.stderr
    assert _hamlet(*args, "--force", "--no-mqtt", check=True).returncode == 0
    assert load_gateway_config(cfg).sources.mqtt == []


def test_the_demo_writes_its_config_through_the_init_writer(tmp_path: Path) -> None:
    from hamlet.demo import GATEWAY_ID, HAMLET_ID, write_gateway_config

    cfg = tmp_path / "gateway.toml"
    write_gateway_config(
        cfg, run_dir=tmp_path, server_url="http://127.0.0.1:8080", token="demo-token",
        mqtt_port=18830, serial=tmp_path / "tty-serial", modbus=tmp_path / "tty-modbus",
    )  # fmt: skip
    text = cfg.read_text()
    assert text.startswith("# Written by `hamlet demo`. Check it with `hamlet gateway doctor`.")
    assert cfg.stat().st_mode & 0o077 == 0  # holds the token, as init's file does
    loaded = load_gateway_config(cfg)
    assert (loaded.id, loaded.hamlet) == (GATEWAY_ID, HAMLET_ID)
    assert loaded.clock.sync == "always"
    assert loaded.buffer.durability_window_s == 0.2
    assert loaded.heartbeat_interval_s == 10
    assert [s.port for s in loaded.sources.serial] == [str(tmp_path / "tty-serial")]
    assert [(d.id, d.address, d.interval_s) for d in loaded.sources.modbus[0].devices] == [
        ("soil-1", 1, 2.0),
        ("sal-2", 2, 2.0),
    ]
    assert loaded.sources.mqtt[0].port == 18830


def test_init_settings_are_validated_and_never_replace_answers(tmp_path: Path) -> None:
    from gateway.installer.init import InitAnswers, InitError, write_config

    base = {"gateway_id": "gw-1", "server_url": "http://127.0.0.1:9", "token": "t"}
    with pytest.raises(InitError, match="uplink are written from the answers"):
        write_config(tmp_path / "a.toml", InitAnswers(**base, settings={"uplink": {}}), force=False)
    with pytest.raises(InitError, match="not make a valid config"):
        write_config(
            tmp_path / "b.toml", InitAnswers(**base, settings={"clock": {"sync": "?"}}),
            force=False,
        )  # fmt: skip
    assert not (tmp_path / "b.toml").exists()
    assert not (tmp_path / "b.toml.tmp").exists()


@pytest.mark.parametrize(
    ("extra", "msg"),
    [
        (["--modbus-port", "/dev/x", "--modbus-device", "s:npk9000"], "unknown profile"),
        (["--modbus-device", "s:soil-3in1"], "without --modbus-port"),
        (["--modbus-port", "/dev/x", "--modbus-device", "bad spec!"], "id:profile"),
    ],
)
def test_init_rejects_bad_answers(tmp_path: Path, extra: list[str], msg: str) -> None:
    cfg = tmp_path / "g.toml"
    res = _hamlet(*_init_args(cfg, tmp_path, "https://h.example.vn", "t"), *extra)
    assert res.returncode == 2
    assert msg in res.stderr
    assert not cfg.exists()


def test_init_rejects_an_invalid_server_url(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    res = _hamlet(*_init_args(cfg, tmp_path, "not a url", "t"))
    assert res.returncode == 2
    assert "uplink.url" in res.stderr
    assert not cfg.exists()


@pytest.mark.timeout(120)
async def test_doctor_all_good_then_bad_token(
    tmp_path: Path, server: ServerProcess, mqtt_broker: Broker
) -> None:
    token = server.add_gateway("gw-doc")
    data = tmp_path / "data"
    data.mkdir()
    cfg = tmp_path / "gateway.toml"
    with open_pty_pair() as serial_pair, open_pty_pair() as bus:
        args = _init_args(cfg, data, server.url, token, gw="gw-doc")
        args += ["--serial", serial_pair.b, "--modbus-port", bus.b,
                 "--modbus-device", "soil-1:soil-3in1:1", "--modbus-device", "dead-1:soil-3in1:9",
                 "--mqtt-host", mqtt_broker.host, "--mqtt-port", str(mqtt_broker.port)]  # fmt: skip
        _hamlet(*args, check=True)
        async with rtu_slaves(bus.a, {1: [315, 272, 1500]}):
            rc, out, err = await _hamlet_async("gateway", "doctor", "-c", str(cfg), "--json")
        report = json.loads(out)
        by = {c["name"]: c for c in report["checks"]}
        assert rc == 1, err  # the dead Modbus device fails the run
        for name in ("config", "data dir", "serial port serial", "serial port modbus",
                     "modbus soil-1", "mqtt broker mqtt", "server", "token", "disk"):  # fmt: skip
            assert by[name]["outcome"] == "pass", by[name]
        assert by["modbus dead-1"]["outcome"] == "fail"
        assert "address 9" in by["modbus dead-1"]["detail"]
        assert by["modbus dead-1"]["fix_vi"]  # Vietnamese next step too
        assert by["buffer"]["outcome"] == "skip"  # no buffer before the first run
        # The test broker lets anyone in: doctor warns (issue 9, finding 5).
        assert by["mqtt broker mqtt security"]["outcome"] == "warn"
        assert "anonymous" in by["mqtt broker mqtt security"]["detail"]
        assert by["clock"]["outcome"] in ("pass", "warn")

    # Now a wrong token and a vanished adapter.
    text = cfg.read_text().replace(token, "wrong-token")
    cfg.write_text(text)
    rc, out, _ = await _hamlet_async("gateway", "doctor", "-c", str(cfg), "--json")
    by = {c["name"]: c for c in json.loads(out)["checks"]}
    assert rc == 1
    assert by["token"]["outcome"] == "fail"
    assert "rejected" in by["token"]["detail"]
    assert by["serial port serial"]["outcome"] == "fail"
    assert "hamlet gateway ports" in by["serial port serial"]["fix_en"]
    # The human rendering works too (rich table with the same verdicts).
    rc, out, _ = await _hamlet_async("gateway", "doctor", "-c", str(cfg))
    assert rc == 1
    assert "FAIL" in out
    assert "token" in out


def test_doctor_on_a_broken_config(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text('id = "gw"\n[uplink]\nurl = "https://x.example.vn"\n')
    res = _hamlet("gateway", "doctor", "-c", str(cfg), "--json")
    assert res.returncode == 1
    checks = json.loads(res.stdout)["checks"]
    assert checks[0]["name"] == "config"
    assert checks[0]["outcome"] == "fail"
    assert "uplink.token" in checks[0]["detail"]


def test_ports_json_and_by_id_links(tmp_path: Path, pty_pair: PtyPair) -> None:
    res = _hamlet("gateway", "ports", "--json", check=True)
    assert isinstance(json.loads(res.stdout), list)
    d = tmp_path / "by-id"
    d.mkdir()
    (d / "usb-FTDI_FT232R-if00-port0").symlink_to(pty_pair.b)
    links = by_id_links(d)
    assert links == {os.path.realpath(pty_pair.b): [str(d / "usb-FTDI_FT232R-if00-port0")]}


def test_status_when_gateway_not_running(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    _hamlet(*_init_args(cfg, tmp_path / "data", "https://h.example.vn", "t"), check=True)
    res = _hamlet("gateway", "status", "-c", str(cfg))
    assert res.returncode == 3
    assert "not running" in res.stderr
    assert "systemctl start hamlet-gateway" in res.stderr
    with pytest.raises(NotRunning):
        status(tmp_path / "data" / "control.sock")


@pytest.mark.timeout(120)
def test_status_and_tail_against_a_running_gateway(
    tmp_path: Path, server: ServerProcess, mqtt_broker: Broker
) -> None:
    token = server.add_gateway("gw-live")
    data = tmp_path / "data"
    cfg = tmp_path / "gateway.toml"
    _hamlet(*_init_args(cfg, data, server.url, token, gw="gw-live"), "--mqtt-host",
            mqtt_broker.host, "--mqtt-port", str(mqtt_broker.port), check=True)  # fmt: skip
    # The config as installed, with a 1 s durability window so the test need not wait the
    # default 60 s for each commit (the default's reason is the SD card, not correctness).
    quick = {"HAMLET_GATEWAY__BUFFER__DURABILITY_WINDOW_S": "1"}
    gw = ManagedProcess([*HAMLET, "gateway", "run", "-c", str(cfg)], env=quick).start()
    tailer: ManagedProcess | None = None
    try:
        gw.wait_for(r"gateway gw-live running", timeout=60)
        # Subscribed (SUBACK) before the device publishes, or the broker drops it.
        for _ in range(200):
            src = next(s for s in status(data / "control.sock").sources if s.name == "mqtt")
            if src.status == "running":
                break
            time.sleep(0.05)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="kiosk-sim")
        pub.connect(mqtt_broker.host, mqtt_broker.port)
        pub.loop_start()
        try:
            body = {"id": "sal-9", "seq": 1, "readings": {"salinity": 1.25}}
            pub.publish("hamlet/sal-9/telemetry", json.dumps(body), qos=1).wait_for_publish(10)
            pub.publish("hamlet/sal-9/telemetry", b"{broken", qos=1).wait_for_publish(10)
            # Wait (bounded) until the gateway has committed the reading, over the same
            # control protocol the CLI uses; then check the CLI's own output.
            sock = data / "control.sock"
            for _ in range(200):
                st = status(sock)
                mq = next(s for s in st.sources if s.name == "mqtt")
                if mq.counters.get("records", 0) >= 1 and st.dead_letters.count >= 1:
                    break
                time.sleep(0.05)
            out = json.loads(
                _hamlet("gateway", "status", "-c", str(cfg), "--json", check=True).stdout
            )
            mq = next(s for s in out["sources"] if s["name"] == "mqtt")
            assert out["gateway"] == "gw-live"
            assert mq["status"] == "running"
            assert mq["counters"]["records"] >= 1
            assert out["dead_letters"]["count"] >= 1
            human = _hamlet("gateway", "status", "-c", str(cfg), check=True).stdout
            assert "gw-live" in human
            assert "mqtt" in human
            assert "running" in human

            tailer = ManagedProcess([*HAMLET, "gateway", "tail", "-c", str(cfg), "--json"]).start()
            seen: dict[str, Any] = {}
            for attempt in range(2, 40):
                try:
                    line = tailer.wait_for(r'"device": ?"sal-9"', timeout=0.5).string
                    seen = json.loads(line)
                    break
                except TimeoutError:
                    # Sent before the tail subscribed: send another reading.
                    body["seq"] = attempt
                    pub.publish("hamlet/sal-9/telemetry", json.dumps(body), qos=1).wait_for_publish(
                        10
                    )
        finally:
            pub.disconnect()
            pub.loop_stop()
        assert seen["metric"] == "salinity"
        assert seen["value"] == 1.25
    finally:
        if tailer is not None:
            tailer.stop()
        gw.stop()


@pytest.mark.parametrize(
    ("chunks", "says"),
    [
        # Split across writes, as a socket may: still one line, and the refusal is reported.
        ([b'{"error":"unknown', b' request"}\n'], "refused the request: unknown request"),
        ([b'{"gateway":"gw-x",', b'"sources":[]}\n'], "unexpected StatusSnapshot"),
        ([b"<html>\n"], "not JSON"),
    ],
)
def test_control_client_reads_a_real_unix_socket(
    tmp_path: Path, chunks: list[bytes], says: str
) -> None:
    # The control protocol at the process boundary: one request line, one typed line back;
    # anything that is not the typed answer is a ControlError saying what came.
    path = tmp_path / "control.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            got.append(conn.recv(100))
            for chunk in chunks:
                conn.sendall(chunk)

    t = threading.Thread(target=serve)
    t.start()
    try:
        with pytest.raises(ControlError, match=says):
            status(path)
    finally:
        t.join(5)
        srv.close()
    assert got == [b'{"cmd":"status"}\n']
