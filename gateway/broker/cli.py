"""``hamlet gateway broker …``: the field broker's config file and its users.

Heavy imports stay inside command bodies so ``--help`` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gateway.broker.paths import DEFAULT_ACL_FILE, DEFAULT_PASSWORD_FILE

app = typer.Typer(
    no_args_is_help=True,
    help="The field broker (Mosquitto): config, device passwords and ACL. / Broker MQTT.",
)

PasswdOpt = Annotated[
    Path, typer.Option("--password-file", help="Mosquitto password file to update.")
]
AclOpt = Annotated[Path, typer.Option("--acl-file", help="Mosquitto ACL file to update.")]
PasswordOpt = Annotated[
    str | None,
    typer.Option(
        "--password",
        envvar="HAMLET_BROKER_PASSWORD",
        help="The password to set (default: keep the current one, or make a new one).",
    ),
]
NoToolOpt = Annotated[
    bool,
    typer.Option("--no-mosquitto-passwd", help="Write the hash here even if the tool exists."),
]


@app.command()
def conf(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here (default: print).")
    ] = None,
    port: Annotated[int, typer.Option(help="MQTT port on loopback and the LAN.")] = 1883,
    lan_address: Annotated[
        str | None,
        typer.Option(help="The Pi's address on the hamlet LAN (never the hotspot's)."),
    ] = None,
    password_file: PasswdOpt = DEFAULT_PASSWORD_FILE,
    acl_file: AclOpt = DEFAULT_ACL_FILE,
) -> None:
    """Render the broker config (/etc/mosquitto/conf.d/hamlet.conf) from the shipped template.

    Tạo cấu hình Mosquitto cho gateway.
    """
    from pydantic import ValidationError

    from gateway.broker.conf import BrokerSite, render

    try:
        site = BrokerSite(
            port=port, lan_address=lan_address, password_file=password_file, acl_file=acl_file
        )
    except ValidationError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err
    text = render(site)
    if out is None:
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out}. Next: sudo systemctl restart mosquitto")
    typer.echo(f"đã ghi {out}. Tiếp theo: sudo systemctl restart mosquitto")


def _add_user(
    user: str,
    *,
    rules: list[str],
    password: str | None,
    password_file: Path,
    acl_file: Path,
    use_tool: bool,
) -> None:
    from gateway.broker.credentials import (
        CredentialsError,
        new_password,
        read_passwords,
        set_acl,
        set_password,
    )

    try:
        known = user in read_passwords(password_file)
        shown: str | None = None
        if password is None and not known:
            password = shown = new_password()
        changed_pw = password is not None and set_password(
            password_file, user, password, use_tool=use_tool
        )
        changed_acl = set_acl(acl_file, user, rules)
    except (CredentialsError, OSError) as err:
        typer.echo(f"{err}\nKhông thêm được người dùng broker: {err}", err=True)
        raise typer.Exit(1) from err
    if shown is not None:
        # Shown once, for flashing into the device; it is stored only as a hash.
        typer.echo(f"password for {user} / mật khẩu của {user}: {shown}")
    if not (changed_pw or changed_acl):
        typer.echo(f"{user}: already set up, nothing changed / đã có, không thay đổi")
        return
    what = ", ".join(w for w, c in (("password", changed_pw), ("ACL", changed_acl)) if c)
    typer.echo(f"{user}: {what} updated. Next: sudo systemctl reload mosquitto")
    typer.echo(f"{user}: đã cập nhật. Tiếp theo: sudo systemctl reload mosquitto")


@app.command("add-device")
def add_device(  # noqa: PLR0917 - typer: one parameter per option
    device: Annotated[str, typer.Argument(help="The device id (its MQTT user name).")],
    preset: Annotated[
        str, typer.Option(help="Its firmware's topics: hamlet, tasmota or esphome.")
    ] = "hamlet",
    prefix: Annotated[
        str | None, typer.Option(help="Topic prefix, as in sources.mqtt (default per preset).")
    ] = None,
    password: PasswordOpt = None,
    password_file: PasswdOpt = DEFAULT_PASSWORD_FILE,
    acl_file: AclOpt = DEFAULT_ACL_FILE,
    no_tool: NoToolOpt = False,
) -> None:
    """Give a device its broker password and let it publish under its own topics only.

    Idempotent: running it again changes nothing. Cấp mật khẩu broker cho một thiết bị.
    """
    from gateway.broker.credentials import CredentialsError, device_rules

    if preset not in ("hamlet", "tasmota", "esphome"):
        typer.echo("--preset must be hamlet, tasmota or esphome", err=True)
        raise typer.Exit(2)
    try:
        rules = device_rules(device, preset, prefix)  # type: ignore[arg-type]
    except CredentialsError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err
    _add_user(
        device,
        rules=rules,
        password=password,
        password_file=password_file,
        acl_file=acl_file,
        use_tool=not no_tool,
    )


@app.command("add-gateway")
def add_gateway(
    user: Annotated[str, typer.Argument(help="The gateway's MQTT user name.")] = "hamlet-gateway",
    password: PasswordOpt = None,
    password_file: PasswdOpt = DEFAULT_PASSWORD_FILE,
    acl_file: AclOpt = DEFAULT_ACL_FILE,
    no_tool: NoToolOpt = False,
) -> None:
    """The gateway's own broker user: reads every device topic and $SYS.

    Put the same user and password in the config's sources.mqtt (username, password).

    Người dùng broker của chính gateway.
    """
    from gateway.broker.credentials import gateway_rules

    _add_user(
        user,
        rules=gateway_rules(),
        password=password,
        password_file=password_file,
        acl_file=acl_file,
        use_tool=not no_tool,
    )
