"""Serial source at line rate: frames/s committed and frame -> commit latency (p50, p99).

A real socat pty pair, the real :class:`SerialSource`, the real pipeline and SQLite buffer
with its default group-commit window (200 ms). A writer thread plays a concentrator sending
frames back to back at 115,200 baud (pacing the pty to the baud rate, which a pty does not do
by itself). Each frame carries its index in the node time, so the committed record (seen
through the pipeline's tail, i.e. after commit) names the frame it came from.

The baseline, measured in the same run, is the line itself: frames/s offered at the baud rate.
The ratio committed/offered is 1.0 when the reader keeps up.

    python bench/serial_rate.py [--quick] [--seconds S] [--baud B] [--code-root DIR]

``--code-root /work/main`` runs the same measurement against another checkout's gateway
code (the "before" figure).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BASE_T = 1_764_309_600.0  # node time of frame 0; frame i carries BASE_T + i / 1000


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--baud", type=int, default=115_200)
    ap.add_argument("--readings", type=int, default=1, choices=(1, 2, 3))
    ap.add_argument("--code-root", type=Path, default=None)
    return ap.parse_args()


ARGS = _args()
sys.path.insert(0, str(ROOT))
if ARGS.code_root is not None:
    sys.path.insert(0, str(ARGS.code_root.resolve()))

from bench._gateway_common import table  # noqa: E402
from bench._report import report  # noqa: E402
from gateway.buffer import DurableBuffer  # noqa: E402
from gateway.buffer.config import BufferConfig  # noqa: E402
from gateway.clock import Clock, ClockConfig  # noqa: E402
from gateway.pipeline import Pipeline  # noqa: E402
from gateway.sources.base import SourceStatus  # noqa: E402
from gateway.sources.serial.config import SerialSourceConfig  # noqa: E402
from gateway.sources.serial.protocol import encode_frame  # noqa: E402
from gateway.sources.serial.source import SerialSource  # noqa: E402
from tests.support.pty import open_pty_pair  # noqa: E402

READINGS = dict(
    list({"water_level": 1.234, "salinity": 2.35, "water_temp": 29.4}.items())[: ARGS.readings]
)


def _frame(i: int) -> bytes:
    return encode_frame(f"n-{i % 20}", i // 20, BASE_T + i / 1000, READINGS)


class Writer(threading.Thread):
    """The concentrator: frames back to back, paced to the baud rate (10 bits a byte)."""

    def __init__(self, path: str, baud: int, seconds: float) -> None:
        super().__init__(daemon=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)
        self.bytes_per_s = baud / 10
        self.seconds = seconds
        self.sent_at: list[float] = []
        self.elapsed = 0.0

    def run(self) -> None:
        t0 = time.monotonic()
        sent = 0
        i = 0
        while (now := time.monotonic()) - t0 < self.seconds:
            # Write every frame whose bytes are due by now, then nap: paced to the baud
            # rate without one sleep per frame (sleep granularity would slow the line).
            due = (now - t0) * self.bytes_per_s
            while sent < due:
                data = _frame(i)
                self.sent_at.append(time.monotonic())
                view = memoryview(data)
                while view:  # blocks when the reader falls behind and the pty fills up
                    view = view[os.write(self.fd, view) :]
                sent += len(data)
                i += 1
            time.sleep(0.002)
        self.elapsed = time.monotonic() - t0
        os.close(self.fd)


async def measure(seconds: float, baud: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-serial-") as d, open_pty_pair() as pty:
        clock = Clock(ClockConfig(sync="always"))
        async with DurableBuffer(BufferConfig(), Path(d), clock.boot_id) as buffer:
            pipeline = Pipeline(buffer, clock)
            sub = pipeline.subscribe()
            src = SerialSource(SerialSourceConfig(port=pty.b, baudrate=baud))
            task = asyncio.create_task(src.run(pipeline))
            await src.state.wait_until(lambda s: s.status == SourceStatus.RUNNING, 10)
            writer = Writer(pty.a, baud, seconds)
            committed_at: dict[int, float] = {}
            writer.start()
            try:
                # Every frame committed, or nothing new for 10 s after the writer stopped.
                while True:
                    try:
                        item = await asyncio.wait_for(sub.queue.get(), 10)
                    except TimeoutError:
                        break
                    i = round((item["t"] / 1000 - BASE_T) * 1000)
                    committed_at.setdefault(i, time.monotonic())
                    if not writer.is_alive() and len(committed_at) >= len(writer.sent_at):
                        break
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            writer.join()
    sent = len(writer.sent_at)
    lat = sorted(committed_at[i] - writer.sent_at[i] for i in committed_at if i < sent)
    last = max(committed_at.values(), default=writer.sent_at[0])
    return {
        "offered_fps": sent / writer.elapsed,
        "line_fps": baud / 10 / statistics.mean(len(_frame(i)) for i in range(sent)),
        "committed_fps": len(committed_at) / (last - writer.sent_at[0]),
        "frames": sent,
        "committed": len(committed_at),
        "p50_ms": statistics.median(lat) * 1000 if lat else float("nan"),
        "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000 if lat else float("nan"),
        "dropped_tail": sub.dropped,
    }


def main() -> None:
    seconds = ARGS.seconds or (5.0 if ARGS.quick else 20.0)
    r = asyncio.run(measure(seconds, ARGS.baud))
    table(
        f"serial_rate: {ARGS.baud} baud for {seconds:g} s, {ARGS.readings} reading(s) a frame, "
        f"default 200 ms commit window ({ARGS.code_root or 'this checkout'})",
        [
            ("line rate (frames/s the baud rate allows)", f"{r['line_fps']:,.0f}", "frames/s"),
            ("offered by the writer", f"{r['offered_fps']:,.0f}", "frames/s"),
            ("committed", f"{r['committed_fps']:,.0f}", "frames/s"),
            ("committed readings", f"{r['committed_fps'] * ARGS.readings:,.0f}", "inputs/s"),
            ("frames sent / committed", f"{r['frames']:.0f} / {r['committed']:.0f}", ""),
            ("latency write -> commit p50", f"{r['p50_ms']:,.0f}", "ms"),
            ("latency write -> commit p99", f"{r['p99_ms']:,.0f}", "ms"),
            ("committed / line rate", f"{r['committed_fps'] / r['line_fps']:.3f}", "x"),
        ],
    )
    report("serial_rate", "committed_frames_per_s", r["committed_fps"], "frames/s",
           baseline=r["line_fps"])  # fmt: skip
    report("serial_rate", "p99_latency_ms", r["p99_ms"], "ms", higher_is_better=False)


if __name__ == "__main__":
    main()
