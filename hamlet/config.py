"""Load TOML config files into pydantic models, with environment-variable overrides.

Each program (gateway, server, sim) has its own model; this module only does the loading,
so that every program fails the same way: at start-up, naming the file, the key and what is
allowed, before any task starts.

Environment overrides: ``{PREFIX}__SECTION__KEY=value`` (double underscore between levels),
e.g. ``HAMLET_GATEWAY__UPLINK__TOKEN``. Values are parsed as TOML scalars when they can be
(``42``, ``true``, ``"x"``, ``[1, 2]``), else taken as plain strings.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A configuration file or override that cannot be used; the message says how to fix it."""


# Keys whose values are secrets: always strings (a numeric key stays text, never a number),
# and never shown in an error message.
_SECRET_WORDS = ("secret", "token", "password", "key")


def is_secret_key(name: str) -> bool:
    return any(w in name.lower() for w in _SECRET_WORDS)


def _parse_env_value(raw: str, name: str = "") -> Any:
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw
    if is_secret_key(name) and not isinstance(value, str):
        return raw  # a secret made of digits is still text
    return value


def env_overrides(prefix: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Collect ``PREFIX__A__B=v`` variables into a nested dict ``{"a": {"b": v}}``."""
    env = os.environ if environ is None else environ
    head = prefix.upper() + "__"
    out: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(head):
            continue
        path = [p.lower() for p in name[len(head) :].split("__") if p]
        if not path:
            continue
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[path[-1]] = _parse_env_value(raw, path[-1])
    return out


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, val in override.items():
        if isinstance(val, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], val)
        else:
            merged[key] = val
    return merged


def format_validation_error(source: str, err: ValidationError) -> str:
    lines = [f"{source}: invalid configuration ({err.error_count()} problem(s))"]
    for e in err.errors(include_url=False):
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = e.get("input")
        secret = any(is_secret_key(str(p)) for p in e["loc"])
        hidden = secret or isinstance(got, dict | list) or got is None
        shown = "" if hidden else f" (got {got!r})"
        lines.append(f"  - {key}: {e['msg']}{shown}")
    return "\n".join(lines)


def validate_config(model: type[M], data: Mapping[str, Any], *, source: str = "configuration") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(source, err)) from err


def load_config(
    model: type[M],
    path: Path | None,
    *,
    env_prefix: str,
    environ: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> M:
    """Read ``path`` (may be None: defaults only), apply env then ``extra`` overrides, validate."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as err:
            raise ConfigError(
                f"{path}: config file not found. Create one with 'hamlet gateway init' or "
                f"copy an example from the repository's examples/ folder."
            ) from err
        except OSError as err:
            raise ConfigError(f"{path}: cannot read config file: {err.strerror}") from err
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML: {err}") from err
    data = deep_merge(data, env_overrides(env_prefix, environ))
    if extra:
        data = deep_merge(data, extra)
    return validate_config(model, data, source=source)
