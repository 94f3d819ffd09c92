"""docker-compose.yml, Dockerfile and .env.example: what an operator relies on, checked
without a Docker engine (Debian's docker-compose validates the file; the rest is read)."""

from __future__ import annotations

import getpass
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import ENV_PREFIX as GW_ENV_PREFIX
from gateway.config import GatewayConfig
from hamlet.config import load_config
from server.config import ENV_PREFIX, ServerConfig
from tests.conftest import REPO as ROOT
from tests.conftest import require_tool

SECRETS = ("HAMLET_SECRET_KEY", "INFLUX_TOKEN", "INFLUX_PASSWORD")
ONE_SHOTS = {"influx-setup", "demo-register"}


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def _services() -> dict[str, dict[str, Any]]:
    return dict(_compose()["services"])


def test_docker_compose_config_validates() -> None:
    # Debian's docker-compose validates the file without a Docker engine; .ci/run installs it.
    tool = require_tool("docker-compose")
    env = {**os.environ, "HAMLET_SECRET_KEY": "k", "INFLUX_TOKEN": "t", "INFLUX_PASSWORD": "p"}
    env["HAMLET_DOMAIN"] = "localhost"
    for profile in ([], ["--profile", "demo"]):
        res = subprocess.run(
            [tool, *profile, "config", "-q"], cwd=ROOT, env=env, capture_output=True,
            text=True, check=False,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr


def test_compose_refuses_to_start_without_each_secret() -> None:
    tool = require_tool("docker-compose")
    full = {"HAMLET_SECRET_KEY": "k", "INFLUX_TOKEN": "t", "INFLUX_PASSWORD": "p"}
    full["HAMLET_DOMAIN"] = "localhost"
    base = {k: v for k, v in os.environ.items() if k not in full}
    for missing in full:
        env = base | {k: v for k, v in full.items() if k != missing}
        res = subprocess.run(
            [tool, "config", "-q"], cwd=ROOT, env=env, capture_output=True, text=True,
            check=False,
        )  # fmt: skip
        assert res.returncode != 0, missing
        assert missing in res.stderr


def test_the_stack_has_every_part() -> None:
    services = _services()
    assert {"influxdb", "influx-setup", "server", "caddy", "mosquitto"} <= set(services)
    demo = {name for name, s in services.items() if "demo" in s.get("profiles", [])}
    assert demo == {"demo-broker", "demo-register", "demo-gateway", "demo-sim"}


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies() -> None:
    for name, svc in _services().items():
        hc = svc.get("healthcheck")
        assert hc, f"{name} has no healthcheck"
        if name in ONE_SHOTS:
            # A one-shot's health is having finished: its dependants wait for that.
            assert hc == {"disable": True}, name
            assert svc["restart"] == "no", name
        else:
            assert hc["test"][0] in {"CMD", "CMD-SHELL"}, name
            assert svc["restart"] == "unless-stopped", name
        for dep, cond in svc.get("depends_on", {}).items():
            want = "service_completed_successfully" if dep in ONE_SHOTS else "service_healthy"
            assert cond == {"condition": want}, (name, dep)


def test_no_secret_has_a_default() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    refs = re.findall(r"\$\{([A-Z_]+)(:?[-?])?([^}]*)\}", text)
    used = {name for name, _, _ in refs}
    assert set(SECRETS) <= used
    for name, op, _ in refs:
        if name in SECRETS:
            assert op == ":?", f"${{{name}}} must fail when unset, not default"
    # Nothing that looks like a secret value is written in the file itself.
    for svc in _services().values():
        for key, value in (svc.get("environment") or {}).items():
            if re.search(r"TOKEN|SECRET|PASSWORD", key):
                assert str(value).startswith("${"), key
                assert ":?" in str(value), key
    example = (ROOT / ".env.example").read_text()
    for name in SECRETS:
        assert re.search(rf"^{name}=$", example, re.MULTILINE), f"{name} must be empty"


def test_server_image_installs_nothing_at_start() -> None:
    services = _services()
    for name, svc in services.items():
        if svc.get("image", "").startswith("smart-hamlet:"):
            assert svc["build"]["context"] == ".", name
            cmd = " ".join(svc.get("command") or [])
            assert not re.search(r"\b(pip|apt-get|apk|uv)\b", cmd), (name, cmd)
    # And no source tree is mounted into it: the image is what runs.
    for vol in services["server"]["volumes"]:
        assert not vol.startswith(("./", "/src")), vol


def _interpolate(value: str) -> str:
    """Compose's substitution as an operator's .env would fill it: defaults used, required
    values (secrets) given 48 characters."""

    def one(m: re.Match[str]) -> str:
        return m.group(3) if m.group(2) == ":-" else "x" * 48

    return re.sub(r"\$\{([A-Z_]+)(:?[-?])?([^}]*)\}", one, value)


def test_server_config_in_the_image_loads_with_the_compose_environment() -> None:
    server = _services()["server"]
    cmd = server["command"]
    image_path = cmd[cmd.index("--config") + 1]
    copies = _dockerfile_copies()
    cfg_path = ROOT / copies[image_path]
    env = {k: _interpolate(str(v)) for k, v in server["environment"].items()}
    cfg = load_config(ServerConfig, cfg_path, env_prefix=ENV_PREFIX, environ=env)
    assert cfg.store.backend == "influxdb"
    assert cfg.store.influxdb.url == "http://influxdb:8086"
    assert str(cfg.data_dir) == "/data"
    influx_env = _services()["influxdb"]["environment"]
    assert influx_env["DOCKER_INFLUXDB_INIT_ORG"] == cfg.store.influxdb.org
    assert influx_env["DOCKER_INFLUXDB_INIT_BUCKET"] == cfg.store.influxdb.bucket
    setup = _services()["influx-setup"]["command"]
    assert setup[:2] == ["server", "influx-setup"]
    assert setup[setup.index("--config") + 1] == image_path


def test_demo_gateway_config_loads() -> None:
    cfg = load_config(
        GatewayConfig,
        ROOT / "deploy/demo/gateway.toml",
        env_prefix=GW_ENV_PREFIX,
        environ={f"{GW_ENV_PREFIX}__UPLINK__TOKEN": "t" * 32},
    )
    assert str(cfg.uplink.url).startswith("http://server:8000")
    assert cfg.sources.mqtt[0].host == "demo-broker"


def test_mosquitto_refuses_anonymous_and_persists() -> None:
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text().splitlines()
    settings = dict(ln.split(None, 1) for ln in conf if ln.strip() and not ln.startswith("#"))
    assert settings["allow_anonymous"] == "false"
    assert settings["persistence"] == "true"
    assert settings["password_file"].startswith("/mosquitto/auth/")
    assert settings["acl_file"].startswith("/mosquitto/auth/")
    mounts = _services()["mosquitto"]["volumes"]
    assert any(m.startswith("mosquitto-auth:/mosquitto/auth") for m in mounts)
    assert any(m.startswith("mosquitto-data:/mosquitto/data") for m in mounts)


def test_mosquitto_config_is_accepted_by_mosquitto(tmp_path: Path) -> None:
    # Mosquitto itself parses the file (paths redirected into a scratch dir).
    tool = require_tool("mosquitto")
    text = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    (tmp_path / "auth").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "auth/passwd").write_text("")
    (tmp_path / "auth/acl").write_text((ROOT / "deploy/mosquitto/acl").read_text())
    text = (
        text.replace("/mosquitto/", f"{tmp_path}/")
        .replace("listener 1883", f"listener 0 {tmp_path}/m.sock")
        .replace("log_dest stdout", "log_dest stderr")
    )  # stderr is unbuffered
    conf = tmp_path / "m.conf"
    # As root, mosquitto would drop to user 'mosquitto', who cannot read pytest's tmp dir.
    conf.write_text(f"user {getpass.getuser()}\n{text}\nlog_type information\n")
    proc = subprocess.Popen(
        [tool, "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            assert "Error" not in line, line
            if re.search(r"mosquitto version \S+ running", line):
                break
        else:
            pytest.fail("mosquitto exited before running")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- Dockerfile ----------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        buf = f"{buf} {line}" if buf else line
        if buf.endswith("\\"):
            buf = buf[:-1].rstrip()
            continue
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _dockerfile():
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _dockerfile_copies() -> dict[str, str]:
    """Image path -> repository path of single-file COPY instructions (final stage)."""
    out = {}
    for word, rest in _stages()[-1]:
        parts = shlex.split(rest)
        if word == "COPY" and not parts[0].startswith("--") and len(parts) == 2:
            out[parts[1]] = parts[0]
    return out


def test_dockerfile_is_multi_stage_non_root_and_pinned() -> None:
    stages = _stages()
    assert len(stages) >= 2
    build, final = stages[0], stages[-1]
    installs = [rest for word, rest in build if word == "RUN" and "pip install" in rest]
    assert installs
    assert any("-c constraints.txt" in r for r in installs)
    # Installed, not editable: the final image needs no source tree.
    assert not any(" -e " in r for r in installs)
    # The final stage takes the venv from the build stage and compiles nothing itself.
    assert any(w == "COPY" and rest.startswith("--from=build /opt/hamlet") for w, rest in final)
    assert not any(w == "RUN" and re.search(r"pip|apt-get|gcc", r) for w, r in final)
    users = [rest for word, rest in final if word == "USER"]
    assert users
    assert users[-1] not in {"root", "0"}
    # Start-up runs the installed program, nothing else.
    entry = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert entry == ['["hamlet"]']
    assert any(word == "HEALTHCHECK" for word, _ in final)


def test_dockerfile_builds_on_arm64_and_amd64() -> None:
    # No architecture is named anywhere (the base image is multi-arch), and anything
    # without a wheel for the platform can compile in the build stage.
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"amd64|x86_64|aarch64|--platform", "\n".join(
        ln for ln in text.splitlines() if not ln.lstrip().startswith("#")
    ))  # fmt: skip
    froms = [rest for word, rest in _dockerfile() if word == "FROM"]
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms)
    assert any("gcc" in rest for word, rest in _stages()[0] if word == "RUN")


def test_dockerignore_keeps_secrets_and_state_out_of_the_build_context() -> None:
    lines = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*"  # allow-list: .env, .venv, data dirs never enter the context
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    for word, rest in _dockerfile():
        if word == "COPY" and not rest.startswith("--from"):
            for src in shlex.split(rest)[:-1]:
                assert src.split("/")[0] in allowed, src
