"""``hamlet server notify ...``: subscribers, subscriptions, the delivery log from a shell."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from server.notify.model import Severity
from server.notify.store import NotifyStore

app = typer.Typer(no_args_is_help=True, help="Alert subscriptions and the delivery log.")
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="The server's data directory.")]


@contextmanager
def _store(config: Path | None, data_dir: Path | None) -> Iterator[NotifyStore]:
    from server.cli import _admin_config  # the same config resolution as every admin command

    store = NotifyStore(_admin_config(config, data_dir).parent / "notify.sqlite3")
    try:
        yield store
    finally:
        store.close()


def _minutes(hhmm: str) -> int:
    m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", hhmm)
    if m is None:
        raise typer.BadParameter(f"{hhmm!r}: use HH:MM-HH:MM, e.g. 21:00-06:00")
    return int(m.group(1)) * 60 + int(m.group(2))


@app.command("add-subscriber")
def add_subscriber(  # noqa: PLR0917 -- typer passes options by name
    name: Annotated[str, typer.Argument()],
    phone: Annotated[str | None, typer.Option(help="+84… for SMS")] = None,
    email: Annotated[str | None, typer.Option()] = None,
    webhook_url: Annotated[str | None, typer.Option()] = None,
    webhook_secret_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the webhook's secret.")
    ] = None,
    language: Annotated[str, typer.Option(help="vi | en")] = "vi",
    quiet: Annotated[str | None, typer.Option(help="Quiet hours, e.g. 21:00-06:00")] = None,
    staff: Annotated[bool, typer.Option(help="Receives escalations.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Add a person (or webhook) who receives alerts; prints its id and stop token."""
    if language not in ("vi", "en"):
        raise typer.BadParameter("language must be vi or en")
    if not (phone or email or webhook_url):
        raise typer.BadParameter("give --phone, --email or --webhook-url")
    secret = os.environ.get(webhook_secret_env, "") if webhook_secret_env else None
    if webhook_url and not secret:
        raise typer.BadParameter("a webhook needs --webhook-secret-env naming a set variable")
    q = None
    if quiet is not None:
        start, _, end = quiet.partition("-")
        q = (_minutes(start), _minutes(end))
    with _store(config, data_dir) as s:
        sub = s.add_subscriber(
            name, phone=phone, email=email, webhook_url=webhook_url, webhook_secret=secret,
            language=language, quiet=q, staff=staff,
        )  # fmt: skip
    typer.echo(json.dumps({"id": sub.id, "stop_token": sub.stop_token}))


@app.command("subscribe")
def subscribe(  # noqa: PLR0917 -- typer passes options by name
    subscriber: Annotated[int, typer.Argument()],
    hamlet: Annotated[str, typer.Option()],
    rule: Annotated[str, typer.Option(help="Alert kind, or * for all")] = "*",
    field: Annotated[str | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option()] = None,
    min_severity: Annotated[str, typer.Option(help="info | warning | danger")] = "warning",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Subscribe someone to alerts of a hamlet (optionally one field or device, one kind)."""
    try:
        sev = Severity[min_severity.upper()]
    except KeyError as err:
        raise typer.BadParameter("min-severity must be info, warning or danger") from err
    with _store(config, data_dir) as s:
        sid = s.subscribe(subscriber, hamlet, rule=rule, field=field, device=device,
                          min_severity=sev)  # fmt: skip
    typer.echo(json.dumps({"id": sid}))


@app.command("stop")
def stop(
    phone: Annotated[str, typer.Option(help="The phone that replied STOP / HUY.")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Stop all alerts to a phone number."""
    with _store(config, data_dir) as s:
        n = s.stop(phone=phone)
    typer.echo(f"stopped {n} subscriber(s)")


@app.command("deliveries")
def deliveries(
    alert_id: Annotated[str | None, typer.Option()] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The delivery log, one JSON object a line."""
    with _store(config, data_dir) as s:
        for row in s.deliveries(alert_id):
            typer.echo(json.dumps(row, ensure_ascii=False))
