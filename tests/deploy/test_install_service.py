"""``hamlet gateway install-service`` / ``uninstall-service`` under a scratch root, the unit
it installs (the promises docs/installer-guide.md makes), and systemd's own verdict on it."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.installer.service import mosquitto_files
from tests.conftest import require_tool
from tests.support.procs import run_hamlet

INSTALLED = [
    "etc/hamlet/gateway.toml",
    "etc/systemd/system/hamlet-gateway.service",
    "etc/systemd/journald.conf.d/hamlet.conf",
]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    run_hamlet(
        "gateway", "init", "-c", str(path), "--gateway-id", "gw-dinh-phuoc",
        "--server-url", "https://hamlet.example.vn", "--token", "t" * 32, "--no-prompt",
        "--serial", "/dev/serial/by-id/usb-FTDI-if00-port0",
    )  # fmt: skip
    return path


def _install(config: Path, root: Path, *extra: str) -> list[str]:
    return run_hamlet(
        "gateway", "install-service", "-c", str(config), "--root", str(root), *extra
    ).splitlines()


def _unit(path: Path) -> configparser.RawConfigParser:
    cp = configparser.RawConfigParser(strict=False)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(path)
    return cp


def test_install_twice_changes_nothing_the_second_time(config: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = _install(config, root)
    for rel in INSTALLED:
        assert any(ln.startswith(f"created: /{rel} ") for ln in first), (rel, first)
    assert any(ln.startswith("created: /var/lib/hamlet/") for ln in first), first
    assert first[-2] == "install-service: done / xong"
    snapshot = {p: (p.read_bytes(), p.stat().st_mode) for p in root.rglob("*") if p.is_file()}
    assert len(snapshot) == len(INSTALLED) + len(list(mosquitto_files()))
    for name, body in mosquitto_files():
        assert (root / "etc/mosquitto/conf.d" / name).read_bytes() == body

    second = _install(config, root)
    assert second[-1] == "install-service: unchanged / không có gì thay đổi"
    changed = [ln for ln in second if ln.startswith(("created", "updated", "skipped: $ systemctl"))]
    assert changed == []
    assert {p: (p.read_bytes(), p.stat().st_mode) for p in root.rglob("*") if p.is_file()} == (
        snapshot
    )
    # The token is in the config: never readable by others.
    assert (root / INSTALLED[0]).stat().st_mode & 0o777 == 0o640
    assert (root / "var/lib/hamlet").is_dir()


def test_a_changed_file_is_put_back_and_only_it(config: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    _install(config, root)
    unit = root / INSTALLED[1]
    unit.write_text(unit.read_text().replace("Restart=always", "Restart=no"))
    out = _install(config, root)
    assert [ln.split(" ")[0] for ln in out if ln.startswith(("created", "updated"))] == ["updated:"]
    assert "Restart=always" in unit.read_text()
    assert "skipped: $ systemctl daemon-reload  (load the new unit; not run under --root)" in out


def test_dry_run_prints_every_file_and_command_and_writes_nothing(
    config: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    out = _install(config, root, "--dry-run")
    assert not root.exists()
    for rel in INSTALLED:
        assert any(ln.startswith(f"would create: /{rel} ") for ln in out), rel
    assert "    | Restart=always" in out  # file contents are shown...
    assert not any("t" * 32 in ln for ln in out)  # ...but never the token
    assert any("$ systemctl daemon-reload" in ln for ln in out)
    assert any("$ useradd" in ln for ln in out)


def test_uninstall_removes_the_service_and_keeps_data_and_config(
    config: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    _install(config, root)
    (root / "var/lib/hamlet/buffer.db").write_bytes(b"precious")
    out = run_hamlet("gateway", "uninstall-service", "--root", str(root)).splitlines()
    assert "removed: /etc/systemd/system/hamlet-gateway.service" in out
    assert not (root / INSTALLED[1]).exists()
    assert not (root / INSTALLED[2]).exists()
    assert (root / INSTALLED[0]).exists()
    assert (root / "var/lib/hamlet/buffer.db").read_bytes() == b"precious"
    again = run_hamlet("gateway", "uninstall-service", "--root", str(root)).splitlines()
    assert again[-1] == "uninstall-service: unchanged / không có gì thay đổi"


def test_installed_unit_keeps_its_promises(config: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    _install(config, root)
    u = _unit(root / INSTALLED[1])
    svc = u["Service"]
    assert svc["Restart"] == "always"
    assert int(svc["RestartSec"]) > 0
    assert u["Unit"]["StartLimitIntervalSec"] == "0"
    assert svc["User"] == "hamlet"
    assert "dialout" in svc["SupplementaryGroups"]
    assert svc["ReadWritePaths"] == "/var/lib/hamlet"
    # The unit runs the very installation that installed it (any venv path works).
    exe = svc["ExecStart"].split()[0]
    assert Path(exe).parent == Path(sys.executable).parent
    assert svc["ExecStart"].endswith("gateway run --config ${HAMLET_GATEWAY_CONFIG}")
    assert svc["StandardOutput"] == "journal"
    assert u["Install"]["WantedBy"] == "multi-user.target"
    journal = _unit(root / INSTALLED[2])["Journal"]
    assert journal["SystemMaxUse"] == "100M"
    assert journal["MaxRetentionSec"]


def test_systemd_accepts_the_installed_unit(config: Path, tmp_path: Path) -> None:
    # .ci/run installs systemd, so CI (HAMLET_STRICT_TESTS=1) always runs this.
    tool = require_tool("systemd-analyze")
    root = tmp_path / "root"
    _install(config, root)
    res = subprocess.run(
        [tool, "verify", str(root / INSTALLED[1])], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert not (res.stdout + res.stderr).strip(), res.stdout + res.stderr


def test_install_without_a_config_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="hamlet gateway init"):
        _install(tmp_path / "missing.toml", tmp_path / "root")
