"""Checks for notebook 13 (best practices): count lines without blocking the loop; catch a
task group's failure with ``except*``.

The first check runs the learner's function under :func:`asyncproc_kit.diagnostics.watch_loop`,
so a blocking ``subprocess.run`` is caught in the act. The second uses children that wait
for each other (a file barrier), so commands run one after another cannot pass.
``NotImplementedError`` passes through.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from ..diagnostics import watch_loop
from ..testing import EXIT, python
from ._common import ExerciseResult
from ._try import call

COUNT = "13.1 count lines without blocking the loop"
FIRST = "13.2 the failure inside a task group"

BARRIER_WAIT = 5.0  # how long a barrier child waits for its siblings before giving up
ALONE = 9  # the exit code of a barrier child whose siblings never started


def slow_printer(lines: int, delay: float = 0.8) -> list[str]:
    """Sleeps ``delay`` seconds (long enough to stall a loop visibly), then prints lines."""
    return python(f"""
        import time
        time.sleep({delay!r})
        for i in range({lines}):
            print(f"record {{i}}")
    """)


async def check_count_lines(count_lines: Callable[[list[str]], Any]) -> ExerciseResult:
    """``await count_lines(cmd)`` returns how many lines ``cmd`` printed on stdout, and the
    event loop stays free while the command runs."""
    samples = random.sample(range(2, 9), 2)
    answers: dict[int, tuple[Any, ExerciseResult | None]] = {}
    stubs: list[NotImplementedError] = []

    async def one(lines: int) -> None:
        try:
            answers[lines] = await call(count_lines, COUNT, slow_printer(lines), patience=20)
        except NotImplementedError as exc:  # the stub: raised as itself, not in a group
            stubs.append(exc)

    # 0.4 s: well above the kit's own spawn stalls in a big process (0.22 s measured after a
    # Dask cluster ran in the same process), well below a blocking answer's 0.8 s or more
    async with watch_loop(threshold=0.4) as watch:
        async with anyio.create_task_group() as tg:
            for lines in samples:
                tg.start_soon(one, lines)
    if stubs:
        raise stubs[0]
    for lines in samples:
        answer, problem = answers[lines]
        if problem is not None:
            return problem
        if watch.blocked:
            return ExerciseResult(
                COUNT, False, f"the event loop could not run for {watch.longest:.2f} s while "
                "it waited", "subprocess.run blocks the loop: use `await run(cmd)` (or "
                "`await anyio.to_thread.run_sync(...)` for code you cannot change).")
        if isinstance(answer, bool) or not isinstance(answer, int):
            return ExerciseResult(COUNT, False, f"it returned {answer!r}, not a number",
                                  "Return len(...) of the output's lines.")
        if answer != lines:
            return ExerciseResult(COUNT, False, f"it returned {answer} for a command that "
                                  f"printed {lines} lines",
                                  "Count result.stdout.splitlines(), not characters or bytes.")
    return ExerciseResult(COUNT, True, "right counts, and the event loop was never blocked.")


def barrier(folder: Path, name: str, siblings: int) -> list[str]:
    """A child that succeeds only if ``siblings`` children (itself included) run at once."""
    return python(f"""
        import pathlib, sys, time
        folder = pathlib.Path({str(folder)!r})
        (folder / {name!r}).touch()
        deadline = time.monotonic() + {BARRIER_WAIT!r}
        while len(list(folder.iterdir())) < {siblings}:
            if time.monotonic() > deadline:
                sys.stderr.write("ran alone: the other commands had not started\\n")
                sys.exit({ALONE})
            time.sleep(0.01)
    """)


async def check_first_failure(first_failure: Callable[[list[list[str]]], Any]
                              ) -> ExerciseResult:
    """``await first_failure(cmds)`` runs every command at once in a task group and returns
    the return code of the one that failed, or ``None`` when none did."""
    with tempfile.TemporaryDirectory(prefix="asyncproc-13-") as folder:
        together = [barrier(Path(folder), f"child-{i}", 3) for i in range(3)]
        answer, problem = await call(first_failure, FIRST, together,
                                     patience=BARRIER_WAIT * 4)
    if problem is not None:
        return _explain(problem)
    if answer == ALONE:
        return ExerciseResult(FIRST, False, "the commands ran one after another (each waits "
                              "for the others and gave up)",
                              "Start them all in one task group: tg.start_soon(run, cmd).")
    if answer is not None:
        return ExerciseResult(FIRST, False, f"it returned {answer!r} when every command "
                              "succeeded", "Return None when the task group ends normally.")
    code = random.randint(3, 60)
    with tempfile.TemporaryDirectory(prefix="asyncproc-13-") as folder:
        cmds = [barrier(Path(folder), f"child-{i}", 2) for i in range(2)]
        cmds.insert(random.randrange(3), EXIT(code, "disk full\n"))
        answer, problem = await call(first_failure, FIRST, cmds, patience=BARRIER_WAIT * 4)
    if problem is not None:
        return _explain(problem)
    if isinstance(answer, BaseException):
        return ExerciseResult(FIRST, False, f"it returned the exception {answer!r}",
                              "Return its .returncode, the exit code of the failed command.")
    if answer != code:
        return ExerciseResult(FIRST, False, f"it returned {answer!r}; the failed command "
                              f"exited with {code}",
                              "Read .returncode of the ProcessFailed inside the group.")
    return ExerciseResult(FIRST, True, "the failed command's exit code came out of the task "
                          "group, and None when every command succeeded.")


def _explain(problem: ExerciseResult) -> ExerciseResult:
    if "ExceptionGroup" in problem.message:
        return ExerciseResult(
            FIRST, False, "an ExceptionGroup escaped: a task group wraps its tasks' errors",
            "`except ProcessFailed` does not match a group; use `except* ProcessFailed as "
            "group:`, keep group.exceptions[0].returncode in a variable (`return` is "
            "not allowed inside except*) and return it after the try.")
    if "ProcessFailed" in problem.message:
        return ExerciseResult(FIRST, False, "a ProcessFailed escaped",
                              "Catch it (`except* ProcessFailed as group:`) and return the "
                              "return code instead of raising.")
    return problem
