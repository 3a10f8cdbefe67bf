"""Calling a learner's function for a check: wrong *kinds* of answer become hints."""

from __future__ import annotations

import contextlib
import gc
import inspect
import math
import re
import warnings
from collections.abc import Iterator
from typing import Any

import anyio

from ._common import ExerciseResult


async def call(function: Any, exercise: str, *args: Any, patience: float | None = None,
               stuck: str = "", suspect: str = "") -> tuple[Any, ExerciseResult | None]:
    """Await ``function(*args)``; turn a wrong *kind* of answer into a failed result.

    With ``patience``, an answer that takes longer is a failed result too ("no answer
    after N s", then ``suspect`` if given, with ``stuck`` as the hint), so a deadlocked
    attempt never hangs a cell.
    """
    if not callable(function):
        return None, ExerciseResult(exercise, False, f"expected a function, got {function!r}",
                                    "Pass the function itself (its name, without calling it).")
    if not inspect.iscoroutinefunction(function):
        return None, ExerciseResult(exercise, False, f"{function.__name__} is not async",
                                    "Define it with `async def` so it can `await` inside.")
    with never_awaited() as forgotten:
        value, problem = await _attempt(function, exercise, args, patience, stuck, suspect)
    if forgotten:
        if inspect.iscoroutine(value):
            value.close()
        return None, missing_await(exercise, forgotten)
    if problem is not None:
        return None, problem
    if inspect.iscoroutine(value):
        value.close()
        return None, ExerciseResult(exercise, False, "it returned a coroutine, not a result",
                                    "You forgot an `await` in front of a call.")
    return value, None


async def _attempt(function: Any, exercise: str, args: tuple[Any, ...], patience: float | None,
                   stuck: str, suspect: str) -> tuple[Any, ExerciseResult | None]:
    try:
        with anyio.move_on_after(math.inf if patience is None else patience) as scope:
            value = await function(*args)
        if scope.cancelled_caught:
            late = f"no answer after {patience:g} s" + (f": {suspect}" if suspect else "")
            return None, ExerciseResult(exercise, False, late, stuck)
    except NotImplementedError:
        raise
    except Exception as exc:
        return None, ExerciseResult(exercise, False,
                                    f"{function.__name__} raised {type(exc).__name__}: {exc}",
                                    "Run it on its own in a cell to see the whole traceback.")
    return value, None


_NEVER_AWAITED = re.compile(r"coroutine '([^']+)' was never awaited")


@contextlib.contextmanager
def never_awaited() -> Iterator[list[str]]:
    """Collect the names of coroutines created and dropped inside the block.

    Python warns "coroutine 'X' was never awaited" when a coroutine object dies unawaited:
    during a check that is the surest sign of a missing ``await`` (whatever else then went
    wrong is a consequence). Other warnings are passed on unchanged.
    """
    names: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield names
        finally:
            # A dropped coroutine caught in a reference cycle warns now. Only the young
            # generations: the learner's objects are new, and a full collection in a big
            # process (a kernel after Dask, a long test run) takes tenths of a second, long
            # enough to stall the loop under watch_loop and to let fire-and-forget children
            # finish before a check looks for them.
            gc.collect(1)
    for item in caught:
        match = _NEVER_AWAITED.search(str(item.message))
        if match and issubclass(item.category, RuntimeWarning):
            names.append(match.group(1))
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


def missing_await(exercise: str, names: list[str]) -> ExerciseResult:
    """The verdict for a coroutine that was created but never awaited."""
    shown = ", ".join(dict.fromkeys(names))
    return ExerciseResult(exercise, False, f"missing `await`: {shown}() was called but never "
                          "awaited, so it never ran", f"Write `await` in front of the call to "
                          f"{shown.rsplit('.', 1)[-1]}(...).")
