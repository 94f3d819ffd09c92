"""Broker users: a password file entry and an ACL block per device (and for the gateway).

Both files are Mosquitto's own formats, rewritten atomically, and every change is
idempotent: adding a user again with the same password and rules leaves both files byte for
byte as they were. Passwords go to ``mosquitto_passwd`` on its stdin when it is installed
(never on its command line, where ``ps`` shows them); without it the entry is written here in
the format Mosquitto 2 reads: ``$7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512>``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from hamlet.contract import is_ident

# mosquitto_passwd's own choices (Mosquitto 2.0): 101 iterations, 12-byte salt.
PBKDF2_ITERATIONS: Final = 101
SALT_BYTES: Final = 12
GATEWAY_USER: Final = "hamlet-gateway"
FILE_MODE: Final = 0o640
_TOOL: Final = "mosquitto_passwd"
_ACL_USER: Final = re.compile(r"^user\s+(\S+)\s*$")

Preset = Literal["hamlet", "tasmota", "esphome"]


class CredentialsError(Exception):
    """A broker user could not be added; the message says what to do."""


# ---------------------------------------------------------------- password file


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return (
        f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}$"
        f"{base64.b64encode(digest).decode()}"
    )


def verify_password(encoded: str, password: str) -> bool:
    """True when ``encoded`` (a ``$7$`` entry) is ``password``; False for other formats."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        salt, want = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    except ValueError:
        return False
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
    return hmac.compare_digest(got, want)


def read_passwords(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        user, sep, encoded = line.partition(":")
        if sep and user and not line.startswith("#"):
            out[user] = encoded
    return out


def set_password(path: Path, user: str, password: str, *, use_tool: bool = True) -> bool:
    """Give ``user`` this password; False when it already had it (file untouched)."""
    _check_user(user)
    if not password or "\n" in password or len(password) > 512:
        raise CredentialsError("a password is 1-512 characters on one line")
    current = read_passwords(path)
    if user in current and verify_password(current[user], password):
        return False
    tool = shutil.which(_TOOL) if use_tool else None
    if tool is not None:
        _with_tool(tool, path, user, password)
    else:
        current[user] = hash_password(password)
        _write(path, "".join(f"{u}:{h}\n" for u, h in current.items()))
    return True


def _with_tool(tool: str, path: Path, user: str, password: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    argv = [tool, *([] if path.exists() else ["-c"]), str(path), user]
    # It asks twice ("Password:", "Reenter password:"): answer on stdin.
    done = subprocess.run(
        argv, input=f"{password}\n{password}\n", capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise CredentialsError(
            f"{_TOOL} failed for {path}: {done.stderr.strip() or done.stdout.strip()}"
        )
    _own(path)


# ---------------------------------------------------------------- ACL


@dataclass(frozen=True)
class Acl:
    preamble: list[str]  # lines before the first 'user' (rules for everyone: keep empty)
    blocks: dict[str, list[str]]  # user -> its 'topic ...' lines

    def text(self) -> str:
        out = list(self.preamble)
        for user, rules in self.blocks.items():
            if out and out[-1] != "":
                out.append("")
            out += [f"user {user}", *rules]
        return "\n".join(out) + "\n"


_ACL_HEADER: Final = [
    "# Mosquitto ACL of the hamlet gateway's field broker. Managed by",
    "# 'hamlet gateway broker add-device' / 'add-gateway': one block per user.",
    "# A device publishes only under its own topics; only the gateway subscribes.",
]


def read_acl(path: Path) -> Acl:
    if not path.exists():
        return Acl(list(_ACL_HEADER), {})
    preamble: list[str] = []
    blocks: dict[str, list[str]] = {}
    user: str | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        m = _ACL_USER.match(raw.strip())
        if m:
            user = m.group(1)
            blocks.setdefault(user, [])
        elif user is None:
            preamble.append(raw)
        elif raw.strip():
            blocks[user].append(raw.strip())
    while preamble and preamble[-1] == "":
        preamble.pop()
    return Acl(preamble, blocks)


def device_rules(device: str, preset: Preset = "hamlet", prefix: str | None = None) -> list[str]:
    """What a device may do: publish under its own topics (and, for Tasmota, read its own
    command topic). ``prefix`` as in ``[[sources.mqtt]]`` (default per preset)."""
    _check_user(device)
    if preset == "hamlet":
        return [f"topic write {prefix or 'hamlet'}/{device}/#"]
    if preset == "tasmota":
        return [
            f"topic write {prefix or 'tele'}/{device}/#",
            f"topic write stat/{device}/#",
            f"topic read cmnd/{device}/#",
        ]
    return [f"topic write {device}/#"]  # ESPHome: <device>/sensor/<id>/state, <device>/status


def gateway_rules() -> list[str]:
    # Everything the devices publish, and the broker's own counters for the doctor.
    return ["topic read #", "topic read $SYS/#"]


def set_acl(path: Path, user: str, rules: list[str]) -> bool:
    """Make ``user``'s block exactly ``rules``; False when it already was (file untouched)."""
    _check_user(user)
    acl = read_acl(path)
    if acl.blocks.get(user) == rules:
        return False
    acl.blocks[user] = list(rules)
    _write(path, acl.text())
    return True


# ---------------------------------------------------------------- files


def _check_user(user: str) -> None:
    # Device ids become user names and topic levels. The contract's identifier rule keeps
    # out '+', '#', '/' and spaces; it allows ':', but a password-file line is user:hash.
    if not is_ident(user) or ":" in user:
        raise CredentialsError(
            f"{user!r} cannot be a broker user: use letters, digits, '_', '.', '-' "
            "(the device id), at most 64 characters"
        )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _own(path)


def _own(path: Path) -> None:
    """Readable by Mosquitto, not by everyone: owner mosquitto when we are root (Mosquitto
    2.0.16+ warns about files it does not own), mode 0640."""
    os.chmod(path, FILE_MODE)
    if os.geteuid() == 0:
        # No mosquitto user yet (package not installed): root-owned 0640 it stays.
        with contextlib.suppress(LookupError, PermissionError):
            shutil.chown(path, user="mosquitto", group="mosquitto")


def new_password() -> str:
    """A password for a device to be flashed with (URL-safe, 128 bits)."""
    return secrets.token_urlsafe(16)
