"""Checks for notebook 01 (why async): read a failing command's result; run many at once.

Each check runs the learner's function with real children and says what is wrong.
``NotImplementedError`` passes through ("not written yet").
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from ..testing import python
from ._common import ExerciseResult
from ._try import call

FIELDS = "01.1 a failure is a result too"
CONCURRENT = "01.2 all at once, in order"


def grumpy(code: int, word: str) -> list[str]:
    """A child that prints ``word`` on stdout, a complaint on stderr, and exits ``code``."""
    return python(f"""
        import sys
        print({word!r})
        print("something went wrong", file=sys.stderr)
        sys.exit({code})
    """)


async def check_failed_result(run_anyway: Callable[[list[str]], Any]) -> ExerciseResult:
    """``await run_anyway(cmd)`` must run ``cmd``, which exits non-zero, and return its
    :class:`~asyncproc_kit.ProcessResult` instead of raising."""
    from .._run import ProcessResult

    code, word = random.randint(2, 9), random.choice(["apple", "kiwi", "plum", "pear"])
    result, problem = await call(run_anyway, FIELDS, grumpy(code, word))
    if problem is not None:
        if "ProcessFailed" in problem.message:
            return ExerciseResult(FIELDS, False, "run() raised ProcessFailed (the command "
                                  f"exited {code})", "Pass check=False to get the result of "
                                  "a failing command instead of an exception.")
        return problem
    if not isinstance(result, ProcessResult):
        return ExerciseResult(FIELDS, False, f"it returned {type(result).__name__}, "
                              "not a ProcessResult", "Return what `await run(...)` gives you.")
    if result.returncode != code:
        return ExerciseResult(FIELDS, False, f"returncode {result.returncode}, expected {code}",
                              "Run the cmd you were given, unchanged.")
    if result.stdout != f"{word}\n" or "went wrong" not in str(result.stderr):
        return ExerciseResult(FIELDS, False, "stdout or stderr is not what the child printed",
                              "Keep run()'s defaults for output (text, captured separately).")
    return ExerciseResult(FIELDS, True, "the exit code, stdout and stderr are all there.")


def napper(index: int, seconds: float) -> list[str]:
    return python(f"import time; time.sleep({seconds!r}); print('answer {index}')")


async def check_run_all(run_all: Callable[[list[list[str]]], Any]) -> ExerciseResult:
    """``await run_all(commands)`` must run every command at the same time and return their
    results in the order of ``commands``."""
    from .._run import ProcessResult

    count = random.randint(4, 5)
    naps = [round(0.15 * (count - i), 2) for i in range(count)]  # the first finishes last
    commands = [napper(i, nap) for i, nap in enumerate(naps)]
    begun = time.monotonic()
    results, problem = await call(run_all, CONCURRENT, commands)
    took = time.monotonic() - begun
    if problem is not None:
        return problem
    if not isinstance(results, list | tuple):
        return ExerciseResult(CONCURRENT, False, f"it returned {type(results).__name__}, "
                              "not a list", "Return a list with one result per command.")
    if len(results) != count:
        return ExerciseResult(CONCURRENT, False, f"{len(results)} results for {count} commands",
                              "Run every command once and keep every result.")
    if not all(isinstance(r, ProcessResult) for r in results):
        return ExerciseResult(CONCURRENT, False, "the list holds something other than "
                              "ProcessResults", "Store what `await run(cmd)` returns.")
    said = [r.stdout.strip() if isinstance(r.stdout, str) else r.stdout for r in results]
    if said != [f"answer {i}" for i in range(count)]:
        if sorted(said) == [f"answer {i}" for i in range(count)]:
            return ExerciseResult(CONCURRENT, False, "the results are in the order the "
                                  "commands finished, not the order given",
                                  "Store each result at its index: results[i] = await run(cmd).")
        return ExerciseResult(CONCURRENT, False, f"unexpected outputs {said}",
                              "Run each command unchanged.")
    sequential = sum(naps)
    if took > 0.8 * sequential:
        return ExerciseResult(CONCURRENT, False, f"they ran one after another (took about "
                              f"{took:.1f} s, the naps add up to {sequential:.1f} s)",
                              "Start every run in a task group: tg.start_soon(...) inside "
                              "`async with anyio.create_task_group() as tg:`.")
    return ExerciseResult(CONCURRENT, True, "all ran at the same time, and the results are "
                          "in the order of the commands.")
