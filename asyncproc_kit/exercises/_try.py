"""Calling a learner's function for a check: wrong *kinds* of answer become hints."""

from __future__ import annotations

import inspect
import math
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
    if inspect.iscoroutine(value):
        value.close()
        return None, ExerciseResult(exercise, False, "it returned a coroutine, not a result",
                                    "You forgot an `await` in front of a call.")
    return value, None
