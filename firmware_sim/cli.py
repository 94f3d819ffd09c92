"""``hamlet sim``: run a simulated hamlet over real transports, backfill history, load-test.

Heavy dependencies (aiomqtt, pymodbus, httpx) are imported inside the commands so that
``hamlet --help`` works on a Pi with only the gateway extra installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from firmware_sim.scenario import MqttFaults, Scenario, ScheduledFault, SerialFaults

app = typer.Typer(no_args_is_help=True, help="Simulated hamlet devices. / Thiết bị ấp mô phỏng.")

ScenarioOpt = Annotated[
    str, typer.Option("--scenario", "-s", help="Built-in name (demo, dinh-mon...) or a .toml path.")
]


def _fail(msg: str) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(2)


def _load(name: str) -> Scenario:
    from firmware_sim.scenario import ScenarioError, load_scenario

    try:
        return load_scenario(name)
    except ScenarioError as err:
        raise _fail(str(err)) from err


def _paths(values: list[str] | None) -> dict[str, str]:
    """``PATH`` (the scenario's first link) or ``NAME=PATH``."""
    out: dict[str, str] = {}
    for v in values or []:
        name, sep, path = v.partition("=")
        if sep and "/" not in name:
            out[name] = path
        else:
            out[""] = v
    return out


def parse_serial_faults(text: str) -> SerialFaults:
    """``corrupt=0.05,truncate=0.02`` -> SerialFaults (unknown keys are an error)."""
    from pydantic import ValidationError

    from firmware_sim.scenario import SerialFaults

    data: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, val = part.partition("=")
        if not sep:
            raise _fail(f"--faults: {part!r} is not KEY=PROBABILITY")
        try:
            data[key.strip()] = float(val)
        except ValueError as err:
            raise _fail(f"--faults: {val!r} is not a number") from err
    try:
        return SerialFaults.model_validate(data)
    except ValidationError as err:
        raise _fail(f"--faults: {err.errors()[0]['loc']}: {err.errors()[0]['msg']}") from err


def parse_mqtt_faults(text: str) -> MqttFaults:
    """``duplicate=0.05`` -> MqttFaults."""
    from pydantic import ValidationError

    from firmware_sim.scenario import MqttFaults

    data: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, val = part.partition("=")
        if not sep:
            raise _fail(f"--mqtt-faults: {part!r} is not KEY=PROBABILITY")
        data[key.strip()] = val
    try:
        return MqttFaults.model_validate(data)
    except ValidationError as err:
        e = err.errors()[0]
        raise _fail(f"--mqtt-faults: {e['loc']}: {e['msg']}") from err


def parse_fault(text: str) -> ScheduledFault:
    """``unplug,at=30,for=10,target=serial0`` -> ScheduledFault."""
    from pydantic import ValidationError

    from firmware_sim.scenario import ScheduledFault

    kind, *rest = [p.strip() for p in text.split(",")]
    data: dict[str, object] = {"kind": kind}
    names = {"at": "at_s", "for": "duration_s", "jump": "jump_s", "target": "target"}
    for part in rest:
        key, _, val = part.partition("=")
        if key not in names:
            raise _fail(f"--fault: unknown key {key!r} (use at, for, jump, target)")
        data[names[key]] = val
    try:
        return ScheduledFault.model_validate(data)
    except ValidationError as err:
        raise _fail(f"--fault {text!r}: {err.errors()[0]['msg']}") from err


@app.command()
def run(  # noqa: PLR0917 - typer maps parameters to options
    scenario: ScenarioOpt = "demo",
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second.")] = 1.0,
    start: Annotated[
        str | None, typer.Option(help="Simulated start: 'now' or ISO date/time (local).")
    ] = None,
    mqtt_host: Annotated[str, typer.Option(help="MQTT broker host.")] = "127.0.0.1",
    mqtt_port: Annotated[int, typer.Option(help="MQTT broker port.")] = 1883,
    serial_link: Annotated[
        list[str] | None,
        typer.Option(help="Where the gateway reads a serial link: PATH or NAME=PATH."),
    ] = None,
    modbus_link: Annotated[
        list[str] | None,
        typer.Option(help="Where the gateway polls a Modbus bus: PATH or NAME=PATH."),
    ] = None,
    interval_s: Annotated[
        float | None, typer.Option(help="Override every device's reporting interval (s).")
    ] = None,
    faults: Annotated[
        str | None,
        typer.Option(
            help="Serial line faults, e.g. corrupt=0.05,truncate=0.02,garbage=0.01,"
            "bitflip=0.01,duplicate=0.02,reorder=0.02"
        ),
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="Scheduled fault: KIND,at=S[,for=S][,jump=S][,target=ID] with KIND "
            "unplug|dead_slave|broker_drop|clock_jump|reboot."
        ),
    ] = None,
    duration_s: Annotated[
        float | None, typer.Option(help="Stop by itself after this many real seconds.")
    ] = None,
    mqtt_faults: Annotated[
        str | None, typer.Option(help="MQTT faults, e.g. duplicate=0.05 (same seq twice).")
    ] = None,
    replicate: Annotated[
        int, typer.Option(min=1, max=1000, help="Copies of every MQTT/serial device (load).")
    ] = 1,
    year_type: Annotated[
        str | None,
        typer.Option(help="Override the year type: ordinary, drought, record-flood or auto."),
    ] = None,
    sensor_faults: Annotated[
        str | None,
        typer.Option(
            help="Sensor faults for every sensor, e.g. preset=realistic or "
            "fouling_per_day=0.02,stuck_per_month=2,spikes=0.001,dropouts=0.05,"
            "dead_battery_at=+3600"
        ),
    ] = None,
) -> None:
    """Run the scenario's devices live until SIGTERM/SIGINT; prints 'sim ready' when up.

    SIGUSR1 pulls out (then, on the next SIGUSR1, puts back) every serial/Modbus adapter;
    SIGUSR2 drops every MQTT device's connection for 5 simulated seconds.
    """
    scn = _override(_load(scenario), seed=None, year_type=year_type, sensor_faults=sensor_faults)
    from firmware_sim.runner import RunOptions

    opts = RunOptions(
        speed=speed,
        start=start,
        seed=seed,
        mqtt_host=mqtt_host,
        mqtt_port=mqtt_port,
        serial_paths=_paths(serial_link),
        modbus_paths=_paths(modbus_link),
        interval_s=interval_s,
        serial_faults=parse_serial_faults(faults) if faults else None,
        schedule=[parse_fault(f) for f in fault or []],
        mqtt_duplicate=parse_mqtt_faults(mqtt_faults).duplicate if mqtt_faults else None,
        replicate=replicate,
    )
    code = asyncio.run(_run(scn, opts, duration_s))
    raise typer.Exit(code)


async def _run(scn: Scenario, opts: object, duration_s: float | None) -> int:
    from firmware_sim.ptylink import PtyError
    from firmware_sim.runner import RunOptions, SimError, Simulation

    assert isinstance(opts, RunOptions)

    def say(line: str) -> None:
        print(line, flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    try:
        async with Simulation(scn, opts, say, abort=stop) as sim:
            unplugged = False

            def toggle_unplug() -> None:
                nonlocal unplugged
                unplugged = not unplugged
                for lk in sim.serial_links.values():
                    (lk.unplug if unplugged else lk.replug)()
                    say(f"sim {'unplugged' if unplugged else 'replugged'} {lk.name}")
                for b in sim.buses.values():
                    (b.bridge.unplug_b if unplugged else b.bridge.plug_b)()
                    say(f"sim {'unplugged' if unplugged else 'replugged'} {b.name}")

            def drop() -> None:
                for m in sim.mqtt.values():
                    m.drop(5.0)
                say("sim broker drop all")

            loop.add_signal_handler(signal.SIGUSR1, toggle_unplug)
            loop.add_signal_handler(signal.SIGUSR2, drop)
            n_modbus = sum(len(b.devices) for b in sim.buses.values())
            say(
                f"sim devices {len(sim.devices)} (mqtt {len(sim.mqtt)}, serial "
                f"{len(sim.serial_nodes)}, modbus {n_modbus})"
            )
            say("sim ready")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(duration_s):
                    await stop.wait()
        # After the context closed: the serial links have added their fault counts.
        stats: dict[str, float] = dict(sim.stats)
        elapsed = time.monotonic() - started
        stats["elapsed_s"] = round(elapsed, 3)
        stats["mqtt_per_s"] = round(sim.stats["mqtt_published"] / max(elapsed, 1e-9), 1)
        say("sim stats " + json.dumps(stats, sort_keys=True))
    except (SimError, PtyError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


def read_hamlet_gateways(path: Path) -> dict[str, tuple[str, str]]:
    """``{"hamlet": {"gateway": ID, "token": T}}`` JSON, or lines ``HAMLET GATEWAY TOKEN``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise _fail(f"{path}: cannot read the gateways file: {err.strerror}") from err
    out: dict[str, tuple[str, str]] = {}
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise _fail(f"{path}: not valid JSON: {err}") from err
        for hamlet_id, v in data.items() if isinstance(data, dict) else []:
            if not (isinstance(v, dict) and isinstance(v.get("gateway"), str)):
                raise _fail(f"{path}: {hamlet_id!r} needs {{'gateway': ID, 'token': TOKEN}}")
            out[hamlet_id] = (v["gateway"], str(v.get("token", "")))
    else:
        for n, line in enumerate(text.splitlines(), 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) != 3:
                raise _fail(f"{path}:{n}: expected 'HAMLET GATEWAY TOKEN'")
            out[parts[0]] = (parts[1], parts[2])
    if not out:
        raise _fail(f"{path}: no hamlet -> gateway lines")
    return out


@app.command()
def backfill(  # noqa: PLR0917 - typer maps parameters to options
    server: Annotated[str, typer.Option(help="Server base URL, e.g. http://127.0.0.1:8080")],
    token: Annotated[
        str | None, typer.Option(envvar="HAMLET_SIM_TOKEN", help="The gateway's bearer token.")
    ] = None,
    gateway: Annotated[str | None, typer.Option(help="Gateway id the token belongs to.")] = None,
    gateways_file: Annotated[
        Path | None,
        typer.Option(
            help="One gateway per hamlet: lines 'HAMLET GATEWAY TOKEN' or JSON "
            "{hamlet: {gateway, token}} (instead of --gateway/--token)."
        ),
    ] = None,
    scenario: ScenarioOpt = "demo",
    days: Annotated[float, typer.Option(help="Days of history ending now.")] = 7.0,
    end: Annotated[
        str | None, typer.Option(help="End of the history instead of now (ISO, local time).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    year_type: Annotated[
        str | None,
        typer.Option(help="Override the year type: ordinary, drought, record-flood or auto."),
    ] = None,
    interval_s: Annotated[
        float | None, typer.Option(help="Override every device's reporting interval (s).")
    ] = None,
    hamlet: Annotated[
        str | None, typer.Option(help="Only this hamlet's devices (multi-hamlet scenarios).")
    ] = None,
    sensor_faults: Annotated[
        str | None,
        typer.Option(
            help="Sensor faults for every sensor, e.g. preset=realistic or "
            "fouling_per_day=0.02,stuck_per_month=2,spikes=0.001,dropouts=0.05"
        ),
    ] = None,
    seq_start: Annotated[int, typer.Option(help="First gateway sequence number.")] = 1,
    batch_records: Annotated[
        int,
        typer.Option(min=1, help="Records per uplink batch at most (the server's limits apply)."),
    ] = 10_000,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Post N days of a scenario's history to the server's ingest API, one gateway a hamlet.

    The server files a gateway's devices under that gateway's hamlet, so each hamlet of the
    scenario needs its own gateway (--gateways-file), or pick one with --hamlet. Gateway
    sequence numbers run seq_start, seq_start+1, … per gateway; a rerun with the same
    options is idempotent (the server counts duplicates). / Nạp dữ liệu lịch sử lên máy chủ.
    """
    from firmware_sim.backfill import BackfillOptions, GatewayCred
    from firmware_sim.backfill import backfill as run_backfill
    from firmware_sim.timebase import parse_start
    from firmware_sim.uplink import UplinkError

    scn = _load(scenario)
    scn = _override(scn, seed=seed, year_type=year_type, sensor_faults=sensor_faults)
    hamlet_ids = [h.id for h in scn.hamlets]
    if hamlet is not None and hamlet not in hamlet_ids:
        raise _fail(f"--hamlet {hamlet!r} is not in scenario {scn.name!r}")
    creds: dict[str, GatewayCred] = {}
    if gateways_file is not None:
        if gateway or token:
            raise _fail("give either --gateways-file or --gateway/--token, not both")
        mapping = read_hamlet_gateways(gateways_file)
        unknown = sorted(set(mapping) - set(hamlet_ids))
        if unknown:
            raise _fail(
                f"{gateways_file}: hamlet(s) {', '.join(unknown)} are not in scenario "
                f"{scn.name!r} (its hamlets: {', '.join(hamlet_ids)})"
            )
        wanted = [hamlet] if hamlet else hamlet_ids
        missing = [h for h in wanted if h not in mapping]
        if missing:
            raise _fail(
                f"{gateways_file}: no gateway for hamlet(s) {', '.join(missing)}; add a line "
                "'HAMLET GATEWAY TOKEN' for each (hamlet server add-gateway ID --hamlet HAMLET)"
            )
        creds = {h: GatewayCred(*mapping[h]) for h in wanted}
    else:
        if not gateway or not token:
            raise _fail("pass --gateway and --token (or --gateways-file)")
        if hamlet is None and len(hamlet_ids) > 1:
            raise _fail(
                f"scenario {scn.name!r} has {len(hamlet_ids)} hamlets ({', '.join(hamlet_ids)}); "
                "the server files a gateway's devices under that gateway's hamlet, so pass "
                "--hamlet HAMLET for this gateway's hamlet, or --gateways-file with one "
                "gateway per hamlet"
            )
        creds = {hamlet or hamlet_ids[0]: GatewayCred(gateway, token)}
    opts = BackfillOptions(
        server=server,
        gateways=creds,
        days=days,
        interval_s=interval_s,
        end=parse_start(end) if end else None,
        seq_start=seq_start,
        batch_records=batch_records,
    )
    started = time.monotonic()
    try:
        stats = asyncio.run(run_backfill(scn, opts, show_progress=not quiet))
    except UplinkError as err:
        raise _fail(str(err)) from err
    secs = time.monotonic() - started
    most = max((p.records for p in opts.per_gateway.values()), default=0)
    typer.echo(
        f"backfill done: {stats.records} records in {stats.batches} batches, "
        f"{stats.accepted} accepted, {stats.duplicates} duplicates, {stats.rejected} rejected, "
        f"{secs:.1f} s ({stats.records / max(secs, 1e-9):,.0f} records/s), "
        f"last seq {opts.seq_start + most - 1}"
    )
    for gw, p in sorted(opts.per_gateway.items()):
        typer.echo(
            f"gateway {gw}: {p.records} records in {p.batches} batches, last seq "
            f"{opts.seq_start + p.records - 1}"
        )


def _override(
    scn: Scenario, *, seed: int | None, year_type: str | None, sensor_faults: str | None
) -> Scenario:
    """The scenario with command-line overrides applied (validated like the file)."""
    from pydantic import ValidationError

    from firmware_sim.scenario import Scenario as ScenarioModel

    data = scn.model_dump()
    if seed is not None:
        data["seed"] = seed
    if year_type is not None:
        data["year_type"] = year_type
    if sensor_faults is not None:
        data["faults"]["sensor"] = _key_values(sensor_faults, "--sensor-faults")
    try:
        return ScenarioModel.model_validate(data)
    except ValidationError as err:
        e = err.errors()[0]
        raise _fail(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}") from err


def _key_values(text: str, option: str) -> dict[str, str]:
    data: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, val = part.partition("=")
        if not sep:
            raise _fail(f"{option}: {part!r} is not KEY=VALUE")
        data[key.strip()] = val.strip()
    return data


@app.command()
def fleet(  # noqa: PLR0917 - typer maps parameters to options
    server: Annotated[str, typer.Option(help="Server base URL.")],
    tokens_file: Annotated[
        Path, typer.Option(help="JSON {gateway: token} or lines 'GATEWAY TOKEN'.")
    ],
    gateways: Annotated[
        int | None, typer.Option(help="Use only the first N gateways of the file.")
    ] = None,
    scenario: ScenarioOpt = "demo",
    duration_s: Annotated[float, typer.Option(help="How long to post (s).")] = 30.0,
    days: Annotated[float, typer.Option(help="History each gateway replays.")] = 7.0,
    batch_records: Annotated[int, typer.Option(help="Records per batch.")] = 2000,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at most.")] = 64,
) -> None:
    """Many gateways posting uplinks concurrently; prints throughput and latency."""
    from firmware_sim.fleet import FleetError, read_tokens, run_fleet
    from firmware_sim.uplink import UplinkError

    scn = _load(scenario)
    try:
        tokens = read_tokens(tokens_file)
    except FleetError as err:
        raise _fail(str(err)) from err
    if gateways is not None:
        tokens = dict(list(tokens.items())[:gateways])
    try:
        report = asyncio.run(
            run_fleet(
                scn,
                server,
                tokens,
                duration_s=duration_s,
                days=days,
                batch_records=batch_records,
                concurrency=concurrency,
            )
        )
    except* UplinkError as group:
        raise _fail("; ".join(str(e) for e in group.exceptions)) from group
    for line in report.lines():
        typer.echo(line)


@app.command()
def scenarios() -> None:
    """List the built-in scenarios."""
    from firmware_sim.scenario import builtin_names, load_scenario

    for name in builtin_names():
        scn = load_scenario(name)
        typer.echo(
            f"{name:24} {len(scn.hamlets)} hamlet(s), {len(scn.devices):3} devices  "
            f"{scn.description}"
        )


@app.command()
def describe(
    scenario: ScenarioOpt = "demo",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show a scenario's devices: ids, transports, metrics, Modbus profiles and addresses."""
    from firmware_sim.catalog import describe_devices

    scn = _load(scenario)
    rows = describe_devices(scn)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{scn.name}: {scn.description}")
    for col in ("id", "hamlet", "model", "transport", "where", "metrics", "events"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["id"],
            r["hamlet"],
            r["model"],
            r["transport"],
            r["where"],
            ", ".join(r["metrics"]),
            ", ".join(r["events"]),
        )
    Console().print(table)


@app.command()
def profiles() -> None:
    """Show the Modbus register profiles the simulated slaves implement."""
    from firmware_sim.profiles import PROFILES

    for p in PROFILES.values():
        typer.echo(f"{p.name}: {p.title} (address {p.default_address}, {p.baudrate} 8N1)")
        for r in p.registers:
            kind = "int16" if r.signed else "uint16"
            typer.echo(f"  holding {r.address}: {r.metric} = raw × {r.scale:g} {r.unit} ({kind})")


@app.command()
def modem(
    link: Annotated[Path, typer.Option(help="Where the modem appears (a symlink to its pty).")],
    record: Annotated[
        Path | None, typer.Option(help="Append each SMS sent as a JSON line here (fsynced).")
    ] = None,
    duration_s: Annotated[float | None, typer.Option(help="Stop after this long.")] = None,
    unanswered_sends: Annotated[
        int, typer.Option(help="The first N sends go out but are never answered (a crash).")
    ] = 0,
    stalled_sends: Annotated[
        int, typer.Option(help="The first N sends from storage (AT+CMSS) hang: nothing goes.")
    ] = 0,
) -> None:
    """A GSM modem (SIM7600-like AT commands) on a pty; prints each SMS it sends.
    / Modem GSM mô phỏng; in ra mỗi tin nhắn gửi đi."""
    state = (unanswered_sends, stalled_sends)
    raise typer.Exit(asyncio.run(_modem(link, record, duration_s, state)))


async def _modem(
    link: Path, record: Path | None, duration_s: float | None, faults: tuple[int, int]
) -> int:
    from firmware_sim.gsm_modem import GsmModemSim, ModemState
    from firmware_sim.ptylink import PtyError

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        state = ModemState(unanswered_sends=faults[0], stalled_sends=faults[1])

        def notice(text: str) -> None:
            print(f"modem {text}", flush=True)

        async with GsmModemSim(link, state, notice) as sim:
            print(f"modem ready on {link}", flush=True)
            stopping = asyncio.create_task(stop.wait())
            deadline = None if duration_s is None else loop.time() + duration_s
            shown = 0
            while not stop.is_set():
                sent = asyncio.create_task(sim.wait_sent(len(sim.sent) + 1, timeout=1e9))
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                await asyncio.wait({sent, stopping}, timeout=timeout,
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                sent.cancel()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await sent
                messages = sim.messages()
                for number, text in messages[shown:]:
                    _record_sms(record, number, text)
                    print(f"modem sms to {number}: {text}", flush=True)
                shown = len(messages)
                if deadline is not None and loop.time() >= deadline:
                    break
            stopping.cancel()
    except PtyError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


def _record_sms(record: Path | None, number: str, text: str) -> None:
    """One line per complete message, on disk before it is printed: a test counting what a
    phone received must see every one, whatever happens to the processes around it."""
    if record is None:
        return
    line = json.dumps({"number": number, "text": text, "at": time.time()}, ensure_ascii=False)
    with record.open("a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
