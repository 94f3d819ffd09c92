"""``hamlet server report``: a commune's monthly report card from the command line.

Imports stay inside the command: ``hamlet --help`` must work on a gateway-only install.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from server.config import ServerConfig
    from server.indicators.card import ReportCard
    from server.indicators.render import Format


def report(  # noqa: PLR0917 -- typer passes options by name
    commune: Annotated[str, typer.Option("--commune", help="Commune id, e.g. dinh-mon.")],
    month: Annotated[
        str | None, typer.Option("--month", help="YYYY-MM (default: this month, Vietnam time).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv, xlsx, json or html.")] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (xlsx needs one).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="The server's TOML config file.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Directory of the server's database.")
    ] = None,
) -> None:
    """Print the commune's monthly report card (value, target, met, trend, coverage)."""
    from hamlet.config import ConfigError, load_config
    from server.config import ENV_PREFIX, ServerConfig
    from server.indicators import render
    from server.indicators.source import ScopeError
    from server.store.base import StoreError
    from server.store.schema import StoreUnavailable
    from server.timeparam import TimeParamError, parse_month

    try:
        form = render.Format(fmt)
    except ValueError as err:
        typer.echo(f"error: --format must be one of {', '.join(render.Format)}", err=True)
        raise typer.Exit(2) from err
    if form == render.Format.XLSX and output is None and sys.stdout.isatty():
        typer.echo("error: an Excel workbook needs --output FILE.xlsx", err=True)
        raise typer.Exit(2)
    # Reading needs no session secret: run with development auth defaults, like admin commands.
    extra: dict[str, object] = {"environment": "development"}
    if data_dir is not None:
        extra["data_dir"] = str(data_dir)
    now = time.time_ns() // 1_000_000
    try:
        cfg = load_config(ServerConfig, config, env_prefix=ENV_PREFIX, extra=extra)
        first, last = parse_month(month, now)
    except (ConfigError, TimeParamError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    if not cfg.ledger_path.exists():
        typer.echo(
            f"error: no server database at {cfg.ledger_path}; pass --data-dir or --config",
            err=True,
        )
        raise typer.Exit(2)
    try:
        card = asyncio.run(_card(cfg, commune, first, last, now))
    except ScopeError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    except (StoreError, StoreUnavailable) as err:
        typer.echo(f"error: the store does not answer: {err}", err=True)
        raise typer.Exit(1) from err
    _emit(card, form, output)


async def _card(cfg: ServerConfig, commune: str, first: date, last: date, now: int) -> ReportCard:
    from server.app import make_store
    from server.indicators.card import build_card

    async with make_store(cfg) as store:
        return await build_card(store, cfg.indicators, commune, first, last, now_ms=now)


def _emit(card: ReportCard, form: Format, output: Path | None) -> None:
    from rich.console import Console

    from server.indicators import render

    data: bytes
    if form == render.Format.TABLE:
        Console(file=sys.stdout, width=160).print(render.to_rich_table(card))
        return
    if form == render.Format.XLSX:
        data = render.to_xlsx(card)
    elif form == render.Format.CSV:
        data = render.to_csv(card).encode()
    elif form == render.Format.HTML:
        data = render.to_html(card).encode()
    else:
        data = card.model_dump_json(indent=2).encode()
    if output is not None:
        output.write_bytes(data)
        typer.echo(f"wrote {output}", err=True)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
