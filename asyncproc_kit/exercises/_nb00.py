"""Checks for notebook 00 (welcome): a first command, and the tokio → Python table.

A check takes what the learner wrote, tries it for real and returns an
:class:`ExerciseResult`. It never raises on a wrong answer; it lets ``NotImplementedError``
through, because that means "not written yet", not "wrong".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anyio

from .._text import plural
from ._common import ExerciseResult
from ._try import call

FIRST = "00.1 first command"
ROSETTA = "00.2 tokio → Python"


async def check_first_command(first_command: Callable[[], Any]) -> ExerciseResult:
    """``first_command()`` must run a child that prints ``hello, workbook`` and return the
    :class:`~asyncproc_kit.ProcessResult`."""
    from .._run import ProcessResult

    result, problem = await call(first_command, FIRST)
    if problem is not None:
        return problem
    if result is None:
        return ExerciseResult(FIRST, False, "it returned None",
                              "End the function with `return await run([...])`.")
    if not isinstance(result, ProcessResult):
        return ExerciseResult(FIRST, False, f"it returned a {type(result).__name__}, "
                              "not the ProcessResult of run()",
                              "Return what `await run([...])` gives you, not one of its fields.")
    if result.returncode != 0:
        return ExerciseResult(FIRST, False, f"the child exited with code {result.returncode}",
                              f"Look at its stderr: {result.stderr.strip()[:200]!r}")
    said = result.stdout if isinstance(result.stdout, str) else result.stdout.decode()
    if said.rstrip("\n") != "hello, workbook":
        return ExerciseResult(FIRST, False, f"the child printed {said!r}",
                              "It should print exactly: hello, workbook "
                              "(python(\"print('hello, workbook')\") does that).")
    return ExerciseResult(FIRST, True, "the child said hello and exited 0.")


def _rosetta() -> dict[str, tuple[Any, ...]]:
    """tokio name -> the Python objects that play its role (any one of them is right)."""
    from .._pipes import open_pipe
    from .._process import terminate
    from .._run import run
    from .._stream import open_stream

    return {
        "tokio::process::Command::output": (run,),
        "BufReader::lines on child.stdout": (open_stream,),
        "child.stdin + child.stdout together": (open_pipe,),
        "tokio::spawn": (anyio.create_task_group,),
        "tokio::sync::Semaphore": (anyio.Semaphore, anyio.CapacityLimiter),
        "tokio::sync::mpsc::channel": (anyio.create_memory_object_stream,),
        "tokio::time::timeout": (anyio.fail_after, anyio.move_on_after),
        "tokio::time::sleep": (anyio.sleep,),
        "child.kill": (terminate,),
    }


def _name(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or type(obj).__name__


def check_rosetta(answers: Mapping[str, Any]) -> ExerciseResult:
    """``answers`` maps each tokio name in ``ROSETTA_QUESTIONS`` to a Python object (the
    function or class itself, not a string)."""
    expected = _rosetta()
    if not isinstance(answers, Mapping):
        return ExerciseResult(ROSETTA, False, f"expected a dict, got {type(answers).__name__}",
                              "Fill in the dict: {'tokio::spawn': ..., ...}.")
    missing = [key for key in expected if key not in answers]
    if missing:
        count = plural(len(missing), "name is", "names are")
        return ExerciseResult(ROSETTA, False, f"{count} not answered yet, e.g. {missing[0]!r}",
                              "Keep every key of the dict.")
    for key, right in expected.items():
        given = answers[key]
        if given is ... or given is None:
            return ExerciseResult(ROSETTA, False, f"{key!r} is still empty",
                                  "Replace ... with a function or class from anyio or the kit.")
        if isinstance(given, str):
            return ExerciseResult(ROSETTA, False, f"{key!r}: you gave the string {given!r}",
                                  "Give the object itself, e.g. anyio.sleep, not 'anyio.sleep'.")
        if getattr(given, "__module__", "").startswith("asyncio") and \
                not any(given is candidate for candidate in right):
            return ExerciseResult(ROSETTA, False, f"{key!r}: {_name(given)} is asyncio's",
                                  "The table's answer is anyio's (it runs on asyncio and trio): "
                                  f"look up the row {key.split('::')[-1]}.")
        if not any(given is candidate for candidate in right):
            return ExerciseResult(ROSETTA, False, f"{key!r} is not {_name(given)}",
                                  f"Look it up in the table above (row {key.split('::')[-1]}).")
    return ExerciseResult(ROSETTA, True, f"all {len(expected)} names matched.")


ROSETTA_QUESTIONS = (
    "tokio::process::Command::output",
    "BufReader::lines on child.stdout",
    "child.stdin + child.stdout together",
    "tokio::spawn",
    "tokio::sync::Semaphore",
    "tokio::sync::mpsc::channel",
    "tokio::time::timeout",
    "tokio::time::sleep",
    "child.kill",
)
"""The keys ``check_rosetta`` expects, in the order of the table in notebook 00."""
