"""The rule behind ``make test-fast`` (tests/support/slowness.py): a test that runs our
programs as child processes is slow, however indirectly; one that does not is fast."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.pages_world import HAMLET as HAMLET_ID
from tests.support.procs import run_hamlet, start_server
from tests.support.slowness import starts_processes


def _pure() -> None:
    assert sorted([2, 1]) == [1, 2]


def _hamlet_id_only() -> str:
    return HAMLET_ID  # a hamlet id named HAMLET, not the program's argv


def _direct() -> None:
    run_hamlet("--version")


def _through_a_helper() -> None:
    _direct()


class _Launcher:
    def go(self, where: Path) -> None:
        with start_server(where):
            pass


def _through_a_class(tmp_path: Path) -> None:
    _Launcher().go(tmp_path)


def _in_a_comprehension() -> list[str]:
    return [run_hamlet(a) for a in ("--help", "--version")]


def _in_a_closure() -> Callable[[], None]:
    launch = _direct

    def inner() -> None:
        launch()

    return inner


@pytest.mark.parametrize("fn", [_pure, _hamlet_id_only])
def test_code_that_starts_no_process_is_fast(fn: Callable[..., object]) -> None:
    assert not starts_processes([fn])


@pytest.mark.parametrize(
    "fn", [_direct, _through_a_helper, _through_a_class, _in_a_comprehension, _in_a_closure()]
)
def test_code_that_reaches_a_process_starter_is_slow(fn: Callable[..., object]) -> None:
    assert starts_processes([fn])


def test_a_fixture_that_starts_the_server_makes_its_tests_slow() -> None:
    from tests import conftest

    assert starts_processes([conftest.server])
    assert not starts_processes([conftest.pty_pair])


def test_this_module_runs_in_the_fast_loop(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("slow") is None
