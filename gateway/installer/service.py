"""``hamlet gateway install-service`` / ``uninstall-service``: a Pi set up from the wheel.

Everything installed comes from the package data under ``gateway/share/`` (systemd unit,
journald limits, the field broker's Mosquitto config when present), so a Pi installed with
pip has all it needs. The installation is a plan of steps computed from what is on disk;
applying it changes only what differs, so a second run reports every step "unchanged" and
runs no command. ``--dry-run`` prints the plan; ``--root DIR`` writes the files under a
scratch root and runs no system command (user accounts, ownership, systemctl).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final

from gateway.config import load_gateway_config
from hamlet.config import ConfigError

USER: Final = "hamlet"
SERIAL_GROUP: Final = "dialout"  # owns /dev/ttyUSB* and /dev/serial/by-id/* on Debian
UNIT_NAME: Final = "hamlet-gateway.service"
UNIT_PATH: Final = Path("/etc/systemd/system") / UNIT_NAME
JOURNALD_PATH: Final = Path("/etc/systemd/journald.conf.d/hamlet.conf")
MOSQUITTO_DIR: Final = Path("/etc/mosquitto/conf.d")
CONFIG_PATH: Final = Path("/etc/hamlet/gateway.toml")
# The unit as shipped names this venv; the installer writes the running one instead.
_SHIPPED_EXEC: Final = "/opt/hamlet/venv/bin/hamlet"
_SHIPPED_DATA_DIR: Final = "/var/lib/hamlet"


class ServiceError(Exception):
    """The service cannot be installed; the message says what to do."""


class Change(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    REMOVED = "removed"
    SKIPPED = "skipped"
    RAN = "ran"


def share() -> Traversable:
    """The package data shipped in the wheel (``gateway/share/``)."""
    return resources.files("gateway") / "share"


@dataclass(frozen=True)
class FileStep:
    path: Path  # absolute path on the target system
    content: bytes
    mode: int
    owner: tuple[str, str] = ("root", "root")


@dataclass(frozen=True)
class DirStep:
    path: Path
    mode: int
    owner: tuple[str, str] = (USER, USER)


@dataclass(frozen=True)
class CommandStep:
    argv: tuple[str, ...]
    why: str
    # Run only when one of these paths changed (empty: whenever the condition says so).
    after: tuple[Path, ...] = ()


@dataclass
class Report:
    lines: list[tuple[Change, str]] = field(default_factory=list)

    def add(self, change: Change, what: str) -> None:
        self.lines.append((change, what))

    @property
    def changed(self) -> bool:
        return any(c not in {Change.UNCHANGED, Change.SKIPPED} for c, _ in self.lines)


@dataclass(frozen=True)
class Target:
    """Where files go: the real system (root ``/``) or a scratch root for tests."""

    root: Path = Path("/")
    dry_run: bool = False

    @property
    def scratch(self) -> bool:
        return self.root != Path("/")

    def at(self, path: Path) -> Path:
        return self.root / path.relative_to("/")


# ----------------------------------------------------------------------------- the plan


def hamlet_executable() -> str:
    """The ``hamlet`` script of the environment running this command (the Pi's venv)."""
    beside = Path(sys.executable).parent / "hamlet"
    if beside.exists():
        return str(beside)
    found = shutil.which("hamlet")
    if found is None:
        raise ServiceError(
            "cannot find the 'hamlet' program of this installation; run install-service "
            "with the venv's own hamlet (e.g. sudo /opt/hamlet/venv/bin/hamlet gateway "
            "install-service) / không tìm thấy chương trình hamlet"
        )
    return found


def unit_text(executable: str, data_dir: Path, config: Path) -> str:
    text = (share() / "systemd" / UNIT_NAME).read_text(encoding="utf-8")
    return (
        text.replace(_SHIPPED_EXEC, executable)
        .replace(f"ReadWritePaths={_SHIPPED_DATA_DIR}", f"ReadWritePaths={data_dir}")
        .replace(f"HAMLET_GATEWAY_CONFIG={CONFIG_PATH}", f"HAMLET_GATEWAY_CONFIG={config}")
    )


def mosquitto_templates() -> list[str]:
    """Field broker configs shipped as templates (``*.conf.in``): they need this hamlet's
    LAN address, so they are rendered by the broker command, not copied here."""
    d = share() / "mosquitto"
    if not d.is_dir():
        return []
    return sorted(t.name for t in d.iterdir() if t.name.endswith(".conf.in"))


def mosquitto_files() -> Iterator[tuple[str, bytes]]:
    """The field broker's config files shipped under ``share/mosquitto/`` (if any)."""
    d = share() / "mosquitto"
    if not d.is_dir():
        return
    for item in sorted(d.iterdir(), key=lambda t: t.name):
        if item.is_file() and item.name.endswith(".conf"):
            yield item.name, item.read_bytes()


def plan_files(config_src: Path, executable: str) -> tuple[list[DirStep], list[FileStep]]:
    try:
        cfg = load_gateway_config(config_src)
    except ConfigError as err:
        raise ServiceError(
            f"{err}\nWrite the config first: hamlet gateway init -c {config_src} ... "
            f"/ Tạo tệp cấu hình trước bằng 'hamlet gateway init'."
        ) from err
    data_dir = cfg.data_dir.absolute()
    dirs = [
        DirStep(CONFIG_PATH.parent, 0o750, ("root", USER)),
        DirStep(data_dir, 0o750),
    ]
    files = [
        # The token is in the config: readable by root and the gateway's group only.
        FileStep(CONFIG_PATH, config_src.read_bytes(), 0o640, ("root", USER)),
        FileStep(UNIT_PATH, unit_text(executable, data_dir, CONFIG_PATH).encode(), 0o644),
        FileStep(JOURNALD_PATH, (share() / "journald" / "hamlet.conf").read_bytes(), 0o644),
    ]
    files.extend(FileStep(MOSQUITTO_DIR / name, body, 0o644) for name, body in mosquitto_files())
    return dirs, files


def post_commands() -> list[CommandStep]:
    mosq = tuple(MOSQUITTO_DIR / name for name, _ in mosquitto_files())
    return [
        CommandStep(("systemctl", "daemon-reload"), "load the new unit", (UNIT_PATH,)),
        CommandStep(
            ("systemctl", "restart", "systemd-journald"), "apply log limits", (JOURNALD_PATH,)
        ),
        CommandStep(("systemctl", "restart", "mosquitto"), "apply the field broker config", mosq),
        CommandStep(("systemctl", "enable", UNIT_NAME), "start at boot", (UNIT_PATH,)),
    ]


# ---------------------------------------------------------------------------- applying

_WOULD: Final = {
    Change.CREATED: "would create",
    Change.UPDATED: "would update",
    Change.REMOVED: "would remove",
    Change.RAN: "would run",
}


def _ids(owner: tuple[str, str]) -> tuple[int, int]:
    try:
        return pwd.getpwnam(owner[0]).pw_uid, grp.getgrnam(owner[1]).gr_gid
    except KeyError as err:
        raise ServiceError(f"no such user or group: {owner}") from err


def _owned(path: Path, owner: tuple[str, str]) -> bool:
    st = path.stat()
    return (st.st_uid, st.st_gid) == _ids(owner)


class Installer:
    """Applies a plan to a :class:`Target`, reporting each step; ``say`` prints a line."""

    def __init__(self, target: Target, say: Callable[[str], None]) -> None:
        self.target = target
        self.say = say
        self.report = Report()
        self._changed: set[Path] = set()

    @property
    def _system(self) -> bool:
        """Whether accounts, ownership and services are managed (the real root only)."""
        return not self.target.scratch

    def _note(self, change: Change, what: str, content: bytes | None = None) -> None:
        self.report.add(change, what)
        label = _WOULD.get(change, change) if self.target.dry_run else change
        self.say(f"{label}: {what}")
        if content is not None and self.target.dry_run:
            # The dry run shows every file in full (the config's token is masked).
            for ln in content.decode("utf-8", "replace").splitlines():
                masked = "token = <hidden>" if ln.replace(" ", "").startswith("token=") else ln
                self.say(f"    | {masked}")

    def run(self, argv: tuple[str, ...], why: str) -> None:
        cmd = " ".join(argv)
        if not self._system:
            self._note(Change.SKIPPED, f"$ {cmd}  ({why}; not run under --root)")
            return
        if self.target.dry_run:
            self._note(Change.RAN, f"$ {cmd}  ({why})")
            return
        res = subprocess.run(argv, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise ServiceError(f"'{cmd}' failed ({res.returncode}): {res.stderr.strip()}")
        self._note(Change.RAN, f"$ {cmd}  ({why})")

    def ensure_user(self) -> None:
        if not self._system:
            self.run(("useradd", "--system", "...", USER), "the gateway's account")
            return
        try:
            pwd.getpwnam(USER)
        except KeyError:
            self.run(
                ("useradd", "--system", "--user-group", "--home-dir", _SHIPPED_DATA_DIR,
                 "--no-create-home", "--shell", "/usr/sbin/nologin", USER),
                "the gateway's own unprivileged account",
            )  # fmt: skip
        else:
            self._note(Change.UNCHANGED, f"user {USER}")
        try:
            members = grp.getgrnam(SERIAL_GROUP).gr_mem
        except KeyError:
            members = []
        if USER in members:
            self._note(Change.UNCHANGED, f"user {USER} in group {SERIAL_GROUP}")
        else:
            self.run(("usermod", "-aG", SERIAL_GROUP, USER), "serial adapters")

    def ensure_dir(self, step: DirStep) -> None:
        path = self.target.at(step.path)
        if path.is_dir():
            right = (path.stat().st_mode & 0o777) == step.mode and (
                not self._system or self.target.dry_run or _owned(path, step.owner)
            )
            if right:
                self._note(Change.UNCHANGED, f"{step.path}/")
                return
            change = Change.UPDATED
        else:
            change = Change.CREATED
        if not self.target.dry_run:
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(step.mode)
            if self._system:
                os.chown(path, *_ids(step.owner))
        self._note(change, f"{step.path}/ (mode {step.mode:04o}, {':'.join(step.owner)})")

    def ensure_file(self, step: FileStep) -> None:
        path = self.target.at(step.path)
        if path.is_file():
            same = (
                path.read_bytes() == step.content
                and (path.stat().st_mode & 0o777) == step.mode
                and (not self._system or _owned(path, step.owner))
            )
            if same:
                self._note(Change.UNCHANGED, str(step.path))
                return
            change = Change.UPDATED
        else:
            change = Change.CREATED
        self._changed.add(step.path)
        if not self.target.dry_run:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            # Created with the final mode, so the token is never readable by others.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, step.mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(step.content)
            os.chmod(tmp, step.mode)
            if self._system:
                os.chown(tmp, *_ids(step.owner))
            tmp.replace(path)
        self._note(
            change, f"{step.path} (mode {step.mode:04o}, {':'.join(step.owner)})", step.content
        )

    def commands(self, steps: list[CommandStep]) -> None:
        for c in steps:
            if any(p in self._changed for p in c.after):
                self.run(c.argv, c.why)

    def remove(self, path: Path) -> None:
        p = self.target.at(path)
        if not p.exists():
            self._note(Change.UNCHANGED, f"{path} (not installed)")
            return
        self._changed.add(path)
        if not self.target.dry_run:
            p.unlink()
        self._note(Change.REMOVED, str(path))


def _need_root(target: Target) -> None:
    if not target.scratch and not target.dry_run and os.geteuid() != 0:
        raise ServiceError(
            "installing a service needs root: run it with sudo (or --dry-run to see the plan, "
            "--root DIR to write into a scratch directory) / cần quyền root: chạy với sudo"
        )


def install(config_src: Path, target: Target, say: Callable[[str], None]) -> Report:
    _need_root(target)
    executable = hamlet_executable()
    dirs, files = plan_files(config_src, executable)
    inst = Installer(target, say)
    inst.ensure_user()
    for d in dirs:
        inst.ensure_dir(d)
    for f in files:
        # Installing the config onto itself (the usual case after 'init') changes nothing.
        inst.ensure_file(f)
    inst.commands(post_commands())
    for template in mosquitto_templates():
        conf = MOSQUITTO_DIR / template.removesuffix(".in")
        if not target.at(conf).exists():
            say(
                f"todo: {conf} is rendered from gateway/share/mosquitto/{template} for this "
                "hamlet's LAN address: see 'The field broker' in the installer guide"
            )
    return inst.report


def uninstall(target: Target, say: Callable[[str], None]) -> Report:
    """Stop and remove the unit and the installed system config; keep data and config."""
    _need_root(target)
    inst = Installer(target, say)
    unit_there = inst.target.at(UNIT_PATH).exists()
    if unit_there:
        inst.run(("systemctl", "disable", "--now", UNIT_NAME), "stop the gateway")
    inst.remove(UNIT_PATH)
    inst.remove(JOURNALD_PATH)
    for name, _ in mosquitto_files():
        inst.remove(MOSQUITTO_DIR / name)
    inst.commands(post_commands()[:3])
    return inst.report
