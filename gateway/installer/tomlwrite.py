"""A small TOML writer for the configs ``hamlet gateway init`` writes.

Only what a gateway config holds: tables, arrays of tables, strings, numbers, booleans and
lists of scalars. (The gateway extra does not ship a TOML writer; reading uses tomllib.)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class TomlWriteError(ValueError):
    pass


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise TomlWriteError(f"cannot write non-finite number {v}")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(v, Sequence):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    raise TomlWriteError(f"cannot write {type(v).__name__} to TOML")


def _is_table_array(v: Any) -> bool:
    return (
        isinstance(v, Sequence)
        and not isinstance(v, str)
        and bool(v)
        and all(isinstance(x, Mapping) for x in v)
    )


def dumps(data: Mapping[str, Any], comments: Mapping[str, str] | None = None) -> str:
    """Serialize ``data``; ``comments`` maps a dotted table path to a comment line above it."""
    out: list[str] = []
    _table(data, [], out, comments or {})
    return "\n".join(out).strip() + "\n"


def _table(
    data: Mapping[str, Any], path: list[str], out: list[str], comments: Mapping[str, str]
) -> None:
    for k, v in data.items():
        if v is None or isinstance(v, Mapping) or _is_table_array(v):
            continue
        out.append(f"{_key(k)} = {_scalar(v)}")
    for k, v in data.items():
        sub = [*path, k]
        dotted = ".".join(sub)
        if isinstance(v, Mapping):
            out.append("")
            if dotted in comments:
                out.append(f"# {comments[dotted]}")
            out.append(f"[{'.'.join(_key(p) for p in sub)}]")
            _table(v, sub, out, comments)
        elif _is_table_array(v):
            for item in v:
                out.append("")
                if dotted in comments:
                    out.append(f"# {comments[dotted]}")
                out.append(f"[[{'.'.join(_key(p) for p in sub)}]]")
                _table(item, sub, out, comments)
