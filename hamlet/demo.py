"""``hamlet demo``: broker, server, gateway and a simulated hamlet, every arrow a real transport.

The embedded amqtt broker runs in this process; the server, the gateway and the simulator
are child processes of their own (``hamlet server run``, ``hamlet gateway run``,
``hamlet sim run``), talking over MQTT, pseudo-terminals and HTTP exactly as in the field.
Every child is started in its own process group and stopped (SIGTERM, then SIGKILL) on the
way out, whatever the way out is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import httpx
from rich.console import Console
from rich.live import Live
from rich.text import Text

from gateway import control_protocol
from hamlet.broker import EmbeddedBroker

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

GATEWAY_ID: Final = "gw-demo"
HAMLET_ID: Final = "dinh-phuoc"
START_TIMEOUT_S: Final = 90.0


@dataclass(frozen=True)
class DemoDevice:
    """A device as an admin registers it (`hamlet server add-device`)."""

    id: str
    hamlet: str
    kind: str = "sensor"  # sensor | kiosk | radio | wifi
    name: str = ""
    crop: str | None = None  # salinity thresholds
    expected_interval_s: int = 2


# What an admin would register, so the page shows names rather than "unconfirmed" devices.
# Ids match firmware_sim's demo scenario.
DEMO_DEVICES: Final[tuple[DemoDevice, ...]] = (
    DemoDevice("kiosk-1", HAMLET_ID, "kiosk", "Ki-ốt nhà văn hóa ấp"),
    DemoDevice("radio-1", HAMLET_ID, "radio", "Cụm loa thông minh"),
    DemoDevice("wifi-1", HAMLET_ID, "wifi", "Wi-Fi công cộng nhà văn hóa"),
    DemoDevice("wx-1", HAMLET_ID, "sensor", "Trạm thời tiết"),
    DemoDevice("sal-1", HAMLET_ID, "sensor", "Độ mặn cống ấp", "durian"),
    DemoDevice("wl-1", HAMLET_ID, "sensor", "Mực nước kênh"),
    DemoDevice("awd-1", HAMLET_ID, "sensor", "Ruộng lúa ướt khô xen kẽ", "rice"),
    DemoDevice("soil-1", HAMLET_ID, "sensor", "Đất vườn sầu riêng", "durian"),
    DemoDevice("sal-2", HAMLET_ID, "sensor", "Độ mặn ao lấy nước", "rice"),
)


# The moment of each scenario worth seeing first; its history is replayed to end "now".
# kiosk-outage: Tuesday mid-morning, the commune kiosk is down in service hours.
# october-flood: the evening high tide over alarm III (2.29 m, the record). dry-season-salinity:
# salt far up the canals.
SCENARIO_MOMENTS: Final[dict[str, str]] = {
    "kiosk-outage": "2026-11-24T10:30:00",
    "october-flood": "2025-10-21T17:30:00",
    "dry-season-salinity": "2026-03-15T14:00:00",
}
REPLAY_DAYS: Final = 3.0
# The demo's subscriber: a farmer who gets the hamlets' alerts by SMS through the simulated
# modem (firmware_sim/gsm_modem.py on a pty), as the server would through a real SIM7600.
DEMO_PHONE: Final = "+84912345678"
DEMO_SUBSCRIBER: Final = "Chú Bảy (demo)"
SMS_WAIT_S: Final = 60.0  # how long a scenario run waits to show its first SMS
# Salinity and field-water sensors are judged for rice, the Delta's main crop.
_DEMO_CROP: Final = {"salinity": "rice", "field_water": "rice"}
_KIND: Final = {"kiosk": "kiosk", "radio": "radio", "hotspot": "wifi"}


class DemoError(Exception):
    """A part of the demo could not start; the message says which and why."""


@dataclass
class Child:
    """A child process whose output lines are kept (last 200) and can be waited on."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    lines: list[str] = field(default_factory=list)
    _waiters: list[tuple[re.Pattern[str], asyncio.Future[re.Match[str]]]] = field(
        default_factory=list
    )
    _pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        self._pump = asyncio.create_task(self._read(), name=f"demo-{self.name}-output")

    async def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        with self.log_path.open("a", encoding="utf-8") as log:
            async for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                log.write(line + "\n")
                log.flush()
                self.lines = [*self.lines[-199:], line]
                for rx, fut in list(self._waiters):
                    m = rx.search(line)
                    if m and not fut.done():
                        fut.set_result(m)
        code = await self.proc.wait()
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(
                    DemoError(f"{self.name} exited (code {code}) before it was ready")
                )

    async def wait_for(self, pattern: str, timeout: float = START_TIMEOUT_S) -> re.Match[str]:
        rx = re.compile(pattern)
        for line in self.lines:
            m = rx.search(line)
            if m:
                return m
        fut: asyncio.Future[re.Match[str]] = asyncio.get_running_loop().create_future()
        self._waiters.append((rx, fut))
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError as err:
            raise DemoError(f"{self.name} did not become ready in {timeout:.0f}s") from err
        except DemoError as err:
            tail = "\n".join(self.lines[-15:])
            raise DemoError(f"{err}\n--- last output of {self.name} ---\n{tail}") from err

    async def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.proc.wait()
        # Whatever it started and left behind goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
        if self._pump is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def write_gateway_config(
    path: Path,
    *,
    run_dir: Path,
    server_url: str,
    token: str,
    mqtt_port: int,
    serial: Path,
    modbus: Path,
) -> GatewayConfig:
    """The demo gateway's config, written and validated by what `hamlet gateway init` uses."""
    from gateway.installer.init import InitAnswers, InitError, ModbusDeviceSpec, write_config

    answers = InitAnswers(
        gateway_id=GATEWAY_ID, server_url=server_url, token=token, hamlet=HAMLET_ID,
        data_dir=run_dir / "gateway", serial_ports=[str(serial)], modbus_port=str(modbus),
        modbus_devices=[
            ModbusDeviceSpec("soil-1", "soil-npk-7in1", 1, 2.0),
            ModbusDeviceSpec("sal-2", "sensecap-s-ec-01", 2, 2.0),
        ],
        mqtt_port=mqtt_port,
        settings={
            "heartbeat_interval_s": 10,
            # A desktop's OS keeps time; a Pi uses "auto" (timesyncd / adjtimex).
            "clock": {"sync": "always"},
            # A demo shows readings at once; a Pi keeps the default window (60 s).
            "buffer": {"durability_window_s": 0.2, "max_bytes": 64 * 1024 * 1024},
        },
    )  # fmt: skip
    try:
        return write_config(path, answers, force=False, by="hamlet demo")
    except InitError as err:
        raise DemoError(f"the demo gateway's config is not valid: {err}") from err


def register(
    data_dir: Path,
    hamlets: Mapping[str, str],
    gateways: Mapping[str, str],
    devices: Sequence[DemoDevice],
    commune: tuple[str, str] | None = None,
) -> dict[str, tuple[str, str]]:
    """Write hamlets ({id: name}, public, in ``commune`` if given), their gateways
    ({hamlet: gateway id}) and ``devices`` into the server's registry, with the functions the
    admin CLI (`hamlet server add-hamlet/add-gateway/add-device`) uses; the one way the demo
    registers anything. Returns {hamlet: (gateway, token)} for the gateways added now."""
    from hamlet.config import load_config
    from server import audit, registry
    from server.config import ENV_PREFIX, ServerConfig
    from server.models import DeviceIn
    from server.store.schema import open_db

    cfg = load_config(
        ServerConfig,
        None,
        env_prefix=ENV_PREFIX,
        extra={"environment": "development", "data_dir": str(data_dir)},
    )
    conn = open_db(cfg.ledger_path)
    creds: dict[str, tuple[str, str]] = {}
    try:
        if commune is not None:
            registry.add_commune(conn, *commune)
        for h, name in hamlets.items():
            registry.add_hamlet(
                conn, h, commune=commune[0] if commune else None, name=name, public=True
            )
            gw = gateways[h]
            if registry.gateway_by_id(conn, gw) is None:
                creds[h] = (gw, registry.add_gateway(conn, gw, h))
                audit.record(conn, "demo", audit.Action.GATEWAY_ADDED, gw)
        for d in devices:
            registry.upsert_device(
                conn,
                d.hamlet,
                DeviceIn.model_validate(
                    {"id": d.id, "kind": d.kind, "name": d.name, "crop": d.crop,
                     "gateway": gateways[d.hamlet], "expected_interval_s": d.expected_interval_s}
                ),
            )  # fmt: skip
    finally:
        conn.close()
    return creds


@dataclass(frozen=True)
class Replay:
    hamlets: list[str]
    records: int


def register_scenario(data_dir: Path, name: str) -> dict[str, tuple[str, str]]:
    """The scenario's hamlets and devices, and one gateway a hamlet; {hamlet: (gw, token)}."""
    from firmware_sim.scenario import ScenarioError, load_scenario

    try:
        scn = load_scenario(name)
    except ScenarioError as err:
        raise DemoError(str(err)) from err
    devices = [
        DemoDevice(
            d.id, d.hamlet, _KIND.get(str(d.model), "sensor"), d.id,
            _DEMO_CROP.get(str(d.model)), max(1, round(d.interval_s)),
        )
        for d in scn.devices
    ]  # fmt: skip
    return register(
        data_dir,
        {h.id: h.name for h in scn.hamlets},
        {h.id: f"gw-{h.id}"[:64] for h in scn.hamlets},
        devices,
    )


async def replay_scenario(
    url: str, data_dir: Path, name: str, *, now: float | None = None, quiet: bool = True
) -> Replay:
    """Post ``REPLAY_DAYS`` of scenario ``name``'s history ending at its moment of interest,
    shifted in time so that moment is now: its dangers and outages are current on the pages."""
    from firmware_sim.backfill import BackfillOptions, GatewayCred, backfill
    from firmware_sim.scenario import load_scenario
    from firmware_sim.timebase import parse_start
    from firmware_sim.uplink import UplinkError

    creds = register_scenario(data_dir, name)
    scn = load_scenario(name)
    moment = (
        parse_start(SCENARIO_MOMENTS[scn.name])
        if scn.name in SCENARIO_MOMENTS
        else parse_start(str(scn.start)) + REPLAY_DAYS * 86400
    )
    now = time.time() if now is None else now
    opts = BackfillOptions(
        server=url,
        gateways={h: GatewayCred(gw, tok) for h, (gw, tok) in creds.items()},
        days=REPLAY_DAYS,
        end=moment,
        shift_s=now - moment,
    )
    try:
        stats = await backfill(scn, opts, show_progress=not quiet)
    except UplinkError as err:
        raise DemoError(f"replaying scenario {name!r} failed: {err}") from err
    return Replay(sorted(creds), stats.records)


def subscribe_demo_farmer(data_dir: Path, hamlets: list[str]) -> None:
    """The demo subscriber, subscribed to the danger alerts of ``hamlets`` (what
    `hamlet server notify add-subscriber` / `subscribe` write)."""
    from server.notify.model import Severity
    from server.notify.store import NotifyStore

    store = NotifyStore(data_dir / "notify.sqlite3")
    try:
        subs = [s for s in store.subscribers() if s.phone == DEMO_PHONE]
        sub = subs[0] if subs else store.add_subscriber(
            DEMO_SUBSCRIBER, phone=DEMO_PHONE, hamlet=hamlets[0]
        )  # fmt: skip
        have = {u.hamlet for u in store.subscriptions(sub.id)}
        for h in hamlets:
            if h not in have:
                store.subscribe(sub.id, h, min_severity=Severity.DANGER)
    finally:
        store.close()


def sms_delivered(data_dir: Path) -> list[dict[str, object]]:
    """SMS rows of the server's delivery log that the modem took."""
    from server.notify.store import NotifyStore

    store = NotifyStore(data_dir / "notify.sqlite3")
    try:
        return [r for r in store.deliveries() if r["channel"] == "sms" and r["status"] == "sent"]
    finally:
        store.close()


@dataclass
class Figures:
    received: int = 0
    missing: int = 0
    buffered: int | None = None
    uploaded: int | None = None


async def _server_figures(url: str) -> tuple[int, int]:
    async with httpx.AsyncClient(timeout=2.0) as client:
        resp = await client.get(f"{url}/api/v1/gateways")
        resp.raise_for_status()
        for gw in resp.json():
            if gw.get("id") == GATEWAY_ID:
                return int(gw.get("received", 0)), int(gw.get("missing", 0))
    return 0, 0


async def _gateway_figures(control: Path) -> tuple[int | None, int | None]:
    """Ask the running gateway over its control socket (what `hamlet gateway status` does)."""
    try:
        st = await asyncio.to_thread(control_protocol.status, control, 2.0)
    except (control_protocol.ControlError, OSError):
        return None, None
    return st.buffer.depth, st.uplink.uploaded


def _status_line(fig: Figures, started: float, url: str) -> Text:
    up = int(time.monotonic() - started)
    t = Text()
    t.append(f"{url}  ", style="bold cyan")
    t.append(f"received/đã nhận {fig.received:,}  ", style="green")
    t.append(f"buffered/đang đệm {fig.buffered if fig.buffered is not None else '–'}  ")
    t.append(f"uploaded/đã gửi {fig.uploaded if fig.uploaded is not None else '–'}  ")
    t.append(f"missing/thiếu {fig.missing}  ", style="red" if fig.missing else "dim")
    t.append(f"{up // 60:02d}:{up % 60:02d}", style="dim")
    return t


async def _show_first_sms(modem: Child, data_dir: Path, console: Console) -> None:
    """The scenario's alerts reach the demo farmer's phone: show the first SMS the modem sent
    and its row in the server's delivery log (or say that none came, and where to look)."""
    try:
        m = await modem.wait_for(r"^modem sms to (\S+): (.*)$", timeout=SMS_WAIT_S)
    except DemoError:
        console.print(f"  [yellow]no SMS within {SMS_WAIT_S:.0f}s[/yellow] (see logs/modem.log)")
        return
    rows = await asyncio.to_thread(sms_delivered, data_dir)
    status = (
        f"delivery log: {len(rows)} alert message(s) sent by SMS"
        if rows
        else "delivery log: not settled yet"
    )
    console.print(f"  [bold]SMS sent / đã gửi SMS[/bold] to {m.group(1)}: {m.group(2)}  ({status})")


@contextlib.asynccontextmanager
async def _children() -> AsyncIterator[list[Child]]:
    started: list[Child] = []
    try:
        yield started
    finally:
        # Stop in reverse order: sim, gateway (flushes its buffer), then the server.
        for child in reversed(started):
            await child.stop()


async def run_demo(
    port: int, minutes: float | None, console: Console, scenario: str | None = None
) -> int:
    if port and not port_is_free(port):
        console.print(
            f'[red]Port {port} is in use.[/red] Pick another: make demo ARGS="--port 8090" '
            f"(or --port 0 for any free port)."
        )
        return 2
    port = port or free_port()
    run_dir = Path(tempfile.mkdtemp(prefix="hamlet-demo-"))
    (run_dir / "server").mkdir()
    (run_dir / "gateway").mkdir()
    logs = run_dir / "logs"
    logs.mkdir()
    hamlet = [sys.executable, "-m", "hamlet"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", HAMLET_SERVER__ENVIRONMENT="development")
    url = f"http://127.0.0.1:{port}"
    mqtt_port = free_port()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    console.print(f"[bold]Smart-hamlet demo / Demo ấp thông minh[/bold] — files in {run_dir}")
    async with EmbeddedBroker("127.0.0.1", mqtt_port), _children() as children:
        console.print(f"  MQTT broker (amqtt) on 127.0.0.1:{mqtt_port}")
        creds = register(
            run_dir / "server", {HAMLET_ID: "Ấp Định Phước"}, {HAMLET_ID: GATEWAY_ID},
            DEMO_DEVICES, commune=("dinh-mon", "Xã Định Môn"),
        )  # fmt: skip
        token = creds[HAMLET_ID][1]
        subscribe_demo_farmer(run_dir / "server", [HAMLET_ID])

        modem_link = run_dir / "tty-modem"
        modem = Child(
            "modem",
            [*hamlet, "sim", "modem", "--link", str(modem_link),
             "--record", str(logs / "sms-sent.jsonl")],
            env, logs / "modem.log",
        )  # fmt: skip
        children.append(modem)
        await modem.start()
        await modem.wait_for(r"^modem ready")
        env = dict(env, HAMLET_SERVER__NOTIFY__MODEM__PORT=str(modem_link))
        console.print(f"  GSM modem (simulated SIM7600) on {modem_link}: SMS to {DEMO_PHONE}")

        server = Child(
            "server",
            [*hamlet, "server", "run", "--data-dir", str(run_dir / "server"),
             "--host", "127.0.0.1", "--port", str(port)],
            env, logs / "server.log",
        )  # fmt: skip
        children.append(server)
        await server.start()
        await server.wait_for(r"listening on http://")
        console.print(f"  server on {url}")
        if scenario and scenario != "demo":
            from firmware_sim.scenario import ScenarioError, load_scenario

            try:
                scenario_hamlets = [h.id for h in load_scenario(scenario).hamlets]
            except ScenarioError as err:
                raise DemoError(str(err)) from err
            subscribe_demo_farmer(run_dir / "server", scenario_hamlets)
            replay = await replay_scenario(url, run_dir / "server", scenario)
            pages = "  ".join([*(f"{url}/h/{h}" for h in replay.hamlets), f"{url}/staff"])
            console.print(
                f"  scenario {scenario}: {replay.records:,} records replayed to end now — {pages}"
            )
            await _show_first_sms(modem, run_dir / "server", console)

        serial, modbus = run_dir / "tty-serial", run_dir / "tty-modbus"
        sim = Child(
            "sim",
            [*hamlet, "sim", "run", "--scenario", "demo", "--mqtt-host", "127.0.0.1",
             "--mqtt-port", str(mqtt_port), "--serial-link", str(serial),
             "--modbus-link", str(modbus), "--interval-s", "2"],
            env, logs / "sim.log",
        )  # fmt: skip
        children.append(sim)
        await sim.start()
        await sim.wait_for(r"^sim ready")
        console.print("  simulated hamlet: MQTT kiosk & sensors, serial LoRa node, RS485 Modbus")

        cfg = run_dir / "gateway.toml"
        write_gateway_config(
            cfg, run_dir=run_dir, server_url=url, token=token, mqtt_port=mqtt_port,
            serial=serial, modbus=modbus,
        )  # fmt: skip
        gateway = Child(
            "gateway", [*hamlet, "gateway", "run", "--config", str(cfg)], env,
            logs / "gateway.log",
        )  # fmt: skip
        children.append(gateway)
        await gateway.start()
        await gateway.wait_for(rf"gateway {GATEWAY_ID} running")

        console.print(
            f"\n[bold green]Dashboard / Bảng điều khiển: {url}/[/bold green]   "
            f"(Ctrl-C to stop / Ctrl-C để dừng)\n"
        )
        deadline = time.monotonic() + minutes * 60 if minutes else None
        started = time.monotonic()
        fig = Figures()
        control = control_protocol.socket_path(run_dir / "gateway")
        # A terminal gets one live line; a pipe or a log file gets a plain line every 10 s.
        live = Live(
            _status_line(fig, started, url),
            console=console,
            refresh_per_second=2,
            auto_refresh=console.is_terminal,
            transient=not console.is_terminal,  # plain lines already said it all
        )
        last_plain = 0.0
        with live:
            while not stop.is_set():
                for child in children:
                    if child.proc is not None and child.proc.returncode is not None:
                        tail = "\n".join(child.lines[-15:])
                        raise DemoError(f"{child.name} stopped unexpectedly:\n{tail}")
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    fig.received, fig.missing = await _server_figures(url)
                fig.buffered, fig.uploaded = await _gateway_figures(control)
                if console.is_terminal:
                    live.update(_status_line(fig, started, url))
                elif time.monotonic() - last_plain >= 10.0:
                    last_plain = time.monotonic()
                    console.print(_status_line(fig, started, url), soft_wrap=True)
                timeout = 1.0
                if deadline is not None:
                    timeout = min(timeout, max(0.0, deadline - time.monotonic()))
                    if timeout == 0.0:
                        break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await stop.wait()
        console.print("Stopping / Đang dừng…")
    console.print(
        f"Stopped cleanly. Received {fig.received:,} records, missing {fig.missing}. Logs: {logs}"
    )
    return 0
