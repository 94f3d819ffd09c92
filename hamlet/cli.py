"""``hamlet``: one command-line program for the gateway, the server, the simulator and the demo.

Sub-command modules import their heavy dependencies inside the commands, so a Raspberry Pi
with only the ``gateway`` extra can run ``hamlet gateway …`` without FastAPI installed.
"""

from __future__ import annotations

from typing import Annotated

import typer

from firmware_sim.cli import app as sim_app
from gateway.cli import app as gateway_app
from hamlet import __version__
from hamlet.demo_cli import demo
from server.cli import app as server_app

app = typer.Typer(
    name="hamlet",
    help="Smart-hamlet data platform: gateways, server, simulator.\n\n"
    "Nền tảng dữ liệu ấp thông minh: gateway, máy chủ, mô phỏng.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
app.add_typer(gateway_app, name="gateway", help="Run and install a hamlet gateway (Raspberry Pi).")
app.add_typer(server_app, name="server", help="Run and administer the backend server.")
app.add_typer(sim_app, name="sim", help="Simulate a hamlet's devices over real transports.")
app.command("demo")(demo)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hamlet {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Smart-hamlet data platform."""


def main() -> None:
    app()
