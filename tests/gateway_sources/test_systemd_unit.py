"""The systemd unit: the promises docs/installer-guide.md makes about it."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

UNIT = Path(__file__).parents[2] / "deploy" / "systemd" / "hamlet-gateway.service"


def _unit() -> configparser.RawConfigParser:
    cp = configparser.RawConfigParser(strict=False)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(UNIT)
    return cp


def test_unit_promises() -> None:
    u = _unit()
    svc = u["Service"]
    assert svc["Restart"] == "always"
    assert int(svc["RestartSec"]) > 0
    assert u["Unit"]["StartLimitIntervalSec"] == "0"
    assert svc["User"] == "hamlet"
    assert "dialout" in svc["SupplementaryGroups"]
    assert svc["StateDirectory"] == "hamlet"
    assert "hamlet gateway run --config" in svc["ExecStart"]
    assert svc["StandardOutput"] == "journal"
    assert u["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_accepts_every_key() -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return  # checked where systemd exists (a Pi, CI images with systemd)
    res = subprocess.run([tool, "verify", str(UNIT)], capture_output=True, text=True, check=False)
    complaints = [
        line for line in (res.stdout + res.stderr).splitlines()
        # The venv path exists only on an installed Pi.
        if line.strip() and "is not executable" not in line
    ]  # fmt: skip
    assert not complaints, complaints
