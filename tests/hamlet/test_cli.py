"""The one `hamlet` CLI: version and helpful --help at every level, in a real process."""

from __future__ import annotations

import pytest

from hamlet import __version__
from tests.support.procs import run_hamlet


def test_version() -> None:
    assert run_hamlet("--version").strip() == f"hamlet {__version__}"


@pytest.mark.parametrize("group", [[], ["gateway"], ["server"], ["sim"], ["demo"]])
def test_help_at_every_level(group: list[str]) -> None:
    out = run_hamlet(*group, "--help")
    assert "Usage:" in out
    assert "--help" in out
