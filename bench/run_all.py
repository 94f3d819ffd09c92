"""Run every benchmark in bench/ and print one table.

Each script prints its own human-readable table and, for this runner, one or more lines
``BENCH_JSON {"bench": ..., "metric": ..., "value": ..., "unit": ..., "baseline": ...,
"ratio": ..., "floor": ...}``. Scripts run one after another (never in parallel: they
measure CPU time) with ``--quick`` passed through when given.

    python bench/run_all.py [--quick] [-k NAME]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short runs (< 1 min each)")
    ap.add_argument("-k", default="", help="only scripts whose name contains this")
    args = ap.parse_args()
    console = Console()
    scripts = sorted(
        p
        for p in HERE.glob("*.py")
        if p.name not in {"run_all.py"} and not p.name.startswith("_") and args.k in p.name
    )
    rows: list[dict[str, object]] = []
    failed: list[str] = []
    for script in scripts:
        cmd = [sys.executable, str(script), *(["--quick"] if args.quick else [])]
        console.print(f"[bold]» {' '.join(cmd[1:])}[/bold]")
        t0 = time.monotonic()
        res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=HERE.parent)
        took = time.monotonic() - t0
        for line in res.stdout.splitlines():
            if line.startswith("BENCH_JSON "):
                rows.append(json.loads(line[len("BENCH_JSON ") :]))
            else:
                console.print(f"  {line}", markup=False, highlight=False)
        if res.returncode != 0:
            failed.append(script.name)
            console.print(f"[red]  {script.name} failed ({res.returncode}):[/red]")
            console.print(res.stderr[-2000:], markup=False)
        console.print(f"  [dim]({took:.1f} s)[/dim]")
    table = Table(title="Benchmarks (this machine)")
    for col in ("bench", "metric", "value", "unit", "baseline", "ratio", "floor"):
        table.add_column(col, justify="right" if col in {"value", "baseline", "ratio"} else "left")
    for r in rows:

        def fmt(v: object) -> str:
            if isinstance(v, float):
                return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
            return "" if v is None else str(v)

        table.add_row(
            *(
                fmt(r.get(c))
                for c in ("bench", "metric", "value", "unit", "baseline", "ratio", "floor")
            )
        )
    console.print(table)
    if failed:
        console.print(f"[red]failed: {', '.join(failed)}[/red]")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
