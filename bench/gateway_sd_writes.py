"""What the gateway writes to its SD card, how often it fsyncs and wakes, at a hamlet's load.

    python bench/gateway_sd_writes.py [--quick [--with-fast]] [--windows 0.2,default] [--seconds N]
        [--idle-seconds N] [--code NAME=DIR ...] [--time-scale K]

``--code`` compares code in the same run: each load runs once per checkout given (the first
is the baseline of the others; ``NAME=.`` is this one), prefilled by that checkout's code.

Runs the real ``hamlet gateway run`` process against real Mosquitto and a real server on
this machine, with its data directory on a block device (``--data-root``, default
/var/tmp: ``write_bytes`` in ``/proc/<pid>/io`` counts only what reaches a block device's
page cache, so a tmpfs would read 0). For each durability window it offers two loads:

* **hamlet**: 45 field sensors at 1 message a minute with 4 readings each, a radio cluster
  of 8 nodes at 1 message a minute with 2 readings, one kiosk sending an event every 20 s,
  the gateway's own heartbeat every 60 s, and one burst (a node's backfill of 200 messages)
  halfway through; about 3.3 readings a second.
* **1,000 readings/s**: one reading a message, QoS1.

Figures, all of the gateway process (every thread) over the measured span only (start-up
excluded): bytes written to the block device per committed record and projected per day
and year, WAL only and with the checkpoint of the span's WAL frames. A span of minutes holds
no checkpoint at a hamlet's load (SQLite checkpoints every ``wal_autocheckpoint`` frames),
yet each page written to the WAL is written once more to the database file then: the bench
stops the gateway cleanly at the end of the span, SQLite checkpoints the WAL as it closes
(only the gateway can: it holds the file exclusively), and ``wait4`` gives what the process
wrote until it was gone. Also, as a model to compare with, the 4 KiB blocks of the database
file that the distinct pages of the span's WAL frames dirty (read from the ``-wal`` file),
and that model for a checkpoint every N frames. Also fsync/fdatasync calls per hour (counted
by ``perf stat``, when installed, without stopping the process), wake-ups per hour
(voluntary context switches, in all and by thread) and CPU-seconds per hour.
The baseline is the same load with the 200 ms group-commit window every commit used before.

``--time-scale K`` runs the hamlet K times faster: the same messages in 1/K of the time, the
durability window and the heartbeat interval divided by K, so every commit holds what it
holds in the field and a span of minutes covers hours of a hamlet, several checkpoints
included (measured in ``write_bytes``, not modelled). Bytes per reading and per hamlet-day
and fsyncs per hamlet-hour keep their meaning; wake-ups and CPU per hour do not (paho's
keepalive is not scaled) and are not printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt
import tomli_w
from paho.mqtt.enums import CallbackAPIVersion

from bench._gateway_common import (
    FIELD_METRICS,
    HAMLET,
    Tee,
    add_gateway,
    field_value,
    mosquitto,
    proc_cpu_seconds,
    server,
    table,
)
from bench._report import report
from bench.gateway_throughput import status
from gateway.buffer.schema import DB_NAME

BENCH = "gateway_sd_writes"


BLOCK = 4096  # what write_bytes counts per page-cache page dirtied


@dataclass(frozen=True)
class Wal:
    """The committed frames of a ``-wal`` file, read from beside the running gateway (the
    exclusive lock is SQLite's, the file itself is readable): which pages, in order."""

    salt: bytes  # changes when a checkpoint restarts the WAL from its start
    page_size: int
    pages: tuple[int, ...]  # page number of each committed frame, in WAL order
    commits: tuple[int, ...] = ()  # frame counts at which a transaction ended

    @classmethod
    def read(cls, db: Path) -> Wal:
        try:
            raw = (db.parent / (db.name + "-wal")).read_bytes()
        except FileNotFoundError:
            return cls(b"", 0, ())
        if len(raw) < 32 or raw[:4] not in (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83"):
            return cls(b"", 0, ())
        page_size = int.from_bytes(raw[8:12], "big") or 65536
        salt = raw[16:24]
        pages: list[int] = []
        commits: list[int] = []
        off = 32
        while off + 24 + page_size <= len(raw) and raw[off + 8 : off + 16] == salt:
            pages.append(int.from_bytes(raw[off : off + 4], "big"))
            if int.from_bytes(raw[off + 4 : off + 8], "big"):  # a commit frame
                commits.append(len(pages))
            off += 24 + page_size
        done = commits[-1] if commits else 0
        return cls(salt, page_size, tuple(pages[:done]), tuple(commits))

    def since(self, start: Wal) -> tuple[int, ...]:
        """Frames written after ``start``; all of them when a checkpoint restarted the WAL
        meanwhile (that checkpoint's writes are then in ``write_bytes`` already)."""
        return self.pages[len(start.pages) :] if self.salt == start.salt else self.pages

    def transactions_since(self, start: Wal) -> int:
        """Transactions committed after ``start`` (since the restart, if the WAL restarted)."""
        first = len(start.pages) if self.salt == start.salt else 0
        return sum(1 for end in self.commits if end > first)

    def checkpoint_bytes(self, pages: tuple[int, ...]) -> int:
        """What checkpointing these frames writes to the database file: each distinct page
        once, and the kernel counts the 4 KiB blocks of the file they dirty."""
        return len({(p - 1) * self.page_size // BLOCK for p in set(pages)}) * BLOCK

    def checkpoints_every(self, start: Wal, frames: int) -> int:
        """The same, had SQLite checkpointed after the first commit that brought the WAL to
        ``frames`` frames (``wal_autocheckpoint``): a page rewritten by many commits between
        two checkpoints is written to the database file once per checkpoint."""
        first = len(start.pages) if self.salt == start.salt else 0
        total, begin = 0, first
        for end in self.commits:
            if end > begin and end - begin >= frames:
                total += self.checkpoint_bytes(self.pages[begin:end])
                begin = end
        return total + self.checkpoint_bytes(self.pages[begin:])


class WalRestarts(threading.Thread):
    """Counts the checkpoints that restart the WAL (its salt changes), from its 32-byte
    header every second: the exclusive lock is SQLite's, the file is readable."""

    def __init__(self, db: Path, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.wal = db.parent / (db.name + "-wal")
        self.stop_event = stop
        self.count = 0
        self._last = self._salt()

    def _salt(self) -> bytes:
        try:
            with self.wal.open("rb") as f:
                return f.read(32)[16:24]
        except FileNotFoundError:
            return b""

    def poll(self) -> None:
        now = self._salt()
        if now and self._last and now != self._last:
            self.count += 1
        self._last = now or self._last  # a truncated WAL has no header until the next write

    def run(self) -> None:
        while not self.stop_event.wait(1.0):
            self.poll()


# Checkpoint intervals the bench also models from the span's frames (wal_autocheckpoint).
CKPT_EVERY: Final = (50, 100, 200, 400, 800, 1334)


def io_write_bytes(pid: int) -> int:
    for ln in Path(f"/proc/{pid}/io").read_text().splitlines():
        if ln.startswith("write_bytes:"):
            return int(ln.split()[1])
    raise RuntimeError("no write_bytes in /proc/<pid>/io")


# What a thread sleeps in (x86-64 and aarch64 syscall numbers): Python 3.11 gives threads no
# OS names, so the bench tells them apart by where they wait.
_WAITS: dict[str, dict[int, str]] = {
    "x86_64": {7: "poll", 23: "select", 202: "futex", 232: "epoll_wait", 270: "pselect6",
               271: "ppoll", 281: "epoll_pwait", 0: "read", 230: "clock_nanosleep"},
    "aarch64": {73: "ppoll", 72: "pselect6", 98: "futex", 22: "epoll_pwait", 63: "read",
                115: "clock_nanosleep"},
}  # fmt: skip


def wakeups(pid: int) -> dict[int, int]:
    """Voluntary context switches per thread id: each is a sleep that ended."""
    out: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # a thread that just ended
        m = re.search(r"^voluntary_ctxt_switches:\s+(\d+)", text, re.M)
        out[int(task.name)] = int(m.group(1)) if m else 0
    return out


def thread_label(pid: int, tid: int) -> str:
    """``main`` for the event loop's thread, else what the thread waits in."""
    if tid == pid:
        return "main (event loop)"
    try:
        nr = int(Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return f"thread {tid}"
    name = _WAITS.get(os.uname().machine, {}).get(nr, f"syscall {nr}")
    return f"thread waiting in {name}"


def wake_by_thread(pid: int, before: dict[int, int], after: dict[int, int]) -> dict[str, int]:
    """Wake-ups over the span by thread label (a thread that began meanwhile counts from 0)."""
    by: dict[str, int] = {}
    for tid, n in after.items():
        label = thread_label(pid, tid)
        by[label] = by.get(label, 0) + n - before.get(tid, 0)
    return dict(sorted(by.items(), key=lambda kv: -kv[1]))


def stop_gateway(proc: subprocess.Popen[str]) -> int:
    """Stop the gateway cleanly (SIGTERM) and reap it with ``wait4``: the bytes it wrote to
    block devices over its whole life, the exit included (``ru_oublock`` counts 512-byte
    units of ``write_bytes``)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_oublock * 512
        if time.monotonic() > deadline:
            proc.kill()
            deadline = float("inf")
        time.sleep(0.1)


def fs_of(path: Path) -> str:
    out = subprocess.run(
        ["df", "--output=fstype,source", str(path)], capture_output=True, text=True, check=False
    )
    lines = out.stdout.split("\n")
    return " ".join(lines[1].split()) if len(lines) > 1 else "?"


class FsyncCount:
    """fsync/fdatasync calls of a running process (every thread), counted by the kernel.

    ``perf stat -p`` counts the syscall tracepoints without stopping the process. Tracing
    with strace would: even with ``--seccomp-bpf -f`` the gateway's MQTT thread then woke
    about 50 times as often (measured 100 vs 2 wake-ups a second under the same load), so
    the wake-ups and CPU measured meanwhile would not be the gateway's own.
    """

    EVENTS = "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync"

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        if shutil.which("perf"):
            self.proc = subprocess.Popen(
                ["perf", "stat", "-x,", "-o", str(out), "-e", self.EVENTS, "-p", str(pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def stop(self) -> int | None:
        """The count since start; None without perf or when it could not count."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(10)
        total = 0
        counted = False
        for ln in self.out.read_text().splitlines():
            parts = ln.split(",")
            if len(parts) > 2 and parts[2].startswith("syscalls:") and parts[0].isdigit():
                total += int(parts[0])
                counted = True
        return total if counted else None


@dataclass
class Publisher:
    """QoS1 publisher (paho, its own network thread)."""

    port: int

    def __post_init__(self) -> None:
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"load-{time.monotonic_ns()}")
        self.c.max_inflight_messages_set(2000)
        self.c.max_queued_messages_set(0)
        self.c.connect("127.0.0.1", self.port)
        self.c.loop_start()
        self.seq: dict[str, int] = {}
        self.infos: list[mqtt.MQTTMessageInfo] = []
        self.records = 0  # records the gateway will commit for what was published
        self.bad_sent = 0  # messages the gateway will dead-letter

    def telemetry(self, dev: str, readings: dict[str, float]) -> None:
        self.seq[dev] = self.seq.get(dev, 0) + 1
        body = {"id": dev, "seq": self.seq[dev], "readings": readings}
        self.records += len(readings)
        self.infos.append(self.c.publish(f"hamlet/{dev}/telemetry", json.dumps(body), qos=1))

    def event(self, dev: str, name: str) -> None:
        body = json.dumps({"id": dev, "event": name, "attrs": {"page": "salinity"}})
        self.records += 1
        self.infos.append(self.c.publish(f"hamlet/{dev}/event", body, qos=1))

    def bad(self, dev: str) -> None:
        """A message no reader can parse (a rogue or broken LAN device): a dead letter."""
        self.bad_sent += 1
        self.infos.append(self.c.publish(f"hamlet/{dev}/telemetry", b"\xff not json", qos=1))

    def close(self) -> None:
        for info in self.infos:
            info.wait_for_publish(60)
        self.c.disconnect()
        self.c.loop_stop()


def hamlet_load(pub: Publisher, seconds: float, stop: threading.Event, scale: float = 1.0) -> None:
    """The schedule above, spread evenly (devices are not synchronised); ``seconds`` of a
    hamlet, played ``scale`` times faster."""
    rng = random.Random(7)
    events: list[tuple[float, str, int]] = []
    for i in range(45):
        off = rng.uniform(0, 60)
        events += [(off + 60 * k, "sensor", i) for k in range(int(seconds / 60) + 1)]
    for i in range(8):
        off = rng.uniform(0, 60)
        events += [(off + 60 * k, "radio", i) for k in range(int(seconds / 60) + 1)]
    events += [(rng.uniform(0, 20) + 20 * k, "kiosk", 0) for k in range(int(seconds / 20) + 1)]
    events.append((seconds / 2, "burst", 0))
    events = sorted(e for e in events if e[0] < seconds)
    t0 = time.monotonic()
    for n, (at, kind, i) in enumerate(events, 1):
        left = t0 + at / scale - time.monotonic()
        if left > 0 and stop.wait(left):
            return
        if kind == "sensor":
            pub.telemetry(f"sensor-{i:02d}", {m: field_value(m, n, rng) for m in FIELD_METRICS})
        elif kind == "radio":
            pub.telemetry(f"radio-{i}", {"water_level": field_value("water_level", n, rng),
                                         "battery": field_value("battery", n, rng)})  # fmt: skip
        elif kind == "kiosk":
            pub.event("kiosk-01", "lookup")
        else:
            for k in range(200):
                pub.telemetry("sensor-backfill", {"salinity": field_value("salinity", k, rng)})


def bad_load(pub: Publisher, rate: float, stop: threading.Event) -> None:
    """A device sending nothing but bad messages, ``rate`` a second, until ``stop``."""
    t0 = time.monotonic()
    i = 0
    while not stop.is_set():
        due = int((time.monotonic() - t0) * rate)
        while i < due:
            pub.bad("rogue-1")
            i += 1
        stop.wait(0.005)


def steady_load(pub: Publisher, seconds: float, rate: float, stop: threading.Event) -> None:
    t0 = time.monotonic()
    i = 0
    while not stop.is_set():
        now = time.monotonic() - t0
        if now >= seconds:
            return
        due = int(now * rate)
        while i < due:
            pub.telemetry(f"node-{i % 50:02d}", {"salinity": round(1.0 + (i % 97) / 1000, 3)})
            i += 1
        time.sleep(0.005)


PREFILL = """
import asyncio, sys, time
from pathlib import Path
from gateway.buffer import DurableBuffer, NewRecord
from gateway.buffer.config import BufferConfig
from gateway.buffer.identity import Receipt, receipt_key
from hamlet.contract import RecordKind

async def fill(data: Path, n: int) -> None:
    cfg = BufferConfig(durability_window_s=0.01)
    async with DurableBuffer(cfg, data, "prefill") as buf:
        now = int(time.time() * 1000)
        for g in range(0, n, 2000):
            recs = [
                NewRecord(RecordKind.READING, f"old-{i % 45}", "salinity", 1.0, now, 0,
                          time.monotonic_ns(), receipt=Receipt(receipt_key("old", i)))
                for i in range(g, min(g + 2000, n))
            ]
            await buf.append(recs)
        while recs_out := (await buf.read_batch(0, None, 100_000, hold_pending=False))[0]:
            await buf.confirm([r.seq for r in recs_out], [])

asyncio.run(fill(Path(sys.argv[1]), int(sys.argv[2])))
"""


def code_env(root: Path | None) -> dict[str, str]:
    """Environment that runs the gateway from ``root`` (another checkout), or from this one."""
    env = dict(os.environ, HAMLET_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    if root is not None:
        env["PYTHONPATH"] = str(root.resolve())
    return env


def prefill(data: Path, n: int, root: Path | None) -> None:
    """A buffer as after hours of running: ``n`` records stored (with their receipts) and
    uploaded, so the receipt window is full, as it is in the field after a day. Written by
    the code under test (its page size and layout), in a process of its own."""
    subprocess.run(
        [sys.executable, "-c", PREFILL, str(data), str(n)],
        env=code_env(root),
        cwd=root or Path(__file__).resolve().parents[1],
        check=True,
    )


def run(
    tmp: Path,
    data_root: Path,
    port: int,
    srv: Any,
    window_s: float,
    load: str,
    seconds: float,
    receipts: int,
    code: tuple[str, Path | None] = ("", None),
    idle_s: float = 0.0,
    scale: float = 1.0,
    hostile: float = 0.0,
) -> dict[str, Any]:
    name, root = code
    gw_id = f"gw-sd-{load.replace('/', '')}-{str(window_s).replace('.', '-')}{name}"
    token = add_gateway(srv, gw_id)
    data = Path(tempfile.mkdtemp(prefix="hamlet-sd-", dir=data_root))
    if receipts:
        prefill(data, receipts, root)
    conf = {
        "id": gw_id,
        "data_dir": str(data),
        "heartbeat_interval_s": 60 / scale,
        "clock": {"sync": "always"},
        "buffer": {"durability_window_s": window_s / scale},
        "uplink": {"url": srv.url, "token": token},
        "sources": {
            "mqtt": [
                {
                    "name": "mqtt",
                    "host": "127.0.0.1",
                    "port": port,
                    "client_id": gw_id,
                    "topics": ["hamlet/+/telemetry", "hamlet/+/event"],
                }
            ]
        },
    }
    path = tmp / f"{gw_id}.toml"
    path.write_text(tomli_w.dumps(conf))
    proc = subprocess.Popen(
        [*HAMLET, "gateway", "run", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=code_env(root),
        cwd=root,
    )
    tee = Tee(proc.stdout)
    tee.start()
    sock = data / "control.sock"
    stop = threading.Event()
    pid = proc.pid
    try:
        while not any("running" in ln for ln in tee.lines):
            if proc.poll() is not None:
                raise RuntimeError("\n".join(tee.lines))
            time.sleep(0.05)
        time.sleep(2)  # start-up writes (schema, first heartbeat) are not the steady state
        pub = Publisher(port)
        st0 = status(sock)
        fsync_count = FsyncCount(pid, tmp / f"{gw_id}.perf")
        db = data / DB_NAME
        wal0 = Wal.read(db)
        restarts = WalRestarts(db, stop)
        restarts.start()
        w0, cpu0, wake0 = io_write_bytes(pid), proc_cpu_seconds(pid), wakeups(pid)
        t0 = time.monotonic()
        rogue_stop = threading.Event()
        rogue = threading.Thread(target=bad_load, args=(pub, hostile * scale, rogue_stop))
        if hostile:
            rogue.start()
        if load == "hamlet":
            hamlet_load(pub, seconds, stop, scale)
        else:
            steady_load(pub, seconds, 1000.0, stop)
        rogue_stop.set()
        if hostile:
            rogue.join()
        # The span ends when everything offered is committed and uploaded (same for both).
        pub.close()
        want = int(st0["counters"]["committed"]) + pub.records  # type: ignore[call-overload]
        want_dead = int(st0["counters"]["dead_lettered"]) + pub.bad_sent  # type: ignore[call-overload]
        deadline = time.monotonic() + 120 + window_s
        while True:
            st = status(sock)
            done = int(st["counters"]["committed"])  # type: ignore[call-overload]
            dead = int(st["counters"]["dead_lettered"])  # type: ignore[call-overload]
            if done >= want and dead >= want_dead and st["buffer"]["depth"] == 0:  # type: ignore[call-overload]
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway did not commit and upload {want}: {st}")
            # Each status query wakes the gateway's loop and buffer thread, and they count as
            # the gateway's wake-ups: ask rarely while waiting for the last window.
            time.sleep(2)
        took = time.monotonic() - t0
        written = io_write_bytes(pid) - w0
        wal1 = Wal.read(db)
        span_frames = wal1.since(wal0)
        checkpoints = restarts.count
        cpu = proc_cpu_seconds(pid) - cpu0
        wake1 = wakeups(pid)
        wake_by = wake_by_thread(pid, wake0, wake1)
        wake = sum(wake_by.values())
        fsyncs = fsync_count.stop()
        records = int(st["counters"]["committed"]) - int(st0["counters"]["committed"])  # type: ignore[index]
        # Then a quiet hamlet (nothing published, nobody asks for status): what still wakes
        # the gateway once the load has been committed and uploaded.
        quiet0 = wakeups(pid)
        time.sleep(idle_s)
        quiet = wake_by_thread(pid, quiet0, wakeups(pid))
        # The checkpoint, measured: SQLite checkpoints the WAL when the gateway closes its
        # buffer on a clean stop, and only this process can (it holds the file exclusively).
        # Linux keeps counting write_bytes until the process is gone and hands the total to
        # wait4(); what the exit wrote is that total less the count just before SIGTERM.
        w_end = io_write_bytes(pid)
        wal_end = Wal.read(db)
        exit_written = stop_gateway(proc) - w_end
        return {
            "code": name,
            "window": window_s,
            "load": load,
            "hostile": hostile,
            "bad": pub.bad_sent,
            "took": took,
            "records": records,
            "written": written,
            "cpu": cpu,
            "wake": wake,
            "wake_by": wake_by,
            "idle_s": idle_s,
            "quiet": quiet,
            "fsyncs": fsyncs,
            "fs": fs_of(data),
            "span_frames": len(span_frames),
            "span_txns": wal1.transactions_since(wal0),
            "span_restarted": wal1.salt != wal0.salt,
            "checkpoints": checkpoints,
            "scale": scale,
            "ckpt": wal1.checkpoint_bytes(span_frames),
            "every": {k: wal1.checkpoints_every(wal0, k) for k in CKPT_EVERY},
            "exit_written": exit_written,
            "exit_predicted": wal_end.checkpoint_bytes(wal_end.pages),
            "startup_frames": len(wal0.pages) if wal1.salt == wal0.salt else 0,
        }
    finally:
        stop.set()
        if proc.returncode is None:
            stop_gateway(proc)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="about 2 minutes")
    ap.add_argument("--with-fast", action="store_true", help="--quick: also 1,000 readings/s")
    ap.add_argument("--windows", default="0.2,default", help="durability windows, s")
    ap.add_argument(
        "--seconds", type=float, help="hamlet span per window (hamlet time: see --time-scale)"
    )
    ap.add_argument(
        "--idle-seconds",
        type=float,
        default=0.0,
        help="after the load, measure the wake-ups of a quiet hamlet over this span",
    )
    ap.add_argument("--data-root", default="/var/tmp", help="a directory on a block device")
    ap.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also run the gateway from another checkout DIR (same loads, same run; the "
        "first one given is the baseline of the others); 'NAME=.' is this checkout",
    )
    ap.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="play the hamlet this many times faster (window and heartbeat too; at most 60)",
    )
    ap.add_argument(
        "--hostile",
        type=float,
        default=0.0,
        metavar="RATE",
        help="hamlet load: also a device sending RATE bad messages a (hamlet) second",
    )
    ap.add_argument(
        "--receipts",
        type=int,
        default=None,
        help="records stored and uploaded before the run (default: the receipt window)",
    )
    args = ap.parse_args()
    if not 1.0 <= args.time_scale <= 60.0:
        ap.error("--time-scale must be between 1 and 60 (the heartbeat interval is >= 1 s)")
    from gateway.buffer.config import BufferConfig

    default_w = BufferConfig().durability_window_s
    receipts = BufferConfig().receipt_window if args.receipts is None else args.receipts
    windows = [default_w if w == "default" else float(w) for w in args.windows.split(",")]
    hamlet_s = args.seconds or (30.0 if args.quick else 600.0)
    fast_s = 60.0
    # --quick (about 2 minutes): the hamlet load only, a 30 s span; --with-fast adds 1,000/s.
    loads = [("hamlet", hamlet_s)]
    if not args.quick or args.with_fast:
        loads.append(("1000/s", 8.0 if args.quick else fast_s))
    codes: list[tuple[str, Path | None]] = [("", None)]
    if args.code:
        codes = []
        for spec in args.code:
            name, _, d = spec.partition("=")
            codes.append((f"-{name}", None if d in ("", ".") else Path(d)))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        with mosquitto(tmp) as broker, server(tmp) as srv:
            for w in windows:
                for load, span in loads:
                    for code in codes:
                        results.append(
                            run(tmp, Path(args.data_root), broker.port, srv, w, load, span,
                                receipts, code, args.idle_seconds,
                                args.time_scale if load == "hamlet" else 1.0,
                                args.hostile if load == "hamlet" else 0.0)
                        )  # fmt: skip
    rows: list[tuple[str, str, str]] = [
        ("data directory on", results[0]["fs"], ""),
        ("records stored and uploaded before each run", f"{receipts:,}", "receipt window full"),
    ]
    base: dict[str, dict[str, Any]] = {}
    for r in results:
        recs = max(r["records"], 1)
        wal_per = r["written"] / recs
        hamlet_s = r["took"] * r["scale"]  # the hamlet's time the span covered
        wal_day = r["written"] / hamlet_s * 86400
        # The real write cost: what the span wrote plus the checkpoint of its frames (each
        # page the span wrote to the WAL is written once more to the database file), as
        # measured at the clean stop: a little more than the span's own (the stop's last
        # delete and seq state, the few start-up frames), never less.
        total = r["written"] + r["exit_written"]
        per = total / recs
        model = r["written"] + r["ckpt"]
        day = total / hamlet_s * 86400
        h = 3600 / hamlet_s
        scaled = r["scale"] != 1.0
        tag = (
            f"window {r['window']:g} s, {r['load']}"
            + (f" + {r['hostile']:g} bad msg/s" if r["hostile"] else "")
            + (f" [{r['code'][1:]}]" if r["code"] else "")
            + (f", {r['scale']:g}× time" if scaled else "")
        )
        fs = "n/a (no perf)" if r["fsyncs"] is None else f"{r['fsyncs'] * h:,.0f}"
        writes = [
            ("  WAL frames in the span", f"{r['span_frames']:,}",
             f"since the last of {r['checkpoints']} checkpoints in the span (measured in "
             "write_bytes)" if r["span_restarted"] else
             f"no checkpoint in it; {r['startup_frames']} start-up frames before"),
            ("  transactions in them", f"{r['span_txns']:,}",
             f"{r['span_frames'] / max(r['span_txns'], 1):.1f} frames each"
             + ("" if r["span_restarted"] else
                f", {recs / max(r['span_txns'], 1):.0f} records each")),
            ("  bytes written per record, WAL only", f"{wal_per:,.0f}", "write_bytes / committed"),
            ("  bytes written per record, WAL + checkpoint", f"{per:,.0f}",
             f"+ {r['exit_written'] / recs:,.0f}: the clean stop, measured (wait4)"),
            ("    model: + the span's frames checkpointed", f"{model / recs:,.0f}",
             "4 KiB blocks their distinct pages dirty" + (
                 "; frames since the span's last checkpoint" if r["span_restarted"] else "")),
            ("  projected MB/day, WAL only", f"{wal_day / 1e6:,.1f}",
             f"{wal_day * 365 / 1e9:,.1f} GB/year"),
            ("  projected MB/day, WAL + checkpoint", f"{day / 1e6:,.1f}",
             f"{day * 365 / 1e9:,.1f} GB/year"),
            *[(f"    model: a checkpoint every {k:,} frames", f"{(r['written'] + b) / recs:,.0f}",
               f"B/record; {(r['written'] + b) / hamlet_s * 0.0864:,.1f} MB/day")
              for k, b in r["every"].items()
              if k < r["span_frames"] and not r["span_restarted"]],
            ("  clean stop: written at exit (wait4)", f"{r['exit_written']:,}",
             f"bytes; model of its checkpoint: {r['exit_predicted']:,}"),
        ]  # fmt: skip
        rows += [
            (
                f"{tag}: records",
                f"{r['records']:,}",
                f"in {r['took']:.0f} s"
                + (f" ({hamlet_s / 3600:.1f} hamlet-hours)" if scaled else ""),
            ),
            *writes,
            *(
                [
                    (
                        "  bad messages dead-lettered",
                        f"{r['bad']:,}",
                        "each acknowledged after its dead letter was committed",
                    )
                ]
                if r["hostile"]
                else []
            ),
            ("  fsyncs per hour", fs, "per hamlet-hour" if scaled else ""),
        ]
        if not scaled:  # paho's keepalive and the status polls are not time-scaled
            rows += [
                ("  wake-ups per hour", f"{r['wake'] * h:,.0f}", "voluntary ctxt switches"),
                *[
                    (f"    {label}", f"{n * h:,.0f}", "per hour")
                    for label, n in r["wake_by"].items()
                    if n
                ],
                ("  CPU-seconds per hour", f"{r['cpu'] * h:,.1f}", ""),
            ]
        if r["idle_s"]:
            qh = 3600 / r["idle_s"]
            rows += [
                ("  quiet hamlet: wake-ups per hour", f"{sum(r['quiet'].values()) * qh:,.0f}",
                 f"nothing published for {r['idle_s']:g} s"),
                *[(f"    {label}", f"{n * qh:,.0f}", "per hour")
                  for label, n in r["quiet"].items()],
            ]  # fmt: skip
        key = r["load"]
        if r["code"]:  # variants: the first code given is the baseline, window by window
            key = f"{r['load']}, window {r['window']:g} s"
        if key not in base:
            base[key] = r
        b = base[key]
        b_per = (b["written"] + b["ckpt"]) / max(b["records"], 1)
        what = f"{r['load']}, window {r['window']:g} s{' ' + r['code'][1:] if r['code'] else ''}"
        what += f", + {r['hostile']:g} bad msg/s" if r["hostile"] else ""
        what += f", {r['scale']:g}× time" if scaled else ""
        if b is not r:
            rows.append(
                (
                    "  ratio to the baseline run",
                    f"{b_per / max(per, 1e-9):.2f}×",
                    f"{b_per:,.0f} B before",
                )
            )
        report(BENCH, f"bytes/record, WAL only ({what})", round(wal_per), "B",
               higher_is_better=False)  # fmt: skip
        report(BENCH, f"MB/day, WAL only ({what})", round(wal_day / 1e6, 1), "MB",
               higher_is_better=False)  # fmt: skip
        report(BENCH, f"bytes/record ({what})", round(per), "B",
               baseline=b_per if b is not r else None, higher_is_better=False,
               floor="<= 300 B" if key == "hamlet" else None)  # fmt: skip
        report(BENCH, f"MB/day ({what})", round(day / 1e6, 1), "MB",
               higher_is_better=False, floor="<= 100 MB" if key == "hamlet" else None)  # fmt: skip
        if not scaled:
            report(BENCH, f"CPU-s/hour ({what})", round(r["cpu"] * h, 1),
                   "s", higher_is_better=False)  # fmt: skip
    table("Gateway disk writes (" + ("quick" if args.quick else "full") + ")", rows)


if __name__ == "__main__":
    main()
