"""``hamlet server notify ...``: subscribers, subscriptions, the delivery log from a shell.

Whoever runs these holds the server's database, so by default they act as an admin. ``--as
NAME`` applies that person's scope (``server/notify/scope.py``, the same policy as the API):
an operator acting for a commune's staff cannot touch another commune's subscribers.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from hamlet.sms.pdu import normalize_number
from server.notify.model import Severity
from server.notify.scope import NOTHING, NotifyScope, scope_of
from server.notify.store import NotifyStore, Subscriber

app = typer.Typer(no_args_is_help=True, help="Alert subscriptions and the delivery log.")
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="The server's data directory.")]
AsOpt = Annotated[
    str | None, typer.Option("--as", help="Act with this user's scope (default: as admin).")
]
ALL = NotifyScope(everything=True, staff=True)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _scope(as_user: str | None, config: Path | None, data_dir: Path | None) -> NotifyScope:
    if as_user is None:
        return ALL
    from server import registry
    from server.cli import _db

    with _db(config, data_dir) as conn:
        user = registry.user_by_name(conn, as_user)
        sc = scope_of(conn, user)
    if user is None:
        raise _fail(f"no user {as_user!r} (hamlet server list-users)")
    if sc == NOTHING:
        raise _fail(f"{as_user} ({user.role}) may not manage alert subscriptions")
    return sc


def _managed(s: NotifyStore, sc: NotifyScope, sid: int) -> Subscriber:
    sub = s.find_subscriber(sid)
    if sub is None or not sc.manages(sub):
        raise _fail(f"no subscriber {sid} that you manage (hamlet server notify list)")
    return sub


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
    hamlet: Annotated[str | None, typer.Option(help="The hamlet whose staff manage them.")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Add a person (or webhook) who receives alerts; prints its id and stop token."""
    sc = _scope(as_user, config, data_dir)
    if not sc.staff:
        raise _fail("only staff and admins add subscribers here (a farmer uses the page)")
    if hamlet is None and not sc.everything:
        raise typer.BadParameter("give --hamlet: the hamlet this person belongs to")
    if hamlet is not None and not sc.covers(hamlet):
        raise _fail(f"hamlet {hamlet!r} is not one of yours")
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
            language=language, quiet=q, staff=staff, hamlet=hamlet,
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
    as_user: AsOpt = None,
) -> None:
    """Subscribe someone to alerts of a hamlet (optionally one field or device, one kind)."""
    try:
        sev = Severity[min_severity.upper()]
    except KeyError as err:
        raise typer.BadParameter("min-severity must be info, warning or danger") from err
    sc = _scope(as_user, config, data_dir)
    if not sc.covers(hamlet):
        raise _fail(f"hamlet {hamlet!r} is not one of yours")
    with _store(config, data_dir) as s:
        _managed(s, sc, subscriber)
        sid = s.subscribe(subscriber, hamlet, rule=rule, field=field, device=device,
                          min_severity=sev)  # fmt: skip
    typer.echo(json.dumps({"id": sid}))


@app.command("stop")
def stop(
    phone: Annotated[str, typer.Option(help="The phone that replied STOP / HUY.")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Stop all alerts to a phone number (with --as: among the subscribers you manage)."""
    sc = _scope(as_user, config, data_dir)
    with _store(config, data_dir) as s:
        if sc.everything:
            n = s.stop(phone=phone)
        else:
            want = normalize_number(phone)
            mine = [
                x for x in s.subscribers()
                if sc.manages(x) and x.phone and normalize_number(x.phone) == want
            ]  # fmt: skip
            for x in mine:
                s.update_subscriber(x.id, {"active": False})
            n = len(mine)
    typer.echo(f"stopped {n} subscriber(s)")


@app.command("list")
def list_(config: ConfigOpt = None, data_dir: DataDirOpt = None, as_user: AsOpt = None) -> None:
    """The subscribers you manage with their subscriptions, one JSON object a line."""
    sc = _scope(as_user, config, data_dir)
    with _store(config, data_dir) as s:
        for sub in s.subscribers():
            if not sc.manages(sub):
                continue
            subs = [
                {"id": u.id, "hamlet": u.hamlet, "rule": u.rule, "field": u.field,
                 "device": u.device, "min_severity": u.min_severity.name.lower()}
                for u in s.subscriptions(sub.id) if sc.sees(u)
            ]  # fmt: skip
            row = {"id": sub.id, "name": sub.name, "hamlet": sub.hamlet, "phone": sub.phone,
                   "email": sub.email, "active": sub.active, "subscriptions": subs}  # fmt: skip
            typer.echo(json.dumps(row, ensure_ascii=False))


@app.command("remove")
def remove(
    subscriber: Annotated[int, typer.Argument()],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Forget a subscriber and their subscriptions (what waits for them is not sent)."""
    sc = _scope(as_user, config, data_dir)
    with _store(config, data_dir) as s:
        _managed(s, sc, subscriber)
        s.remove_subscriber(subscriber)
    typer.echo(f"removed subscriber {subscriber}")


@app.command("unsubscribe")
def unsubscribe(
    subscription: Annotated[int, typer.Argument()],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Remove one subscription (its id is in ``list``)."""
    sc = _scope(as_user, config, data_dir)
    with _store(config, data_dir) as s:
        u = s.find_subscription(subscription)
        if u is None or not sc.sees(u):
            raise _fail(f"no subscription {subscription} that you manage")
        _managed(s, sc, u.subscriber_id)
        s.unsubscribe(subscription)
    typer.echo(f"removed subscription {subscription}")


@app.command("deliveries")
def deliveries(
    alert_id: Annotated[str | None, typer.Option()] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_user: AsOpt = None,
) -> None:
    """The delivery log, one JSON object a line (with --as: what that person may read)."""
    sc = _scope(as_user, config, data_dir)
    with _store(config, data_dir) as s:
        if sc.own_user is not None:
            own = [x.id for x in s.subscribers() if sc.manages(x)]
            rows = s.deliveries(alert_id, subscriber_ids=own)
        else:
            rows = s.deliveries(alert_id, hamlets=sc.log_hamlets())
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))
