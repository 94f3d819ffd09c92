"""``hamlet gateway …``: run the gateway and the installer's toolkit.

Installer commands (init, doctor, ports, status, tail) are registered from
``gateway/installer``; heavy imports stay inside command bodies so ``--help`` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gateway.broker.cli import app as broker_app

app = typer.Typer(no_args_is_help=True, help="Run and install a hamlet gateway.")
app.add_typer(broker_app, name="broker")

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


DEFAULT_CONFIG = Path("/etc/hamlet/gateway.toml")
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.command()
def init(  # noqa: PLR0917 - typer: one parameter per option
    config: ConfigOpt = DEFAULT_CONFIG,
    server_url: Annotated[str | None, typer.Option(help="Server base URL (https://...)")] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="HAMLET_GATEWAY_TOKEN", help="Token from 'hamlet server add-gateway'"),
    ] = None,
    gateway_id: Annotated[str | None, typer.Option(help="Gateway id as registered")] = None,
    hamlet: Annotated[str | None, typer.Option(help="Hamlet id, e.g. dinh-phuoc")] = None,
    data_dir: Annotated[Path, typer.Option(help="Buffer and state directory")] = Path(
        "/var/lib/hamlet"
    ),
    serial: Annotated[
        list[str] | None, typer.Option(help="Serial line-protocol port (repeatable)")
    ] = None,
    serial_baudrate: int = 115200,
    modbus_port: Annotated[str | None, typer.Option(help="RS485 adapter for Modbus RTU")] = None,
    modbus_baudrate: int = 9600,
    modbus_device: Annotated[
        list[str] | None,
        typer.Option(help="id:profile[:address[:interval_s]] (repeatable)"),
    ] = None,
    mqtt_host: Annotated[str, typer.Option(help="Local MQTT broker")] = "127.0.0.1",
    mqtt_port: int = 1883,
    no_mqtt: Annotated[bool, typer.Option("--no-mqtt", help="No MQTT source")] = False,
    force: Annotated[bool, typer.Option(help="Overwrite an existing config")] = False,
    no_prompt: Annotated[
        bool, typer.Option("--no-prompt", help="Fail instead of asking for missing values")
    ] = False,
) -> None:
    """Write a gateway config from flags or prompts, then validate it by loading it back.

    Tạo tệp cấu hình gateway từ tham số hoặc câu hỏi, rồi kiểm tra lại.
    """
    import sys

    from gateway.installer.init import InitAnswers, InitError, ModbusDeviceSpec, write_config

    ask = not no_prompt and sys.stdin.isatty()

    def need(value: str | None, prompt: str, *, hide: bool = False) -> str:
        if value:
            return value
        if not ask:
            typer.echo(f"missing --{prompt.split(' ', 1)[0]} (thiếu tham số)", err=True)
            raise typer.Exit(2)
        return str(typer.prompt(prompt, hide_input=hide))

    try:
        answers = InitAnswers(
            gateway_id=need(gateway_id, "gateway-id (e.g. gw-dinh-phuoc)"),
            server_url=need(server_url, "server-url (https://...)"),
            token=need(token, "token (from 'hamlet server add-gateway')", hide=True),
            hamlet=hamlet,
            data_dir=data_dir,
            serial_ports=list(serial or []),
            serial_baudrate=serial_baudrate,
            modbus_port=modbus_port,
            modbus_baudrate=modbus_baudrate,
            modbus_devices=[ModbusDeviceSpec.parse(s) for s in modbus_device or []],
            mqtt_host=None if no_mqtt else mqtt_host,
            mqtt_port=mqtt_port,
        )
        cfg = write_config(config, answers, force=force)
    except InitError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err
    n = len(cfg.sources.serial) + len(cfg.sources.modbus) + len(cfg.sources.mqtt)
    typer.echo(
        f"wrote {config}: gateway {cfg.id}, {n} source(s). Next: hamlet gateway doctor -c {config}"
    )
    typer.echo(f"đã ghi {config}. Tiếp theo: hamlet gateway doctor -c {config}")


@app.command()
def doctor(config: ConfigOpt = DEFAULT_CONFIG, json_out: JsonOpt = False) -> None:
    """Check config, ports, Modbus devices, broker, server + token, clock, disk, buffer.

    Kiểm tra cấu hình, cổng, thiết bị, broker, máy chủ, đồng hồ, ổ đĩa, bộ đệm.
    """
    import json

    from gateway.installer.doctor import failed, run_checks

    if json_out:
        checks = run_checks(config)
        report = {"ok": not failed(checks), "checks": [c.as_json() for c in checks]}
        typer.echo(json.dumps(report, ensure_ascii=False))
    else:
        from gateway.installer.render import console, doctor_table

        con = console()
        with con.status("checking…") as spinner:
            checks = run_checks(config, lambda what: spinner.update(f"checking {what}…"))
        con.print(doctor_table(checks))
        bad = sum(c.outcome.value == "fail" for c in checks)
        con.print(
            f"[bold red]{bad} check(s) failed / {bad} mục lỗi[/]" if bad
            else "[green]all checks passed / tất cả đều tốt[/]"
        )  # fmt: skip
    if failed(checks):
        raise typer.Exit(1)


@app.command()
def ports(json_out: JsonOpt = False) -> None:
    """List serial ports with their /dev/serial/by-id names and USB vendor/product."""
    import json

    from gateway.installer.ports import list_ports

    found = list_ports()
    if json_out:
        typer.echo(json.dumps([p.as_json() for p in found]))
        return
    from gateway.installer.render import console, ports_table

    con = console()
    if not found:
        con.print("No serial ports found. Plug the USB adapter in and check 'dmesg | tail'.")
        con.print("Không thấy cổng nối tiếp nào. Cắm bộ chuyển đổi USB và xem 'dmesg | tail'.")
        return
    con.print(ports_table(found))


def _control_path(config: Path) -> Path:
    from gateway.config import load_gateway_config
    from gateway.control_protocol import socket_path
    from hamlet.config import ConfigError

    try:
        cfg = load_gateway_config(config)
    except ConfigError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err
    return socket_path(cfg.data_dir)


def _not_running(path: Path, config: Path) -> typer.Exit:
    typer.echo(
        f"The gateway is not running (no {path}). Start it: sudo systemctl start hamlet-gateway "
        f"(or: hamlet gateway run -c {config}).\n"
        f"Gateway chưa chạy. Khởi động: sudo systemctl start hamlet-gateway",
        err=True,
    )
    return typer.Exit(3)


@app.command()
def status(config: ConfigOpt = DEFAULT_CONFIG, json_out: JsonOpt = False) -> None:
    """Buffer depth, uploads, per-source state and counters, recent dead letters."""
    from gateway import control_protocol as cc

    path = _control_path(config)
    try:
        st = cc.status(path)
    except cc.NotRunning as err:
        raise _not_running(path, config) from err
    except (cc.ControlError, OSError) as err:
        typer.echo(f"cannot read the gateway's status: {err}", err=True)
        raise typer.Exit(1) from err
    if json_out:
        typer.echo(st.model_dump_json())
        return
    from gateway.installer.render import console, status_view

    console().print(status_view(st))


@app.command()
def tail(config: ConfigOpt = DEFAULT_CONFIG, json_out: JsonOpt = False) -> None:
    """Show readings and events as they are committed (Ctrl-C to stop)."""
    from gateway import control_protocol as cc

    path = _control_path(config)
    try:
        stream = cc.tail(path)
        if json_out:
            for item in stream:
                typer.echo(item.model_dump_json(exclude_none=True))
        else:
            from gateway.installer.render import console, tail_line

            con = console()
            for item in stream:
                con.print(tail_line(item))
    except cc.NotRunning as err:
        raise _not_running(path, config) from err
    except (cc.ControlError, OSError) as err:
        typer.echo(f"tail stopped: {err}", err=True)
        raise typer.Exit(1) from err
    except KeyboardInterrupt:
        return
    # The gateway hung up (stopping or restarting): say so, and fail so scripts notice.
    typer.echo("the gateway closed the tail stream (stopped or restarting?)", err=True)
    raise typer.Exit(1)


RootOpt = Annotated[
    Path,
    typer.Option("--root", help="Write under this directory instead of / (no system commands)."),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print every file and command; change nothing.")
]


def _service_report(action: str, report_changed: bool, dry_run: bool) -> None:
    if not report_changed:
        typer.echo(f"{action}: unchanged / không có gì thay đổi")
    elif dry_run:
        typer.echo(f"{action}: dry run, nothing changed / chạy thử, chưa thay đổi gì")
    else:
        typer.echo(f"{action}: done / xong")


@app.command("install-service")
def install_service(
    config: ConfigOpt = DEFAULT_CONFIG,
    root: RootOpt = Path("/"),
    dry_run: DryRunOpt = False,
) -> None:
    """Install the gateway as a systemd service: user 'hamlet' (in dialout), data dir,
    config, unit, journald limits, the field broker's config. Idempotent.

    Cài gateway thành dịch vụ systemd (chạy lại nhiều lần không sao).
    """
    from gateway.installer.service import ServiceError, Target, install

    try:
        report = install(config, Target(root=root, dry_run=dry_run), typer.echo)
    except (ServiceError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    _service_report("install-service", report.changed, dry_run)
    if report.changed and not dry_run:
        typer.echo(
            "Next / Tiếp theo: sudo -u hamlet hamlet gateway doctor && "
            "sudo systemctl start hamlet-gateway"
        )


@app.command("uninstall-service")
def uninstall_service(root: RootOpt = Path("/"), dry_run: DryRunOpt = False) -> None:
    """Stop and remove the service (the config and the buffered data are kept).

    Gỡ dịch vụ (giữ lại cấu hình và dữ liệu đệm).
    """
    from gateway.installer.service import ServiceError, Target, uninstall

    try:
        report = uninstall(Target(root=root, dry_run=dry_run), typer.echo)
    except (ServiceError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    _service_report("uninstall-service", report.changed, dry_run)
