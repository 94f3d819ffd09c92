"""Which tests are slow (left out of ``make test-fast``, still run by ``make test``).

Decided from what a test uses, so a new test is classified without anyone remembering to
mark it. A test is slow when

- it runs one of our programs as a child process (``hamlet server run``, ``hamlet gateway
  run``, the CLI, the simulator): its code, its fixtures' code or the test-suite helpers they
  call refer to ``tests.support.procs.HAMLET``, the argv every such launch starts with;
- it drives a browser or a live InfluxDB (marked ``browser`` / ``influx``);
- it lives in a directory of whole-system tests (``SLOW_DIRS``: wheels, Caddy,
  docker-compose, the demo end to end);
- or it is marked ``slow`` by hand: an in-process test that is long by design (a
  minute-long load, Hypothesis over real files).

The search follows names a function's code refers to, through functions and classes defined
under ``tests/`` only (the code under test is never a test helper), compared by identity
(``pages_world.HAMLET`` is a hamlet id, not the argv).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import CodeType
from typing import Final

import pytest

from tests.support.procs import HAMLET

SLOW_DIRS: Final = frozenset({"deploy", "e2e"})
SLOW_MARKS: Final = frozenset({"slow", "browser", "influx"})
# What a test reaching any of these does: start our programs in child processes.
_PROCESS_STARTERS: Final = (HAMLET,)


def _codes(code: CodeType) -> Iterator[CodeType]:
    """A code object and those nested in it (inner functions, lambdas, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _codes(const)


def _ours(obj: object) -> bool:
    return (getattr(obj, "__module__", None) or "").startswith("tests.")


def _functions(obj: object) -> Iterator[object]:
    """The functions whose code to read: a function itself, or a test-suite class's methods."""
    if inspect.isclass(obj):
        for member in vars(obj).values():
            if isinstance(member, staticmethod | classmethod):
                yield member.__func__
            elif isinstance(member, property):
                yield from (f for f in (member.fget, member.fset) if f is not None)
            elif inspect.isfunction(member):
                yield member
    else:
        inner = getattr(getattr(obj, "hypothesis", None), "inner_test", None)
        yield inspect.unwrap(inner if inner is not None else obj)  # type: ignore[arg-type]


def starts_processes(roots: Iterable[object]) -> bool:
    """Whether any of ``roots`` (test functions, fixture functions) reaches a process starter."""
    seen: set[int] = set()
    todo = [f for r in roots for f in _functions(r)]
    while todo:
        fn = todo.pop()
        code = getattr(fn, "__code__", None)
        if code is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        names: dict[str, object] = getattr(fn, "__globals__", {})
        for c in _codes(code):
            for name in c.co_names:
                obj = names.get(name)
                if any(obj is s for s in _PROCESS_STARTERS):
                    return True
                if _ours(obj) and (inspect.isfunction(obj) or inspect.isclass(obj)):
                    todo.extend(_functions(obj))
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                obj = cell.cell_contents
            except ValueError:  # a cell not filled yet
                continue
            if _ours(obj) and (inspect.isfunction(obj) or inspect.isclass(obj)):
                todo.extend(_functions(obj))
    return False


def is_slow(item: pytest.Item, tests_root: Path) -> bool:
    if any(item.get_closest_marker(m) for m in SLOW_MARKS):
        return True
    if item.path.relative_to(tests_root).parts[0] in SLOW_DIRS:
        return True
    if not isinstance(item, pytest.Function):
        return False
    fixtures = [d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs]
    return starts_processes([item.function, *fixtures])
