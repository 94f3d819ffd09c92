"""``hamlet server ...``: run the backend and administer its registry.

Heavy imports (uvicorn, fastapi, argon2) happen inside the commands: a gateway-only install
must still be able to print ``hamlet --help``.
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from server.indicators.report_cli import report as _report_command

app = typer.Typer(no_args_is_help=True, help="Run and administer the backend server.")
app.command("report")(_report_command)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (see examples/).")
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Directory for the SQLite database.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _admin_config(config: Path | None, data_dir: Path | None) -> Path:
    """The database path, from config + env + --data-dir. Admin commands need no secrets."""
    from hamlet.config import ConfigError, load_config
    from server.config import ENV_PREFIX, ServerConfig

    extra: dict[str, object] = {"environment": "development"}  # secrets are not needed here
    if data_dir is not None:
        extra["data_dir"] = str(data_dir)
    try:
        cfg = load_config(ServerConfig, config, env_prefix=ENV_PREFIX, extra=extra)
    except ConfigError as err:
        raise _fail(str(err)) from err
    return cfg.ledger_path


@contextmanager
def _db(config: Path | None, data_dir: Path | None) -> Iterator[sqlite3.Connection]:
    from server.store.schema import StoreUnavailable, open_db

    path = _admin_config(config, data_dir)
    try:
        conn = open_db(path)
    except StoreUnavailable as err:
        raise _fail(str(err)) from err
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def _registry_errors() -> Iterator[None]:
    from server.registry import RegistryError

    try:
        yield
    except (RegistryError, ValueError) as err:
        raise _fail(str(err)) from err


@app.command()
def run(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port (0 = any free port).")] = None,
    workers: Annotated[int | None, typer.Option(help="uvicorn worker processes.")] = None,
) -> None:
    """Run the server; prints 'listening on http://HOST:PORT' once it accepts requests."""
    from hamlet.config import ConfigError
    from hamlet.logs import setup_logging
    from server.config import load_server_config
    from server.runner import run as run_server

    try:
        cfg = load_server_config(config, data_dir=data_dir, host=host, port=port, workers=workers)
    except ConfigError as err:
        raise _fail(str(err)) from err
    setup_logging(cfg.log_level)
    from server.store.schema import StoreUnavailable

    try:
        run_server(cfg)
    except StoreUnavailable as err:
        raise _fail(str(err)) from err
    except OSError as err:
        raise _fail(f"cannot listen on {cfg.http.host}:{cfg.http.port}: {err.strerror}") from err


@app.command("add-gateway")
def add_gateway(
    gateway_id: Annotated[str, typer.Argument(metavar="ID")],
    hamlet: Annotated[str | None, typer.Option("--hamlet", help="Hamlet it serves.")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a gateway and print its token ONCE (only a hash is kept)."""
    from server import registry

    with _db(config, data_dir) as conn, _registry_errors():
        token = registry.add_gateway(conn, gateway_id, hamlet)
    _print_token(gateway_id, token, as_json)


def _print_token(gateway_id: str, token: str, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"id": gateway_id, "token": token}))
        return
    typer.echo(f"gateway {gateway_id} token (shown once, store it in the gateway's config):")
    typer.echo(token)


@app.command("rotate-token")
def rotate_token(
    gateway_id: Annotated[str, typer.Argument(metavar="ID")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Give a gateway a new token; the old one stops working at once."""
    from server import registry

    with _db(config, data_dir) as conn, _registry_errors():
        token = registry.rotate_gateway_token(conn, gateway_id)
    _print_token(gateway_id, token, as_json)


@app.command()
def revoke(
    gateway_id: Annotated[str, typer.Argument(metavar="ID")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Revoke a gateway's token (rotate-token issues a new one)."""
    from server import registry

    with _db(config, data_dir) as conn, _registry_errors():
        registry.revoke_gateway(conn, gateway_id)
    typer.echo(f"gateway {gateway_id} revoked")


@app.command("list-gateways")
def list_gateways(
    config: ConfigOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False
) -> None:
    """Gateways with their loss accounting."""
    from server import registry
    from server.store import ledger
    from server.store.sqlite_series import gateway_heartbeats

    with _db(config, data_dir) as conn:
        gws = registry.list_gateways(conn)
        acct = ledger.accounting(
            conn, gws, gateway_heartbeats(conn, [(g.id, g.hamlet) for g in gws])
        )
    revoked = {g.id for g in gws if g.revoked}
    if as_json:
        typer.echo(json.dumps([a.model_dump() | {"revoked": a.id in revoked} for a in acct]))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("gateway", "hamlet", "received", "duplicates", "rejected", "missing", "state")
    for a in acct:
        table.add_row(
            a.id,
            a.hamlet or "",
            str(a.received),
            str(a.duplicates),
            str(a.rejected),
            str(a.missing),
            "revoked" if a.id in revoked else "active",
        )
    Console().print(table)


@app.command("add-commune")
def add_commune(
    commune_id: Annotated[str, typer.Argument(metavar="ID")],
    name: Annotated[str, typer.Option(help="Display name, e.g. 'Định Môn'.")] = "",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Add (or rename) a commune."""
    from server import registry

    with _db(config, data_dir) as conn, _registry_errors():
        registry.add_commune(conn, commune_id, name)
    typer.echo(f"commune {commune_id} saved")


@app.command("add-hamlet")
def add_hamlet(  # noqa: PLR0917 -- typer passes options by name
    hamlet_id: Annotated[str, typer.Argument(metavar="ID")],
    commune: Annotated[str | None, typer.Option(help="Commune it belongs to.")] = None,
    name: Annotated[str, typer.Option(help="Display name, e.g. 'Ấp Định Phước'.")] = "",
    public: Annotated[
        bool | None, typer.Option("--public/--private", help="Readable without login.")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Add or update a hamlet."""
    from server import registry

    with _db(config, data_dir) as conn, _registry_errors():
        registry.add_hamlet(conn, hamlet_id, commune=commune, name=name, public=public)
    typer.echo(f"hamlet {hamlet_id} saved")


@app.command("add-device")
def add_device(  # noqa: PLR0917 -- typer passes options by name
    device_id: Annotated[str, typer.Argument(metavar="ID")],
    hamlet: Annotated[str, typer.Option(help="Hamlet of the device.")],
    kind: Annotated[str, typer.Option(help="sensor | kiosk | radio | wifi")] = "sensor",
    gateway: Annotated[str | None, typer.Option(help="Gateway it reports through.")] = None,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    crop: Annotated[str | None, typer.Option(help="Crop (salinity thresholds).")] = None,
    service_hours: Annotated[str | None, typer.Option(help="Service hours text.")] = None,
    expected_interval: Annotated[
        int | None, typer.Option(help="Expected reporting interval, seconds.")
    ] = None,
    lat: Annotated[float | None, typer.Option()] = None,
    lon: Annotated[float | None, typer.Option()] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Register (or confirm) a device in a hamlet."""
    from pydantic import ValidationError

    from server import registry
    from server.models import DeviceIn

    try:
        dev = DeviceIn.model_validate(
            {
                "id": device_id,
                "kind": kind,
                "gateway": gateway,
                "name": name,
                "crop": crop,
                "service_hours": service_hours,
                "expected_interval_s": expected_interval,
                "lat": lat,
                "lon": lon,
            }
        )
    except ValidationError as err:
        raise _fail(str(err)) from err
    with _db(config, data_dir) as conn, _registry_errors():
        registry.upsert_device(conn, hamlet, dev)
    typer.echo(f"device {device_id} saved in hamlet {hamlet}")


@app.command("add-user")
def add_user(  # noqa: PLR0917 -- typer passes options by name
    name: Annotated[str, typer.Argument(metavar="NAME")],
    role: Annotated[str, typer.Option(help="viewer | staff | installer | admin")],
    commune: Annotated[str | None, typer.Option(help="Commune (staff).")] = None,
    hamlet: Annotated[str | None, typer.Option(help="Hamlet (viewer).")] = None,
    password_env: Annotated[
        str | None,
        typer.Option(help="Read the password from this environment variable, not a prompt."),
    ] = None,
    no_password: Annotated[bool, typer.Option(help="API-token-only user.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Add a person. The password is asked for (or read from --password-env)."""
    from server import registry

    try:
        r = registry.Role(role)
    except ValueError as err:
        raise _fail(f"role must be one of: {', '.join(x.value for x in registry.Role)}") from err
    password: str | None = None
    if not no_password:
        if password_env:
            password = os.environ.get(password_env)
            if not password:
                raise _fail(f"environment variable {password_env} is empty or unset")
        else:
            password = getpass.getpass("Password / Mật khẩu: ")
            if password != getpass.getpass("Again / Nhập lại: "):
                raise _fail("passwords differ")
    with _db(config, data_dir) as conn, _registry_errors():
        registry.add_user(conn, name, r, password, commune=commune, hamlet=hamlet)
    typer.echo(f"user {name} ({r}) added")


@app.command("create-token")
def create_token(
    name: Annotated[str, typer.Argument(metavar="USER")],
    label: Annotated[str, typer.Option(help="What it is for.")] = "",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API token for a user; printed once."""
    from server import registry

    with _db(config, data_dir) as conn, _registry_errors():
        token = registry.create_user_token(conn, name, label)
    if as_json:
        typer.echo(json.dumps({"user": name, "token": token}))
    else:
        typer.echo(token)


@app.command("revoke-token")
def revoke_token(
    token: Annotated[str, typer.Argument(metavar="TOKEN")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Revoke a user's API token."""
    from server import registry

    with _db(config, data_dir) as conn:
        if not registry.revoke_user_token(conn, token):
            raise _fail("no such token")
    typer.echo("token revoked")


@app.command("list-users")
def list_users(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """People and their roles."""
    from server import registry

    with _db(config, data_dir) as conn:
        for u in registry.list_users(conn):
            scope = u.hamlet or u.commune or "-"
            state = " (disabled)" if u.disabled else ""
            typer.echo(f"{u.name}\t{u.role}\t{scope}{state}")


@app.command("influx-task")
def influx_task(config: ConfigOpt = None) -> None:
    """Print the InfluxDB downsampling task (hourly mean/min/max/n into the rollup bucket)."""
    from hamlet.config import ConfigError, load_config
    from server.config import ENV_PREFIX, ServerConfig
    from server.store.influx import downsample_task_flux

    try:
        cfg = load_config(
            ServerConfig, config, env_prefix=ENV_PREFIX, extra={"environment": "development"}
        )
    except ConfigError as err:
        raise _fail(str(err)) from err
    ic = cfg.store.influxdb
    typer.echo(downsample_task_flux(ic.bucket, ic.rollup_bucket, ic.org))
