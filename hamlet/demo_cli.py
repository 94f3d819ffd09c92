"""``hamlet demo``: a whole hamlet on this machine with embedded defaults."""

from __future__ import annotations

from typing import Annotated

import typer


def demo(
    port: Annotated[int, typer.Option(help="Dashboard port (0 = any free port).")] = 8080,
    minutes: Annotated[
        float | None, typer.Option(help="Run unattended for this many minutes, then stop.")
    ] = None,
) -> None:
    """Run broker, server, gateway and a simulated hamlet; print the dashboard URL."""
    raise typer.Exit(1)
