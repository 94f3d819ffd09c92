"""docker-compose.yml: well-formed, and the server service's config really loads."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from hamlet.config import load_config
from server.config import ENV_PREFIX, ServerConfig
from tests.conftest import require_tool

ROOT = Path(__file__).parents[2]


def test_compose_services_and_server_config() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert set(doc["services"]) == {"server", "mosquitto", "influxdb"}
    server = doc["services"]["server"]
    cmd = server["command"]
    cfg_path = ROOT / cmd.split("--config ", 1)[1].split()[0].replace("/src/", "")
    env = {k: ("x" * 48 if "${" in str(v) else str(v)) for k, v in server["environment"].items()}
    cfg = load_config(ServerConfig, cfg_path, env_prefix=ENV_PREFIX, environ=env)
    assert cfg.store.backend == "influxdb"
    assert cfg.store.influxdb.url == "http://influxdb:8086"
    assert str(cfg.data_dir) == "/data"
    influx_env = doc["services"]["influxdb"]["environment"]
    assert influx_env["DOCKER_INFLUXDB_INIT_ORG"] == cfg.store.influxdb.org
    assert influx_env["DOCKER_INFLUXDB_INIT_BUCKET"] == cfg.store.influxdb.bucket


def test_docker_compose_config_validates() -> None:
    # Debian's docker-compose validates the file without a Docker engine; .ci/run installs it.
    tool = require_tool("docker-compose")
    env = {**os.environ, "HAMLET_SECRET_KEY": "k", "INFLUX_TOKEN": "t", "INFLUX_PASSWORD": "p"}
    res = subprocess.run(
        [tool, "config", "-q"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
