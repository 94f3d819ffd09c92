"""The release wheel (``make dist``) is what a Pi installs: built once per test session,
installed into a fresh venv with only the ``gateway`` extra, and the installer's whole path
run from it: init, install-service (twice), doctor against a real server and broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO as ROOT
from tests.support.broker import Broker
from tests.support.procs import start_server


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One wheel per session, built as ``make dist`` builds it (python -m build)."""
    out = tmp_path_factory.mktemp("dist")
    res = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (whl,) = out.glob("smart_hamlet-*.whl")
    return whl


@pytest.fixture(scope="session")
def pi_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel's gateway extra only, pinned like make's install."""
    env_dir = tmp_path_factory.mktemp("pi") / "venv"
    venv.create(env_dir, with_pip=True)
    res = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "-c", str(ROOT / "constraints.txt"), f"{wheel}[gateway]"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return env_dir


def _run(venv_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(
        [str(venv_dir / "bin" / "hamlet"), *args], capture_output=True, text=True,
        timeout=120, check=False, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if res.returncode != 0:
        raise AssertionError(
            f"hamlet {' '.join(args)}: {res.returncode}\n{res.stdout}\n{res.stderr}"
        )
    return res.stdout


def test_wheel_carries_what_a_pi_needs(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    share = sorted(n for n in names if n.startswith("gateway/share/"))
    assert "gateway/share/systemd/hamlet-gateway.service" in share
    assert "gateway/share/journald/hamlet.conf" in share
    on_disk = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "gateway/share").rglob("*") if p.is_file()
    )
    assert share == on_disk  # every file of gateway/share/, e.g. the Mosquitto config
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "Provides-Extra: gateway" in text


@pytest.fixture
def server_and_token(tmp_path: Path) -> Iterator[tuple[str, str]]:
    with start_server(tmp_path / "server") as server:
        yield server.url, server.add_gateway("gw-wheel", "dinh-phuoc")


def test_pi_install_from_the_wheel(
    pi_venv: Path, server_and_token: tuple[str, str], mqtt_broker: Broker, tmp_path: Path
) -> None:
    py = str(pi_venv / "bin" / "python")
    # The gateway never needs the server's packages.
    probe = subprocess.run(
        [py, "-c", "import importlib.util as u; print(u.find_spec('fastapi'), "
         "u.find_spec('influxdb_client'), u.find_spec('paho'))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    none_fastapi, none_influx, paho = probe.stdout.split(" ", 2)
    assert none_fastapi == "None"
    assert none_influx == "None"
    assert paho.strip() != "None"

    # The example configs came along (wheel data, not package data).
    for name in ("gateway.toml", "gateway-kiosk.toml"):
        shipped = pi_venv / "share" / "smart-hamlet" / "examples" / name
        assert shipped.read_bytes() == (ROOT / "examples" / name).read_bytes()

    url, token = server_and_token
    cfg = tmp_path / "gateway.toml"
    _run(
        pi_venv, "gateway", "init", "-c", str(cfg), "--gateway-id", "gw-wheel",
        "--hamlet", "dinh-phuoc", "--server-url", url, "--token", token, "--no-prompt",
        "--mqtt-host", mqtt_broker.host, "--mqtt-port", str(mqtt_broker.port),
    )  # fmt: skip
    root = tmp_path / "root"
    first = _run(pi_venv, "gateway", "install-service", "-c", str(cfg), "--root", str(root))
    assert "created: /etc/systemd/system/hamlet-gateway.service" in first
    unit = (root / "etc/systemd/system/hamlet-gateway.service").read_text()
    assert f"ExecStart={pi_venv}/bin/hamlet gateway run" in unit
    second = _run(pi_venv, "gateway", "install-service", "-c", str(cfg), "--root", str(root))
    assert second.splitlines()[-1] == "install-service: unchanged / không có gì thay đổi"

    # doctor on the installed config; the data dir is the one install-service created.
    report = json.loads(
        _run(
            pi_venv,
            "gateway",
            "doctor",
            "-c",
            str(root / "etc/hamlet/gateway.toml"),
            "--json",
            env={"HAMLET_GATEWAY__DATA_DIR": str(root / "var/lib/hamlet")},
        )
    )
    outcomes = {c["name"]: c["outcome"] for c in report["checks"]}
    assert report["ok"] is True, report
    for name in ("config", "data dir", "server", "token"):
        assert outcomes[name] == "pass", (name, report)
    assert not [c for c in report["checks"] if c["outcome"] == "fail"]
