"""Checks for notebook 07 (retries): which failures are worth retrying; a resilient runner.

The exceptions handed to the learner's predicate come from running real commands; the
runner is tried against commands that count their runs in a file, under stamina's testing
mode (no backoff waits). ``NotImplementedError`` passes through.
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from .._errors import ProcessError, ProcessFailed, SpawnError
from .._run import run
from ..testing import EXIT, SLEEP, python
from ._common import ExerciseResult
from ._try import call

WORTH = "07.1 which failures are worth retrying"
RESILIENT = "07.2 a resilient runner"


async def _error(cmd: list[str], **kwargs: Any) -> ProcessError:
    try:
        await run(cmd, **kwargs)
    except ProcessError as exc:
        return exc
    raise AssertionError(f"{cmd} was expected to fail")


async def check_worth_retrying(worth_retrying: Callable[[BaseException], Any]) -> ExerciseResult:
    """``worth_retrying(exc)`` is True for a failure worth another try: exit code 75
    (EX_TEMPFAIL) or "temporarily unavailable" in stderr. False for a command that could not
    start, any other exit code, and a timeout."""
    if not callable(worth_retrying) or inspect.iscoroutinefunction(worth_retrying):
        return ExerciseResult(WORTH, False, "expected a plain (not async) function",
                              "Define it with `def worth_retrying(exc):` and return a bool.")
    cases = [
        ("exit code 75", await _error(EXIT(75)), True),
        ("'Resource temporarily unavailable' on stderr",
         await _error(EXIT(1, "fork: Resource temporarily unavailable\n")), True),
        ("exit code 2 ('No such file')", await _error(EXIT(2, "cat: x: No such file\n")), False),
        ("command not found", await _error(["no-such-command-07"]), False),
        ("exit code 1, nothing on stderr", await _error(EXIT(1)), False),
        ("a timeout", await _error(SLEEP(30), timeout=0.2, grace=0.5), False),
    ]
    for name, exc, expected in cases:
        try:
            got = worth_retrying(exc)
        except NotImplementedError:
            raise
        except Exception as err:
            return ExerciseResult(WORTH, False, f"for {name} it raised {type(err).__name__}: "
                                  f"{err}", "Check the type first: isinstance(exc, ProcessFailed)"
                                  " before reading exc.returncode or exc.stderr.")
        if not isinstance(got, bool):
            return ExerciseResult(WORTH, False, f"for {name} it returned {got!r}",
                                  "Return True or False.")
        if got != expected:
            hint = {
                "command not found": "A SpawnError will fail the same way every time.",
                "a timeout": "Only the two named failures are worth it here; a timeout is not.",
            }.get(name, "Retry exactly: exit code 75, or 'temporarily unavailable' in stderr.")
            return ExerciseResult(WORTH, False, f"for {name} it said {got}, expected {expected}",
                                  hint)
    return ExerciseResult(WORTH, True, "retries exactly the temporary failures, never a "
                          "command that cannot start.")


def _counting(counter: Path, failures: int, code: int) -> list[str]:
    return python(f"""
        import pathlib, sys
        p = pathlib.Path({str(counter)!r})
        n = int(p.read_text()) if p.exists() else 0
        p.write_text(str(n + 1))
        if n < {failures}:
            sys.exit({code})
        print("ok")
    """)


def _runs(counter: Path) -> int:
    return int(counter.read_text()) if counter.exists() else 0


async def check_resilient(resilient: Callable[[list[str]], Any]) -> ExerciseResult:
    """``await resilient(cmd)`` runs ``cmd``, retrying exit code 75 (4 attempts in all, with
    backoff), raising any other failure at once and never retrying a missing command."""
    import stamina

    import asyncproc_kit._run as run_module

    tried: list[Any] = []
    real_spawn = run_module.spawn

    def counting_spawn(cmd: Any, **kwargs: Any) -> Any:
        tried.append(cmd)
        return real_spawn(cmd, **kwargs)

    with tempfile.TemporaryDirectory() as tmp, stamina.set_testing(True, attempts=100, cap=True):
        flaky, broken, wrong = Path(tmp, "flaky"), Path(tmp, "broken"), Path(tmp, "wrong")
        answer, problem = await call(
            resilient, RESILIENT, _counting(flaky, 2, 75), patience=20,
            stuck="Keep the waits short (wait_initial=0.1) and stop after 4.")
        if problem is not None:
            return problem
        if getattr(answer, "returncode", None) != 0 or _runs(flaky) != 3:
            return ExerciseResult(RESILIENT, False, f"a command failing twice with 75 ran "
                                  f"{_runs(flaky)} time(s) and gave {answer!r}",
                                  "Retry on ProcessFailed with returncode 75 and return the "
                                  "successful result.")
        outcome = await _outcome(resilient, _counting(broken, 99, 75))
        if not isinstance(outcome, ProcessFailed) or _runs(broken) != 4:
            return ExerciseResult(RESILIENT, False, f"a command that always exits 75 ran "
                                  f"{_runs(broken)} time(s) and ended with {outcome!r}",
                                  "4 attempts in all (attempts=4), then let the last "
                                  "ProcessFailed out.")
        outcome = await _outcome(resilient, _counting(wrong, 99, 1))
        if not isinstance(outcome, ProcessFailed) or _runs(wrong) != 1:
            return ExerciseResult(RESILIENT, False, f"a command exiting 1 ran {_runs(wrong)} "
                                  "time(s)", "Only exit code 75 is worth another try.")
        run_module.spawn = counting_spawn  # type: ignore[assignment]
        try:
            outcome = await _outcome(resilient, ["no-such-command-07"])
        finally:
            run_module.spawn = real_spawn
        if not isinstance(outcome, SpawnError) or len(tried) != 1:
            return ExerciseResult(RESILIENT, False, f"a missing command was tried {len(tried)} "
                                  f"time(s) and ended with {outcome!r}",
                                  "Never retry SpawnError: let it out at once.")
    return ExerciseResult(RESILIENT, True, "3 runs for 2 temporary failures, 4 at most, none "
                          "repeated for other failures or a missing command.")


async def _outcome(resilient: Callable[[list[str]], Any], cmd: list[str]) -> Any:
    try:
        with anyio.fail_after(20):
            return await resilient(cmd)
    except NotImplementedError:
        raise
    except Exception as exc:
        return exc
