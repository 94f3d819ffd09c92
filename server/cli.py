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
from typing import TYPE_CHECKING, Annotated

import typer

from server.indicators.report_cli import report as _report_command
from server.notify.cli import app as _notify_app

if TYPE_CHECKING:
    from server.registry import Role

app = typer.Typer(no_args_is_help=True, help="Run and administer the backend server.")
app.command("report")(_report_command)
app.add_typer(_notify_app, name="notify")

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


def _role(text: str) -> Role:
    """The role named by ``text``, or exit naming the choices."""
    from server.registry import Role

    try:
        return Role(text)
    except ValueError as err:
        raise _fail(f"role must be one of: {', '.join(x.value for x in Role)}") from err


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

    r = _role(role)
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
    from server import people

    r = _role(role)
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


@app.command("influx-setup")
def influx_setup(config: ConfigOpt = None) -> None:
    """Create the rollup bucket and the downsampling task in InfluxDB (idempotent).

    Tạo bucket tổng hợp theo giờ và tác vụ rút gọn dữ liệu trong InfluxDB.
    """
    from hamlet.config import ConfigError, load_config
    from server.config import ENV_PREFIX, ServerConfig
    from server.influx_setup import InfluxSetupError, apply, changed

    try:
        cfg = load_config(
            ServerConfig, config, env_prefix=ENV_PREFIX, extra={"environment": "development"}
        )
    except ConfigError as err:
        raise _fail(str(err)) from err
    if cfg.store.influxdb.token is None:
        raise _fail("store.influxdb.token is not set (HAMLET_SERVER__STORE__INFLUXDB__TOKEN)")
    try:
        steps = apply(cfg.store.influxdb, typer.echo)
    except InfluxSetupError as err:
        raise _fail(str(err)) from err
    typer.echo("influx-setup: done" if changed(steps) else "influx-setup: unchanged")


@app.command()
def backup(
    dest: Annotated[Path, typer.Argument(help="Backup file, or a directory for a dated file.")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Copy the server's database while it runs (SQLite online backup; consistent).

    Sao lưu cơ sở dữ liệu máy chủ khi máy chủ vẫn chạy.
    """
    from server.backup import BackupError
    from server.backup import backup as run_backup

    path = _admin_config(config, data_dir)
    try:
        s = run_backup(path, dest)
    except BackupError as err:
        raise _fail(str(err)) from err
    typer.echo(
        f"backup written: {s.path} ({s.bytes / 1e6:.1f} MB, {s.gateways} gateway(s), "
        f"{s.points} raw point(s), {s.seconds:.1f} s)"
    )


@app.command()
def restore(
    backup_file: Annotated[Path, typer.Argument(metavar="BACKUP", help="A file from 'backup'.")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Put a backup in place of the database (stop the server first; the current database
    is kept beside it).

    Khôi phục từ bản sao lưu (dừng máy chủ trước).
    """
    from server.backup import BackupError
    from server.backup import restore as run_restore

    path = _admin_config(config, data_dir)
    try:
        s, aside = run_restore(backup_file, path)
    except BackupError as err:
        raise _fail(str(err)) from err
    if aside is not None:
        typer.echo(f"previous database kept as {aside}")
    typer.echo(
        f"restored {s.path} from {backup_file}: {s.gateways} gateway(s), {s.points} point(s)"
    )


@app.command()
def migrate(
    to: Annotated[str, typer.Option("--to", help="influxdb | sqlite")],
    target_data_dir: Annotated[
        Path | None, typer.Option(help="--to sqlite: the data dir of the target database.")
    ] = None,
    state: Annotated[
        Path | None, typer.Option(help="Progress file (default: DATA_DIR/migrate-state.sqlite3).")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Copy the series history from SQLite to InfluxDB (resumable), then count every series
    on both sides. Run it again after a stop: it continues where it was.

    Chuyển lịch sử chuỗi số đo từ SQLite sang InfluxDB (chạy lại được), rồi đối chiếu.
    """
    import asyncio

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from hamlet.config import ConfigError, load_config
    from server.config import ENV_PREFIX, ServerConfig
    from server.migrate import (
        HistoryTarget,
        InfluxHistoryTarget,
        MigrateError,
        Outcome,
        SqliteHistory,
        SqliteHistoryTarget,
    )
    from server.migrate import Progress as State
    from server.migrate import migrate as run_migrate

    extra: dict[str, object] = {"environment": "development"}
    if data_dir is not None:
        extra["data_dir"] = str(data_dir)
    try:
        cfg = load_config(ServerConfig, config, env_prefix=ENV_PREFIX, extra=extra)
    except ConfigError as err:
        raise _fail(str(err)) from err
    target: HistoryTarget
    if to == "influxdb":
        if cfg.store.influxdb.token is None:
            raise _fail("set HAMLET_SERVER__STORE__INFLUXDB__TOKEN (and __URL) for the target")
        target = InfluxHistoryTarget(cfg.store.influxdb)
    elif to == "sqlite":
        if target_data_dir is None:
            raise _fail("--to sqlite needs --target-data-dir")
        target = SqliteHistoryTarget(target_data_dir / cfg.ledger_path.name)
    else:
        raise _fail("--to must be influxdb or sqlite")
    console = Console(stderr=True)
    try:
        source = SqliteHistory(cfg.ledger_path)
    except MigrateError as err:
        raise _fail(str(err)) from err
    progress_file = State(state or cfg.data_dir / "migrate-state.sqlite3", target.description)
    bar = Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=console, transient=False,
    )  # fmt: skip
    task = bar.add_task("points", total=None)

    def on_start(total: int, done: int) -> None:
        bar.update(task, total=total, completed=done)

    def on_chunk(label: str, n: int) -> None:
        bar.update(task, advance=n, description=label)

    async def go() -> Outcome:
        async with target:
            return await run_migrate(
                source, target, progress_file, on_chunk=on_chunk, on_start=on_start
            )

    try:
        with bar:
            outcome = asyncio.run(go())
    except MigrateError as err:
        raise _fail(f"{err}\nRun the same command again to continue where it stopped.") from err
    finally:
        source.close()
        progress_file.close()
    bad = [c for c in outcome.checks if not c.ok]
    if outcome.recopied:
        typer.echo(f"copied again in full (counts differed): {', '.join(outcome.recopied)}")
    for c in bad:
        typer.echo(f"MISMATCH {c.series.label}: source {c.source}, target {c.target}", err=True)
    total = sum(c.source for c in outcome.checks)
    typer.echo(
        f"copied {outcome.copied} point(s) this run; verified {len(outcome.checks)} series, "
        f"{total} point(s): {'all counts match' if not bad else f'{len(bad)} mismatch(es)'}"
    )
    if bad:
        raise typer.Exit(1)
