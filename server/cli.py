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

app = typer.Typer(no_args_is_help=True, help="Run and administer the backend server.")

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


def _audit(conn: sqlite3.Connection, action: str, target: str, detail: str = "") -> None:
    from server import audit

    audit.record(conn, "cli", audit.Action(action), target, detail=detail)


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
        _audit(conn, "gateway_added", gateway_id)
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
        _audit(conn, "gateway_token_rotated", gateway_id)
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
        _audit(conn, "gateway_revoked", gateway_id)
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
    temporary: Annotated[
        bool, typer.Option(help="The person must change the password at first login.")
    ] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Add a person. The password is asked for (or read from --password-env)."""
    from server import registry

    try:
        r = registry.Role(role)
    except ValueError as err:
        raise _fail(f"role must be one of: {', '.join(x.value for x in registry.Role)}") from err
    password: str | None = None if no_password else _password(password_env)
    with _db(config, data_dir) as conn, _registry_errors():
        registry.add_user(conn, name, r, password, commune=commune, hamlet=hamlet)
        if temporary:
            from server import people

            people.mark_must_change(conn, name)
        _audit(conn, "user_created", name, str(r))
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
        _audit(conn, "token_created", name, label)
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
        _audit(conn, "token_revoked", "", f"token ...{token[-4:]}")
    typer.echo("token revoked")


@app.command("list-users")
def list_users(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """People and their roles."""
    from server import registry

    with _db(config, data_dir) as conn:
        for u in registry.list_users(conn):
            scope = u.hamlet or u.commune or "-"
            state = " (disabled)" if u.disabled else ""
            state += " (must change password)" if u.must_change_password else ""
            typer.echo(f"{u.name}\t{u.role}\t{scope}{state}")


def _password(password_env: str | None) -> str:
    if password_env:
        password = os.environ.get(password_env)
        if not password:
            raise _fail(f"environment variable {password_env} is empty or unset")
        return password
    password = getpass.getpass("Password / Mật khẩu: ")
    if password != getpass.getpass("Again / Nhập lại: "):
        raise _fail("passwords differ")
    return password


UserArg = Annotated[str, typer.Argument(metavar="USER")]


@app.command("disable-user")
def disable_user(name: UserArg, config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Disable a person: their sessions and API tokens stop working at once."""
    from server import people

    with _db(config, data_dir) as conn, _registry_errors():
        people.set_disabled(conn, name, True, actor="cli")
    typer.echo(f"user {name} disabled")


@app.command("enable-user")
def enable_user(name: UserArg, config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Enable a disabled person again."""
    from server import people

    with _db(config, data_dir) as conn, _registry_errors():
        people.set_disabled(conn, name, False, actor="cli")
    typer.echo(f"user {name} enabled")


@app.command("delete-user")
def delete_user(name: UserArg, config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Delete a person with their API tokens and sessions."""
    from server import people

    with _db(config, data_dir) as conn, _registry_errors():
        people.delete_user(conn, name, actor="cli")
    typer.echo(f"user {name} deleted")


@app.command("reset-password")
def reset_password(
    name: UserArg,
    password_env: Annotated[
        str | None,
        typer.Option(help="Read the temporary password from this environment variable."),
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Set a temporary password; the person must change it at their next login."""
    from server import people

    password = _password(password_env)
    with _db(config, data_dir) as conn, _registry_errors():
        people.reset_password(conn, name, password, actor="cli")
    typer.echo(f"user {name}: temporary password set, sessions ended")


@app.command("set-role")
def set_role(  # noqa: PLR0917 -- typer passes options by name
    name: UserArg,
    role: Annotated[str, typer.Option(help="viewer | staff | installer | admin")],
    commune: Annotated[str | None, typer.Option(help="Commune (staff).")] = None,
    hamlet: Annotated[str | None, typer.Option(help="Hamlet (viewer).")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Change a person's role and scope (their sessions end)."""
    from server import people, registry

    try:
        r = registry.Role(role)
    except ValueError as err:
        raise _fail(f"role must be one of: {', '.join(x.value for x in registry.Role)}") from err
    with _db(config, data_dir) as conn, _registry_errors():
        people.set_role(conn, name, r, commune=commune, hamlet=hamlet, actor="cli")
    typer.echo(f"user {name} is now {r}")


@app.command("revoke-sessions")
def revoke_sessions(name: UserArg, config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """End every session of a person at once (API tokens are revoked with revoke-token)."""
    from server import people

    with _db(config, data_dir) as conn, _registry_errors():
        n = people.revoke_sessions(conn, name, actor="cli")
    typer.echo(f"user {name}: {n} session(s) ended")


@app.command()
def audit(  # noqa: PLR0917 -- typer passes options by name
    limit: Annotated[int, typer.Option(help="Newest N entries.")] = 50,
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. login_failed.")] = None,
    target: Annotated[
        str | None, typer.Option(help="Only entries about this user/gateway.")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The audit log: logins, failures, token, user and session changes (newest first)."""
    from datetime import UTC, datetime

    from server import audit as audit_log

    with _db(config, data_dir) as conn:
        rows = audit_log.entries(conn, limit=limit, action=action, target=target)
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in rows]))
        return
    for r in rows:
        at = datetime.fromtimestamp(r.at / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        extra = f"  ({r.detail})" if r.detail else ""
        typer.echo(f"{at}Z  {r.action:<22} {r.target:<20} by {r.actor} {r.address}{extra}")


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
