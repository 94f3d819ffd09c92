"""Serial line protocol: frames parsed per second, against a bare split baseline.

Both runs work on the same byte stream (frames from a mix of nodes, 2 % noise lines):
- baseline: ``bytes.split(b"\\n")`` then ``split(b",")`` on each line: what a naive reader
  does, with no CRC, no validation;
- hamlet: :class:`LineSplitter` (resync, length bound) + :func:`parse_frame` (CRC-16,
  every field checked) — the real reader's per-byte work without the pty.

    python bench/serial_parse.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._gateway_common import table
from bench._report import report
from gateway.sources.serial.protocol import FrameError, LineSplitter, encode_frame, parse_frame


def make_stream(n: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    out = bytearray()
    seqs: dict[str, int] = {}
    for _ in range(n):
        node = f"node-{rng.randrange(40)}"
        seqs[node] = seqs.get(node, 0) + 1
        if rng.random() < 0.02:
            out += bytes(rng.randrange(32, 127) for _ in range(rng.randrange(5, 60))) + b"\r\n"
        out += encode_frame(
            node, seqs[node], 1764309600 + seqs[node],
            {"water_level": round(rng.uniform(0, 3), 3), "salinity": round(rng.uniform(0, 8), 2),
             "water_temp": round(rng.uniform(25, 32), 1)},
        )  # fmt: skip
    return bytes(out)


def baseline(stream: bytes) -> int:
    n = 0
    for line in stream.split(b"\n"):
        if line.startswith(b"$"):
            fields = line.split(b",")
            n += len(fields) > 3
    return n


def hamlet(stream: bytes, chunk: int = 4096) -> int:
    sp = LineSplitter()
    n = 0
    for i in range(0, len(stream), chunk):
        for cand, _noise in sp.feed(stream[i : i + chunk]):
            if not cand:
                continue
            try:
                parse_frame(cand)
            except FrameError:
                continue
            n += 1
    return n


def timed(fn: object, stream: bytes, reps: int) -> tuple[float, int]:
    best = float("inf")
    count = 0
    for _ in range(reps):
        t0 = time.process_time()
        count = fn(stream)  # type: ignore[operator]
        best = min(best, time.process_time() - t0)
    return best, count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 50_000 if args.quick else 300_000
    reps = 3 if args.quick else 5
    stream = make_stream(n)
    t_base, c_base = timed(baseline, stream, reps)
    t_ham, c_ham = timed(hamlet, stream, reps)
    assert c_ham == n, (c_ham, n)  # every real frame parsed, every noise line refused
    base_rate, ham_rate = c_base / t_base, c_ham / t_ham
    table(
        f"serial_parse: {n} frames, {len(stream) / 1e6:.1f} MB, 2% noise lines "
        f"(best of {reps}, CPU time)",
        [
            ("baseline split (no CRC, no checks)", f"{base_rate:,.0f}", "lines/s"),
            ("hamlet LineSplitter + parse_frame", f"{ham_rate:,.0f}", "frames/s"),
            ("hamlet CPU per 10k frames", f"{t_ham / n * 10_000 * 1000:.1f}", "ms"),
            ("hamlet / baseline", f"{ham_rate / base_rate:.3f}", "x"),
        ],
    )
    report("serial_parse", "frames_per_s", ham_rate, "frames/s", baseline=base_rate)
    report("serial_parse", "cpu_ms_per_10k_frames", t_ham / n * 10_000 * 1000, "ms",
           higher_is_better=False)  # fmt: skip


if __name__ == "__main__":
    main()
