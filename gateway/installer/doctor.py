"""``hamlet gateway doctor``: check everything a gateway needs, say what to do next.

Each check returns a :class:`Check` with pass/fail/warn/skip, what was found, and the next
step in English and Vietnamese. Checks never raise: a check that cannot run is a failure
with its reason, so the installer always gets the whole list.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from gateway.config import GatewayConfig, load_gateway_config
from hamlet.config import ConfigError
from hamlet.contract import UplinkBatch

BUFFER_DB = "buffer.db"  # gateway/buffer/schema.py DB_NAME
HEALTH_PATH = "/healthz"
# Free space we want beyond the buffer's byte budget (SQLite WAL, logs, updates).
_DISK_MARGIN = 256 * 1024 * 1024


class Outcome(StrEnum):
    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "fail"
    WARN = "warn"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Outcome
    detail: str
    fix_en: str = ""
    fix_vi: str = ""

    def as_json(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


def _ok(name: str, detail: str) -> Check:
    return Check(name, Outcome.PASS, detail)


def _fail(name: str, detail: str, en: str, vi: str) -> Check:
    return Check(name, Outcome.FAIL, detail, en, vi)


# ---------------------------------------------------------------- individual checks


def check_config(path: Path) -> tuple[Check, GatewayConfig | None]:
    try:
        cfg = load_gateway_config(path)
    except ConfigError as err:
        return (
            _fail(
                "config", str(err),
                f"Fix {path} as the message says, or write a new one with 'hamlet gateway init'.",
                f"Sửa tệp {path} theo thông báo, hoặc tạo mới bằng 'hamlet gateway init'.",
            ),
            None,
        )  # fmt: skip
    n = len(cfg.sources.serial) + len(cfg.sources.modbus) + len(cfg.sources.mqtt)
    if n == 0:
        return (
            Check("config", Outcome.WARN, f"{path} is valid but has no sources",
                  "Add a [[sources.serial]], [[sources.modbus]] or [[sources.mqtt]] section.",
                  "Thêm ít nhất một nguồn dữ liệu vào tệp cấu hình."),
            cfg,
        )  # fmt: skip
    return _ok("config", f"{path} is valid: gateway {cfg.id}, {n} source(s)"), cfg


def check_data_dir(cfg: GatewayConfig) -> Check:
    d = cfg.data_dir
    if not d.exists():
        return _fail(
            "data dir", f"{d} does not exist",
            "Create it (and the service): sudo hamlet gateway install-service",
            "Tạo thư mục (và dịch vụ): sudo hamlet gateway install-service",
        )  # fmt: skip
    if not os.access(d, os.W_OK):
        return _fail(
            "data dir", f"{d} is not writable by this user",
            f"Run doctor as the gateway user (sudo -u hamlet ...) or fix ownership of {d}.",
            f"Chạy doctor bằng người dùng hamlet hoặc sửa quyền sở hữu thư mục {d}.",
        )  # fmt: skip
    return _ok("data dir", f"{d} exists and is writable")


def check_serial_port(label: str, port: str) -> Check:
    name = f"serial port {label}"
    p = Path(port)
    if not p.exists():
        return _fail(
            name, f"{port} is not there",
            "Plug the USB adapter in; run 'hamlet gateway ports' and use its "
            "/dev/serial/by-id/ path.",
            "Cắm bộ chuyển đổi USB; chạy 'hamlet gateway ports' và dùng đường dẫn "
            "/dev/serial/by-id/.",
        )  # fmt: skip
    if not os.access(p, os.R_OK | os.W_OK):
        return _fail(
            name, f"{port} exists but this user cannot open it",
            "Add the gateway user to the dialout group: sudo usermod -aG dialout hamlet",
            "Thêm người dùng vào nhóm dialout: sudo usermod -aG dialout hamlet",
        )  # fmt: skip
    import serial

    try:
        with serial.Serial(port, timeout=0, exclusive=True):
            pass
    except (serial.SerialException, OSError) as err:
        if "lock" in str(err).lower() or "busy" in str(err).lower():
            return Check(name, Outcome.WARN, f"{port} is in use (the running gateway?)",
                         "Fine if the gateway is running; otherwise find who holds it: fuser -v "
                         + port, "Bình thường nếu gateway đang chạy.")  # fmt: skip
        return _fail(
            name, f"{port} cannot be opened: {err}",
            "Unplug and replug the adapter; check 'dmesg | tail' for USB errors.",
            "Rút và cắm lại bộ chuyển đổi; xem 'dmesg | tail' để tìm lỗi USB.",
        )  # fmt: skip
    return _ok(name, f"{port} present and readable")


async def _modbus_probe(cfg: GatewayConfig) -> list[Check]:
    from pymodbus import FramerType, ModbusException
    from pymodbus.client import AsyncModbusSerialClient

    from gateway.profiles import plan_blocks

    out: list[Check] = []
    for bus in cfg.sources.modbus:
        table = bus.profile_table()
        if not os.path.exists(bus.port):  # noqa: ASYNC240 - a CLI probe; nothing else on this loop
            out.extend(
                Check(f"modbus {d.id}", Outcome.SKIP, f"bus port {bus.port} is missing")
                for d in bus.devices
            )
            continue
        client = AsyncModbusSerialClient(
            bus.port, framer=FramerType.RTU, baudrate=bus.baudrate, parity=bus.parity,
            stopbits=bus.stopbits, bytesize=bus.bytesize, timeout=10, retries=0,
            reconnect_delay=0,
        )  # fmt: skip
        try:
            if not await client.connect():
                out.extend(
                    Check(f"modbus {d.id}", Outcome.SKIP, f"cannot open {bus.port} (in use?)")
                    for d in bus.devices
                )
                continue
            for d in bus.devices:
                blk = plan_blocks(table[d.profile].registers)[0]
                name = f"modbus {d.id}"
                try:
                    async with asyncio.timeout(d.timeout_s * (d.retries + 1)):
                        if blk.function == "holding":
                            rr = await client.read_holding_registers(
                                blk.start, count=blk.count, device_id=d.address
                            )
                        else:
                            rr = await client.read_input_registers(
                                blk.start, count=blk.count, device_id=d.address
                            )
                except (TimeoutError, ModbusException) as err:
                    out.append(_fail(
                        name,
                        f"address {d.address} on {bus.port} does not answer ({err or 'timeout'})",
                        f"Check A/B wiring and power; the sensor's address ({d.address}) and baud "
                        f"rate ({bus.baudrate}) must match its label.",
                        f"Kiểm tra dây A/B và nguồn; địa chỉ ({d.address}) và tốc độ baud "
                        f"({bus.baudrate}) phải đúng với nhãn cảm biến.",
                    ))  # fmt: skip
                    continue
                if rr.isError():
                    out.append(_fail(
                        name, f"address {d.address} answered with a Modbus exception: {rr}",
                        f"The device answers but not as profile {d.profile!r} expects; "
                        "choose the right profile or write a site profile.",
                        f"Thiết bị trả lời nhưng không khớp hồ sơ {d.profile!r}; chọn đúng hồ sơ.",
                    ))  # fmt: skip
                else:
                    out.append(_ok(name, f"address {d.address} answers ({d.profile})"))
                await asyncio.sleep(bus.inter_frame_delay_s)
        finally:
            client.close()
    return out


def check_modbus(cfg: GatewayConfig) -> list[Check]:
    if not any(b.devices for b in cfg.sources.modbus):
        return []
    return asyncio.run(_modbus_probe(cfg))


def check_broker(host: str, port: int, label: str) -> Check:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    name = f"mqtt broker {label}"
    # A throw-away clean session: never the gateway's own client id, whose persistent
    # session holds messages not yet committed.
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"hamlet-doctor-{os.getpid()}")
    client.connect_timeout = 5
    try:
        rc = client.connect(host, port, keepalive=10)
        client.disconnect()
    except OSError as err:
        return _fail(
            name, f"cannot connect to {host}:{port}: {err}",
            "Install and start Mosquitto: sudo apt install mosquitto && sudo systemctl enable "
            "--now mosquitto",
            "Cài và chạy Mosquitto: sudo apt install mosquitto && sudo systemctl enable --now "
            "mosquitto",
        )  # fmt: skip
    if rc != 0:
        return _fail(name, f"{host}:{port} refused the connection (rc={rc})",
                     "Check the broker's listener and allow_anonymous / password settings.",
                     "Kiểm tra cấu hình listener và mật khẩu của broker.")  # fmt: skip
    return _ok(name, f"{host}:{port} accepts connections")


def check_broker_health(
    host: str, port: int, label: str, username: str | None, password: str | None
) -> list[Check]:
    """Warn when the field broker lets anyone in, or has dropped messages (its $SYS)."""
    from gateway.broker.health import (
        CONNECTED,
        DROPPED,
        BrokerUnreachable,
        accepts_anonymous,
        read_sys,
    )

    name = f"mqtt broker {label}"
    try:
        anonymous = accepts_anonymous(host, port)
        counters = read_sys(host, port, username, password)
    except BrokerUnreachable as err:
        return [Check(f"{name} security", Outcome.SKIP, f"cannot tell: {err}")]
    out: list[Check] = []
    if anonymous:
        out.append(Check(
            f"{name} security", Outcome.WARN,
            f"{host}:{port} accepts anonymous clients: anyone on its network can publish "
            "readings or flood the gateway",
            "Install the gateway's broker config and give each device a password: 'hamlet "
            "gateway broker conf', 'hamlet gateway broker add-device' (installer guide, "
            "'The field broker').",
            "Cài cấu hình broker của gateway và cấp mật khẩu cho từng thiết bị: 'hamlet "
            "gateway broker conf', 'hamlet gateway broker add-device'.",
        ))  # fmt: skip
    else:
        out.append(_ok(f"{name} security", f"{host}:{port} refuses anonymous clients"))
    if counters.refused is not None:
        out.append(Check(
            f"{name} counters", Outcome.WARN,
            f"the broker refused the gateway's login ({counters.refused})",
            "Set username/password in sources.mqtt to the gateway's broker user "
            "('hamlet gateway broker add-gateway').",
            "Đặt username/password trong sources.mqtt theo người dùng broker của gateway.",
        ))  # fmt: skip
        return out
    dropped = counters.number(DROPPED)
    if dropped is None:
        out.append(Check(
            f"{name} counters", Outcome.WARN,
            f"no $SYS counters from {host}:{port}: dropped messages cannot be checked",
            "Let the gateway's broker user read $SYS ('hamlet gateway broker add-gateway').",
            "Cho người dùng broker của gateway đọc $SYS ('hamlet gateway broker add-gateway').",
        ))  # fmt: skip
    elif dropped > 0:
        out.append(Check(
            f"{name} dropped", Outcome.WARN,
            f"the broker dropped {dropped} message(s) since it started ({DROPPED}): its "
            "queue for the gateway overflowed, so readings were lost before the gateway",
            "Use the gateway's broker config (max_queued_messages sized for a gateway "
            "restart) and find why the gateway was away: journalctl -u hamlet-gateway.",
            "Dùng cấu hình broker của gateway (max_queued_messages đủ lớn) và xem vì sao "
            "gateway ngừng: journalctl -u hamlet-gateway.",
        ))  # fmt: skip
    else:
        clients = counters.values.get(CONNECTED, "?")
        out.append(_ok(f"{name} dropped", f"0 messages dropped; {clients} client(s) connected"))
    return out


def check_server(cfg: GatewayConfig) -> list[Check]:
    return asyncio.run(_check_server(cfg))


async def _check_server(cfg: GatewayConfig) -> list[Check]:
    import httpx

    from hamlet.ingest_client import IngestClient, Outcome, Unreachable

    base = str(cfg.uplink.url).rstrip("/")
    verify: str | bool = str(cfg.uplink.ca_file) if cfg.uplink.ca_file else True
    unreachable = (
        "Check the URL and the Pi's internet (ping 1.1.1.1; the 3G/4G dongle's signal). "
        "Data is kept on the Pi meanwhile.",
        "Kiểm tra URL và kết nối Internet (3G/4G). Dữ liệu vẫn được lưu trên Pi.",
    )
    out: list[Check] = []
    async with httpx.AsyncClient(timeout=10, verify=verify) as http:
        try:
            r = await http.get(base + HEALTH_PATH)
        except httpx.HTTPError as err:
            return [_fail("server", f"cannot reach {base}: {type(err).__name__}: {err}",
                          *unreachable)]  # fmt: skip
        if r.status_code != 200:
            return [_fail("server", f"{base}{HEALTH_PATH} answered HTTP {r.status_code}",
                          "The server is up but unhealthy: ask its operator.",
                          "Máy chủ phản hồi nhưng không ổn định: liên hệ người quản "
                          "trị.")]  # fmt: skip
        out.append(_ok("server", f"{base} is reachable"))
        # An empty batch: proves the token without storing anything.
        batch = UplinkBatch(gateway=cfg.id, sent_at=int(time.time() * 1000))
        ingest = IngestClient(http, base, cfg.uplink.token.get_secret_value())
        try:
            answer = await ingest.post(ingest.compress(batch.model_dump_json().encode()))
        except Unreachable as err:
            return [_fail("server", f"cannot reach {base}: {err}", *unreachable)]
    if answer.outcome is Outcome.OK:
        out.append(_ok("token", f"the server accepts gateway {cfg.id}'s token"))
    elif answer.outcome is Outcome.AUTH_REFUSED:
        out.append(_fail(
            "token", f"the server rejected the token for {cfg.id} (HTTP {answer.status})",
            f"Get a token with 'hamlet server add-gateway {cfg.id}' on the server, put it in "
            "[uplink] token, and check the gateway id matches.",
            f"Lấy mã bằng 'hamlet server add-gateway {cfg.id}' trên máy chủ và ghi vào [uplink] "
            "token.",
        ))  # fmt: skip
    else:
        out.append(_fail("token", f"ingest answered HTTP {answer.status}: {answer.detail[:200]}",
                         "Ask the server operator; the gateway keeps data meanwhile.",
                         "Liên hệ người quản trị máy chủ."))  # fmt: skip
    return out


def check_clock(cfg: GatewayConfig) -> Check:
    from gateway.clock import Clock

    synced = Clock(cfg.clock).now().synced
    if synced:
        return _ok("clock", "system clock is synchronized")
    return Check(
        "clock", Outcome.WARN, "system clock is NOT synchronized (readings are re-anchored later)",
        "Check NTP: timedatectl status; sudo systemctl restart systemd-timesyncd; a Pi has no "
        "battery clock, so it needs the network once after each power cut.",
        "Kiểm tra đồng bộ giờ: timedatectl status. Pi không có pin đồng hồ, cần mạng sau mỗi "
        "lần mất điện.",
    )  # fmt: skip


def check_disk(cfg: GatewayConfig) -> Check:
    d = cfg.data_dir if cfg.data_dir.exists() else cfg.data_dir.parent
    try:
        usage = shutil.disk_usage(d)
    except OSError as err:
        return _fail("disk", f"cannot stat {d}: {err}", "Check the SD card.", "Kiểm tra thẻ SD.")
    need = cfg.buffer.max_bytes + _DISK_MARGIN
    free_mb = usage.free // (1024 * 1024)
    budget_mb = cfg.buffer.max_bytes // (1024 * 1024)
    if usage.free < need:
        return _fail(
            "disk", f"{free_mb} MiB free on {d}; the buffer may use {budget_mb} MiB",
            "Free space (sudo journalctl --vacuum-size=50M; apt clean) or lower [buffer] "
            "max_bytes.",
            "Giải phóng dung lượng hoặc giảm [buffer] max_bytes.",
        )  # fmt: skip
    return _ok("disk", f"{free_mb} MiB free on {d}")


def _unreadable(db: Path, err: sqlite3.Error) -> Check:
    return _fail("buffer", f"{db} cannot be read: {err}",
                 "Stop the gateway; it moves a corrupt buffer aside and starts a new one "
                 "on start.",
                 "Dừng gateway; khi khởi động lại, gateway sẽ thay tệp hỏng.")  # fmt: skip


def check_buffer(cfg: GatewayConfig) -> Check:
    db = cfg.data_dir / BUFFER_DB
    if not db.exists():
        return Check("buffer", Outcome.SKIP, f"{db} does not exist yet (created on first run)")
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            rows = con.execute("PRAGMA quick_check").fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError as err:
        if getattr(err, "sqlite_errorname", "") != "SQLITE_BUSY":
            return _unreadable(db, err)
        # The running gateway holds its buffer exclusively (no -shm file: fewer SD-card
        # writes); it runs this same check itself at every start.
        return Check("buffer", Outcome.SKIP,
                     f"{db} is in use by the running gateway (it checks the file itself at "
                     "every start; `hamlet gateway status` shows the buffer) / tệp đang được "
                     "gateway dùng")  # fmt: skip
    except sqlite3.Error as err:
        return _unreadable(db, err)
    result = ", ".join(str(r[0]) for r in rows[:3])
    if result != "ok":
        return _fail("buffer", f"{db} quick_check: {result}",
                     "Restart the gateway: it moves the damaged file aside and reports what "
                     "was lost.",
                     "Khởi động lại gateway: tệp hỏng sẽ được thay và báo cáo dữ liệu "
                     "mất.")  # fmt: skip
    return _ok("buffer", f"{db} passes quick_check")


def run_checks(config_path: Path, progress: Callable[[str], None] | None = None) -> list[Check]:
    say = progress or (lambda _s: None)
    say("config")
    first, cfg = check_config(config_path)
    checks = [first]
    if cfg is None:
        return checks
    say("data dir")
    checks.append(check_data_dir(cfg))
    for s in cfg.sources.serial:
        say(f"serial {s.name}")
        checks.append(check_serial_port(s.name, s.port))
    for b in cfg.sources.modbus:
        checks.append(check_serial_port(b.name, b.port))
    say("modbus devices")
    checks.extend(check_modbus(cfg))
    for m in cfg.sources.mqtt:
        say(f"broker {m.name}")
        checks.append(check_broker(m.host, m.port, m.name))
        pw = m.password.get_secret_value() if m.password is not None else None
        checks.extend(check_broker_health(m.host, m.port, m.name, m.username, pw))
    say("server")
    checks.extend(check_server(cfg))
    checks.append(check_clock(cfg))
    checks.append(check_disk(cfg))
    checks.append(check_buffer(cfg))
    return checks


def failed(checks: list[Check]) -> bool:
    return any(c.outcome is Outcome.FAIL for c in checks)
