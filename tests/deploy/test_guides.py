"""The operator and installer guides promise commands, files and an order of steps: each
promise is checked against the code, so a renamed command or a moved file fails here."""

from __future__ import annotations

import re
from typing import Any

import typer
import yaml

from hamlet.cli import app
from tests.conftest import REPO as ROOT

GUIDES = [ROOT / "docs" / "operator-guide.md", ROOT / "docs" / "installer-guide.md"]


def _commands() -> dict[str, set[str]]:
    root: Any = typer.main.get_command(app)
    out = {}
    for name, group in root.commands.items():
        sub = getattr(group, "commands", None)
        if sub is not None:
            out[name] = set(sub)
    return out


def test_every_hamlet_command_in_the_guides_exists() -> None:
    commands = _commands()
    seen = 0
    for guide in GUIDES:
        text = guide.read_text()
        # Commands are what the guides show as code: fenced blocks and inline code spans.
        code = re.findall(r"```.*?```", text, re.DOTALL) + re.findall(r"`[^`\n]+`", text)
        for group, cmd in re.findall(r"\bhamlet (gateway|server) ([a-z][a-z-]+)", "\n".join(code)):
            assert cmd in commands[group], f"{guide.name}: hamlet {group} {cmd}"
            seen += 1
    assert seen > 20


def test_every_compose_service_named_in_the_operator_guide_exists() -> None:
    services = set(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])
    text = (ROOT / "docs" / "operator-guide.md").read_text()
    flat = re.sub(r"\\\n\s*", " ", text)  # shell line continuations
    named = re.findall(
        r"docker compose (?:exec|kill -s HUP|run --rm(?: --no-deps)?(?: -e \S+)*) ([a-z][a-z-]+)",
        flat,
    )
    named += re.findall(r"docker compose cp ([a-z][a-z-]+):", flat)
    assert {"server", "mosquitto", "influx-setup", "caddy"} <= set(named)
    for svc in named:
        assert svc in services, svc


def test_every_env_key_is_explained() -> None:
    keys = re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
    text = (ROOT / "docs" / "operator-guide.md").read_text()
    assert keys
    for key in keys:
        assert key in text, key


def test_installer_guide_installs_the_service_before_doctor() -> None:
    text = (ROOT / "docs" / "installer-guide.md").read_text()
    install = text.index("sudo hamlet gateway install-service\n")
    doctor = text.index("sudo -u hamlet hamlet gateway doctor")
    # The first start after install-service (an optional section before it may stop and
    # start an already-running gateway, e.g. to move its buffer to a USB disk).
    start = text.index("sudo systemctl start hamlet-gateway", install)
    init = text.index("sudo hamlet gateway init")
    # init writes the config, install-service creates the user and data dir doctor checks.
    assert init < install < doctor < start


def test_no_guide_points_at_files_that_moved() -> None:
    for doc in [*ROOT.glob("docs/*.md"), ROOT / "README.md"]:
        assert "deploy/systemd" not in doc.read_text(), doc
    for path in re.findall(r"`((?:deploy|gateway/share)/[\w./-]+)`", "".join(
        g.read_text() for g in GUIDES
    )):  # fmt: skip
        assert (ROOT / path).exists(), path
