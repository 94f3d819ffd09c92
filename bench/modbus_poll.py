"""Modbus RTU poll cycle with 16 devices on one bus, 2 of them dead.

A pymodbus RTU server plays 14 live slaves on one end of a socat pty pair; the gateway's
:class:`ModbusSource` polls all 16 addresses on the other end. Reported: bus transactions
per second, the cycle time (all live devices polled once), and each live device's observed
interval against its configured one: the dead ones must not stretch it beyond their own
timeout. Baseline: the same 14 live devices polled with no dead ones on the bus.

    python bench/modbus_poll.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._gateway_common import table
from bench._report import report
from gateway.records import Record
from gateway.sources.modbus.config import ModbusDeviceConfig, ModbusSourceConfig
from gateway.sources.modbus.source import ModbusSource

LIVE = list(range(1, 15))
DEAD = [30, 31]
REGS = [315, 272, 1500, 65, 30, 12, 80]


class Intervals:
    """Counts records and keeps, per device, the times its polls were committed."""

    def __init__(self) -> None:
        self.seen: dict[str, list[float]] = {}

    async def submit(self, records: Sequence[Record]) -> None:
        now = time.monotonic()
        for d in {r.device for r in records}:
            self.seen.setdefault(d, []).append(now)

    def reject(self, source: str, reason: str, raw: bytes | str) -> None:
        raise AssertionError(f"unexpected reject {reason}")


@contextlib.asynccontextmanager
async def pty_pair():  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as d:
        a, b = f"{d}/a", f"{d}/b"
        proc = subprocess.Popen(
            ["socat", "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert proc.stderr is not None
        for line in proc.stderr:
            if b"starting data transfer loop" in line:
                break
        try:
            yield a, b
        finally:
            proc.terminate()
            proc.wait()
            proc.stderr.close()


async def run_once(
    addresses: list[int], interval: float, timeout: float, seconds: float
) -> dict[str, float]:
    from pymodbus import FramerType
    from pymodbus.datastore import (
        ModbusDeviceContext,
        ModbusSequentialDataBlock,
        ModbusServerContext,
    )
    from pymodbus.server import ModbusSerialServer

    async with pty_pair() as (a, b):
        # Dead slaves are served but their answers dropped: silence on the wire (pymodbus
        # 3.16 answers unknown addresses with an exception despite ignore_missing_devices).
        ctx = ModbusServerContext(
            devices={x: ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, REGS))
                     for x in LIVE + DEAD},
            single=False,
        )  # fmt: skip

        def drop_dead(sending: bool, data: bytes) -> bytes:
            return b"" if sending and data and data[0] in DEAD else data

        server = ModbusSerialServer(ctx, framer=FramerType.RTU, port=a, baudrate=9600,
                                    trace_packet=drop_dead)  # fmt: skip
        srv = asyncio.create_task(server.serve_forever())
        while not server.is_active():
            await asyncio.sleep(0.01)
        cfg = ModbusSourceConfig(
            port=b, inter_frame_delay_s=0.005, dead_after=2,
            devices=[ModbusDeviceConfig(id=f"d{x}", profile="soil-npk-7in1", address=x,
                                        interval_s=interval, timeout_s=timeout, retries=1)
                     for x in addresses],
        )  # fmt: skip
        src = ModbusSource(cfg)
        sink = Intervals()
        task = asyncio.create_task(src.run(sink))
        t0 = time.process_time()
        await asyncio.sleep(seconds)
        cpu = time.process_time() - t0
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.shutdown()
        srv.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await srv
    gaps = []
    for x in LIVE:
        ts = sink.seen.get(f"d{x}", [])
        # Skip the first poll (start-up stagger); the rest is the steady cadence.
        gaps += [b2 - b1 for b1, b2 in itertools.pairwise(ts[1:])]
    polls = src.state.counters.get("polls", 0)
    dead_timeouts = sum(int(src.state.devices[f"d{x}"]["timeouts"] or 0) for x in addresses
                        if x in DEAD)  # fmt: skip
    dead_polls = sum(int(src.state.devices[f"d{x}"]["polls"] or 0) for x in addresses
                     if x in DEAD)  # fmt: skip
    return {
        "tx_per_s": polls / seconds,
        "gap_mean": statistics.mean(gaps) if gaps else float("nan"),
        "gap_p95": sorted(gaps)[int(len(gaps) * 0.95)] if gaps else float("nan"),
        "gap_max": max(gaps) if gaps else float("nan"),
        "cycles": min(len(sink.seen.get(f"d{x}", [])) for x in LIVE),
        "dead_polls": dead_polls,
        "dead_timeouts": dead_timeouts,
        "cpu_s": cpu,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    seconds = 12.0 if args.quick else 40.0
    interval, timeout = 1.0, 0.2
    base = asyncio.run(run_once(LIVE, interval, timeout, seconds))
    mixed = asyncio.run(run_once(LIVE + DEAD, interval, timeout, seconds))
    rows = []
    for label, r in (("14 live (baseline)", base), ("14 live + 2 dead", mixed)):
        rows += [
            (f"{label}: transactions", f"{r['tx_per_s']:.1f}", "polls/s"),
            (f"{label}: live interval mean", f"{r['gap_mean']:.3f}", f"s (configured {interval})"),
            (f"{label}: live interval p95", f"{r['gap_p95']:.3f}", "s"),
            (f"{label}: live interval max", f"{r['gap_max']:.3f}", f"s (dead timeout {timeout})"),
            (
                f"{label}: dead-device polls",
                f"{r['dead_polls']}",
                f"in {seconds:.0f} s ({r['dead_timeouts']} timed out)",
            ),
            (f"{label}: CPU", f"{r['cpu_s'] / seconds * 100:.1f}", "% of one core"),
        ]
    table(f"modbus_poll: 16 addresses over a pty RTU link, {seconds:.0f} s per run", rows)
    report("modbus_poll", "live_interval_p95_s", mixed["gap_p95"], "s",
           baseline=base["gap_p95"], higher_is_better=False)  # fmt: skip
    report("modbus_poll", "live_interval_max_s", mixed["gap_max"], "s",
           baseline=base["gap_max"], higher_is_better=False)  # fmt: skip
    report("modbus_poll", "transactions_per_s", mixed["tx_per_s"], "polls/s",
           baseline=base["tx_per_s"])  # fmt: skip


if __name__ == "__main__":
    main()
