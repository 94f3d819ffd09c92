"""``hamlet demo``: a whole hamlet on this machine with embedded defaults."""

from __future__ import annotations

from typing import Annotated

import typer


def demo(
    port: Annotated[
        int, typer.Option(help="Dashboard port; 0 picks any free port. / Cổng của bảng điều khiển.")
    ] = 8080,
    minutes: Annotated[
        float | None,
        typer.Option(help="Run unattended for this many minutes, then stop cleanly."),
    ] = None,
    scenario: Annotated[
        str | None,
        typer.Option(
            help="Also replay a simulator scenario (dry-season-salinity, october-flood, "
            "kiosk-outage, …) so its dangers and outages show now. / Kịch bản mô phỏng."
        ),
    ] = None,
) -> None:
    """Run a broker, the server, a gateway and a simulated hamlet; print the dashboard URL.

    Everything runs on embedded defaults (amqtt broker, SQLite): no Docker, no external
    broker or database. Ctrl-C stops every process it started.
    """
    import asyncio

    from rich.console import Console

    from hamlet.demo import DemoError, run_demo
    from hamlet.logs import setup_logging

    setup_logging("WARNING")
    console = Console()
    try:
        code = asyncio.run(run_demo(port, minutes, console, scenario))
    except DemoError as err:
        console.print(f"[red]Demo failed:[/red] {err}")
        raise typer.Exit(1) from err
    raise typer.Exit(code)
