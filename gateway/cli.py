"""``hamlet gateway …``: run the gateway and the installer's toolkit.

Installer commands (init, doctor, ports, status, tail) are registered from
``gateway/installer``; heavy imports stay inside command bodies so ``--help`` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="Run and install a hamlet gateway.")

ConfigOpt = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="HAMLET_GATEWAY_CONFIG",
        help="Gateway config file (TOML).",
    ),
]


@app.command()
def run(config: ConfigOpt = Path("/etc/hamlet/gateway.toml")) -> None:
    """Run the gateway until SIGTERM/Ctrl-C: sources -> buffer -> uplink."""
    import asyncio

    from gateway.app import run_gateway
    from gateway.config import load_gateway_config
    from hamlet.config import ConfigError
    from hamlet.logs import setup_logging

    setup_logging()
    try:
        cfg = load_gateway_config(config)
    except ConfigError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err
    asyncio.run(run_gateway(cfg))
