"""The public surface: __all__ sorted and honest, in the package and in asyncproc_kit.testing."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
import types
from pathlib import Path

import pytest

import asyncproc_kit
import asyncproc_kit.testing

PACKAGE_DIR = Path(asyncproc_kit.__file__).parent


def isort_key(name: str) -> tuple[int, list[object]]:
    """ruff RUF022's order: SCREAMING_SNAKE_CASE, then CamelCase, then the rest; natural sort."""
    if len(name) > 1 and name.isupper():
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    return group, [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def test_isort_key_orders_like_ruff() -> None:
    """The ordering used below puts constants, classes, then functions, numbers naturally."""
    names = ["run", "Timeline", "DEFAULT_GRACE", "Span", "abc10", "abc9", "CAT"]
    assert sorted(names, key=isort_key) == [
        "CAT", "DEFAULT_GRACE", "Span", "Timeline", "abc9", "abc10", "run"]


def test_package_all_is_sorted_and_unique() -> None:
    """asyncproc_kit.__all__ is sorted isort-style and lists each name once."""
    names = asyncproc_kit.__all__
    assert len(set(names)) == len(names)
    assert names == sorted(names, key=isort_key)


def test_every_name_in_all_is_importable() -> None:
    """Each name in __all__ exists, and `from asyncproc_kit import *` binds exactly them."""
    namespace: dict[str, object] = {}
    exec("from asyncproc_kit import *", namespace)
    del namespace["__builtins__"]
    assert sorted(namespace) == sorted(asyncproc_kit.__all__)
    for name in asyncproc_kit.__all__:
        assert getattr(asyncproc_kit, name) is namespace[name]


def _reexports(path: Path) -> dict[str, str]:
    """Names bound by `from .module import Name as Name` in ``path``, mapped to the module."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            for alias in node.names:
                assert alias.asname == alias.name, (
                    f"re-export {alias.name} with the explicit form "
                    f"'from .{node.module} import {alias.name} as {alias.name}'")
                found[alias.name] = node.module or ""
    return found


def test_all_matches_the_explicit_re_exports() -> None:
    """__all__ is exactly the set of names re-exported from private modules."""
    reexports = _reexports(PACKAGE_DIR / "__init__.py")
    assert sorted(reexports, key=isort_key) == asyncproc_kit.__all__
    for name, module in reexports.items():
        assert module.startswith("_"), f"{name} comes from a public module {module!r}"


def test_no_public_name_is_missing_from_all() -> None:
    """Every public, non-module attribute of the package is listed in __all__."""
    public = {
        name for name, value in vars(asyncproc_kit).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(asyncproc_kit.__all__)


def test_public_classes_and_functions_live_in_private_modules() -> None:
    """Every exported class and function is defined in one of the kit's private modules."""
    for name in asyncproc_kit.__all__:
        value = getattr(asyncproc_kit, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("asyncproc_kit._"), (name, value.__module__)


def test_core_names_are_public() -> None:
    """The names the workbook relies on from the core are all exported."""
    core = {"run", "ProcessResult", "open_stream", "OutputLine", "open_pipe", "terminate",
            "ProcessError", "SpawnError", "ProcessFailed", "ProcessTimeout"}
    assert core <= set(asyncproc_kit.__all__)


def test_exception_hierarchy() -> None:
    """Every kit error is a ProcessError; failures and timeouts match subprocess's own."""
    import subprocess

    assert issubclass(asyncproc_kit.SpawnError, asyncproc_kit.ProcessError)
    assert issubclass(asyncproc_kit.ProcessFailed, subprocess.CalledProcessError)
    assert issubclass(asyncproc_kit.ProcessTimeout, subprocess.TimeoutExpired)
    assert issubclass(asyncproc_kit.ProcessTimeout, TimeoutError)
    assert issubclass(asyncproc_kit.CircuitOpenError, asyncproc_kit.ProcessError)


@pytest.mark.parametrize("name", ["run", "open_stream", "open_pipe", "terminate"])
def test_core_docstrings_teach(name: str) -> None:
    """run, open_stream, open_pipe and terminate explain cancellation and errors."""
    doc = inspect.getdoc(getattr(asyncproc_kit, name)) or ""
    assert "**Cancellation:**" in doc
    assert "**Errors:**" in doc


@pytest.mark.parametrize("name", ["run", "open_stream", "open_pipe"])
def test_arguments_after_the_command_are_keyword_only(name: str) -> None:
    """Everything after the command must be passed by keyword."""
    params = list(inspect.signature(getattr(asyncproc_kit, name)).parameters.values())
    assert params[0].name == "cmd"
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:])


# -- asyncproc_kit.testing ----------------------------------------------------------------------


def _module_definitions(path: Path) -> set[str]:
    """Public names a module defines at top level (functions, classes, assignments)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_")}


def test_testing_all_is_sorted_and_complete() -> None:
    """asyncproc_kit.testing.__all__ is sorted and lists exactly what the module defines."""
    names = asyncproc_kit.testing.__all__
    assert names == sorted(names, key=isort_key)
    assert set(names) == _module_definitions(PACKAGE_DIR / "testing.py")
    for name in names:
        assert hasattr(asyncproc_kit.testing, name), name


def test_testing_commands_run_this_interpreter() -> None:
    """The scripted children are argument lists built on sys.executable (or sh for jobs)."""
    t = asyncproc_kit.testing
    commands = [t.CAT, t.ECHO_STDIN_UPPER, t.SLEEP(0.1), t.EXIT(2), t.PRINT_LINES(3),
                t.IGNORE_SIGTERM(1), t.python("pass")]
    for cmd in commands:
        assert isinstance(cmd, list)
        assert all(isinstance(arg, str) for arg in cmd)
        assert cmd[0] == sys.executable
    job = t.SPAWN_GRANDCHILDREN(2, 1)
    assert job[:2] == ["sh", "-c"]
    assert job[2].count(sys.executable) == 2


def test_testing_is_importable_by_name() -> None:
    """`import asyncproc_kit.testing` works on its own and is the same module."""
    assert importlib.import_module("asyncproc_kit.testing") is asyncproc_kit.testing
