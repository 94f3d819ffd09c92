"""Shared by bench scripts: one machine-readable line per figure for bench/run_all.py."""

from __future__ import annotations

import json


def report(
    bench: str,
    metric: str,
    value: float,
    unit: str,
    *,
    baseline: float | None = None,
    floor: str | None = None,
    higher_is_better: bool = True,
) -> None:
    ratio = None
    if baseline:
        ratio = value / baseline if higher_is_better else baseline / value if value else None
    print(
        "BENCH_JSON "
        + json.dumps(
            {
                "bench": bench,
                "metric": metric,
                "value": value,
                "unit": unit,
                "baseline": baseline,
                "ratio": ratio,
                "floor": floor,
            }
        ),
        flush=True,
    )
