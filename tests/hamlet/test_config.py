"""Config loading: TOML + env overrides, errors that name the file, the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import GatewayConfig
from hamlet.config import ConfigError, env_overrides, load_config

MINIMAL = """
id = "gw-1"
data_dir = "/tmp/x"
[uplink]
url = "https://hamlet.example.vn"
token = "secret-token-value"
"""


def test_loads_a_valid_file(tmp_path: Path) -> None:
    p = tmp_path / "gateway.toml"
    p.write_text(MINIMAL)
    cfg = load_config(GatewayConfig, p, env_prefix="HAMLET_GATEWAY", environ={})
    assert cfg.id == "gw-1"
    assert str(cfg.uplink.url) == "https://hamlet.example.vn/"
    # Secrets stay secret in reprs and logs.
    assert "secret-token-value" not in repr(cfg)


def test_env_overrides_nested_keys(tmp_path: Path) -> None:
    p = tmp_path / "gateway.toml"
    p.write_text(MINIMAL)
    env = {
        "HAMLET_GATEWAY__UPLINK__URL": "http://10.0.0.1:8080",
        "HAMLET_GATEWAY__HEARTBEAT_INTERVAL_S": "5",
    }
    cfg = load_config(GatewayConfig, p, env_prefix="HAMLET_GATEWAY", environ=env)
    assert str(cfg.uplink.url) == "http://10.0.0.1:8080/"
    assert cfg.heartbeat_interval_s == 5


def test_error_names_file_key_and_what_is_allowed(tmp_path: Path) -> None:
    p = tmp_path / "gateway.toml"
    text = MINIMAL.replace('url = "https://hamlet.example.vn"', 'url = "not a url"')
    p.write_text("heartbeat_interval_s = 0\n" + text)
    with pytest.raises(ConfigError) as exc:
        load_config(GatewayConfig, p, env_prefix="HAMLET_GATEWAY", environ={})
    msg = str(exc.value)
    assert str(p) in msg
    assert "uplink.url" in msg
    assert "heartbeat_interval_s" in msg
    assert "greater than or equal to 1" in msg


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "gateway.toml"
    p.write_text(MINIMAL + "\nheartbeat_intervall_s = 5\n")
    with pytest.raises(ConfigError, match="heartbeat_intervall_s: Extra inputs are not permitted"):
        load_config(GatewayConfig, p, env_prefix="HAMLET_GATEWAY", environ={})


def test_missing_file_tells_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="hamlet gateway init"):
        load_config(GatewayConfig, tmp_path / "nope.toml", env_prefix="X", environ={})


def test_broken_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    p = tmp_path / "gateway.toml"
    p.write_text("id = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(GatewayConfig, p, env_prefix="X", environ={})


@given(
    st.dictionaries(
        st.from_regex(r"[A-Z_]{1,12}", fullmatch=True), st.text(max_size=20), max_size=8
    )
)
def test_env_parser_never_crashes(env: dict[str, str]) -> None:
    prefixed = {f"HAMLET_X__{k}": v for k, v in env.items()}
    out = env_overrides("HAMLET_X", prefixed)
    assert isinstance(out, dict)
