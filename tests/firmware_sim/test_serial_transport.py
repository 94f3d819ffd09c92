"""The serial line protocol over a real pty, read the way the gateway reads it."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import serial

from tests.firmware_sim.conftest import scenario, signal_sim, sim_process, stats_of
from tests.firmware_sim.refdecode import BadFrame, decode, split_stream


def _read_frames(path: str, want: int, timeout: float = 20.0) -> list[bytes]:
    """Read from the port until ``want`` complete lines arrived."""
    buf = b""
    deadline = time.monotonic() + timeout
    with serial.Serial(path, 115200, timeout=0.2) as port:
        while buf.count(b"\r\n") < want:
            assert time.monotonic() < deadline, f"too few lines: {buf[-300:]!r}"
            buf += port.read(4096)
    return buf.split(b"\r\n")[:want]


def _read_until_dead(port: serial.Serial) -> None:
    for _ in range(50):
        if not port.read(4096):
            raise serial.SerialException("EOF")


def test_frames_decode_and_count_per_node(tmp_path: Path) -> None:
    link = str(tmp_path / "by-id" / "usb-sim-lora0")
    with sim_process(
        "-s", scenario("serial-two"), "--serial-link", link, "--interval-s", "0.05", "--speed", "20"
    ):
        lines = _read_frames(link, 40)
    frames = [decode(line) for line in lines if line]
    by_node: dict[str, list[int]] = {}
    for f in frames:
        by_node.setdefault(f.node, []).append(f.seq)
        if f.node == "wl-1":
            assert f.time is None
            assert set(f.readings) == {"water_level", "battery", "rssi"}
        else:
            assert f.time is not None
            assert set(f.readings) == {"air_temp", "humidity", "rain"}
    assert set(by_node) == {"wl-1", "wx-1"}
    for seqs in by_node.values():
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gaps, in order


def test_usb_unplug_and_replug(tmp_path: Path) -> None:
    link = tmp_path / "by-id" / "usb-sim-lora0"
    with sim_process(
        "-s", scenario("serial-two"), "--serial-link", str(link), "--interval-s", "0.05"
    ) as mp:
        port = serial.Serial(str(link), 115200, timeout=0.2)
        try:
            assert port.read(64)
            signal_sim(mp, signal.SIGUSR1)
            mp.wait_for(r"^sim unplugged lora0$")
            assert not link.exists()
            # The old handle dies as with a pulled adapter: EIO (or EOF) on read.
            with pytest.raises((serial.SerialException, OSError)):
                _read_until_dead(port)
        finally:
            port.close()
        signal_sim(mp, signal.SIGUSR1)
        mp.wait_for(r"^sim replugged lora0$")
        assert link.exists()
        lines = _read_frames(str(link), 4)
        assert all(decode(x).node in {"wl-1", "wx-1"} for x in lines[1:])
        mp.stop()
        stats = stats_of(mp)
    assert stats["serial.lora0.unplugs"] == 1


def test_injected_line_faults_are_exactly_what_a_reader_sees(tmp_path: Path) -> None:
    link = str(tmp_path / "ttyLORA")
    faults = "corrupt=0.08,truncate=0.06,bitflip=0.06,garbage=0.1,duplicate=0.08,reorder=0.08"
    with sim_process(
        "-s",
        scenario("serial-one"),
        "--serial-link",
        link,
        "--interval-s",
        "0.01",
        "--speed",
        "10",
        "--faults",
        faults,
    ) as mp:
        buf = b""
        fd = os.open(link, os.O_RDONLY | os.O_NOCTTY)
        try:
            while buf.count(b"\r\n") < 400:
                buf += os.read(fd, 65536)
            # Ask it to stop and keep reading meanwhile: the simulator lets a reader take
            # what is queued before it hangs the pty up (stopping first and reading after
            # lost the last frames, and any fault injected into them).
            signal_sim(mp, signal.SIGTERM)
            # Drain what is left until the simulator closes its end (EIO on a pty).
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
        finally:
            os.close(fd)
        mp.stop()
        stats = stats_of(mp)
    good, bad = [], 0
    for cand in split_stream(buf):
        try:
            good.append(decode(cand))
        except BadFrame:
            bad += 1
    injected = {
        k: stats.get(f"serial.lora0.{k}", 0)
        for k in ("corrupt", "truncate", "bitflip", "garbage", "duplicate", "reorder")
    }
    assert all(injected.values()), injected  # every kind happened
    assert bad == injected["corrupt"] + injected["truncate"] + injected["bitflip"]
    seqs = [f.seq for f in good]
    dupes = sum(c - 1 for c in Counter(seqs).values())
    assert dupes == injected["duplicate"]
    backwards = sum(1 for a, b in itertools.pairwise(seqs) if b < a)
    assert backwards == injected["reorder"]
    # Nothing but the injected faults is lost: every seq is seen or was faulted. Exactly so,
    # unless this reader fell so far behind (a loaded machine) that the simulated port's
    # buffer filled and its backlog was discarded, as a UART's would be: the sim says when.
    # Frames written before this reader opened the port may be gone (the first seqs).
    sent = stats["serial.lora0.frames"]
    seen = len(set(seqs)) + bad
    if stats.get("serial.lora0.backlog_flushes", 0) == 0:
        assert sent - (min(seqs) - 1) <= seen <= sent
    else:
        assert seen < sent


def test_sensor_dropouts_show_as_node_seq_gaps(tmp_path: Path) -> None:
    """A reading the sensor lost still used up its node seq: the gateway can count it."""
    link = str(tmp_path / "by-id" / "usb-sim-lora0")
    with sim_process(
        "-s", scenario("serial-two"), "--serial-link", link, "--interval-s", "0.05",
        "--speed", "20", "--sensor-faults", "dropouts=0.3",
    ):  # fmt: skip
        lines = _read_frames(link, 100)
    by_node: dict[str, list[int]] = {}
    for line in lines[1:]:  # the first may have started before the reader opened the port
        if line:
            f = decode(line)
            by_node.setdefault(f.node, []).append(f.seq)
    received = sum(len(s) for s in by_node.values())
    lost = sum(b - a - 1 for seqs in by_node.values() for a, b in itertools.pairwise(seqs))
    assert all(b > a for seqs in by_node.values() for a, b in itertools.pairwise(seqs))
    assert 0.15 <= lost / (lost + received) <= 0.45, (lost, received)
