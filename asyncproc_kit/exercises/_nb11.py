"""Checks for notebook 11 (a log aggregator): prove what was dropped; stop the rest on failure.

Both run real children through :func:`asyncproc_kit.cases.logs.aggregate`. The first hands the
learner's function lines from a real ``overflow="drop_oldest"`` run with a slow consumer, so
the gaps differ on every try; the second gives it a command that fails while two others would
run for a minute. ``NotImplementedError`` passes through: it means "not written yet".
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from ..cases.logs import LogLine, aggregate
from ..testing import python
from ._common import ExerciseResult
from ._try import call

GAPS = "11.1 count the dropped lines from seq alone"
FAIL = "11.2 stop the others when one fails"


def _writer(name: str, count: int) -> list[str]:
    """Writes ``count`` lines to stdout and a third as many to stderr, fast."""
    return python(f"""
        import sys
        for i in range({count}):
            sys.stdout.write(f"{name} {{i}}\\n")
            if i % 3 == 0:
                sys.stderr.write(f"{name} warning {{i // 3}}\\n")
    """)


async def dropped_lines() -> list[LogLine]:
    """Lines from a real run with ``drop_oldest`` and a consumer that keeps falling behind."""
    commands = {"web": _writer("web", random.randint(1500, 3000)),
                "worker": _writer("worker", random.randint(1500, 3000))}
    lines: list[LogLine] = []
    async with aggregate(commands, buffer=40, overflow="drop_oldest") as logs:
        async for line in logs:
            lines.append(line)
            if len(lines) % 10 == 0:
                await anyio.sleep(0.001)
    return lines


def missing(lines: list[LogLine], key=lambda line: (line.name, line.source),
            start: int | None = 0) -> dict[Any, int]:
    """Seq numbers absent from 0 (or from the first seen, with ``start=None``) up to the
    last seen, per ``key``."""
    seen: dict[Any, list[int]] = {}
    for line in lines:
        seen.setdefault(key(line), []).append(line.seq)
    return {k: max(s) + 1 - (0 if start == 0 else min(s)) - len(set(s)) for k, s in seen.items()}


def _gap_runs(lines: list[LogLine]) -> dict[Any, int]:
    """How many gaps (runs of missing numbers), not how many lines: a common slip."""
    runs: dict[Any, int] = {}
    last: dict[Any, int] = {}
    for line in lines:
        key = (line.name, line.source)
        prev = last.get(key, -1)
        runs[key] = runs.get(key, 0) + (line.seq > prev + 1)
        last[key] = line.seq
    return runs


def _same(answer: Mapping, right: Mapping) -> bool:
    """Equal, ignoring keys whose count is 0 (leaving them out is fine)."""
    return {k: v for k, v in answer.items() if v} == {k: v for k, v in right.items() if v}


async def check_find_gaps(find_gaps: Callable[[list[LogLine]], Any]) -> ExerciseResult:
    """``find_gaps(lines)`` must return ``{(name, source): n}``: how many seq numbers are
    missing from 0 up to the last line seen of each (name, source), i.e. how many lines the
    aggregator dropped before that line."""
    if not callable(find_gaps):
        return ExerciseResult(GAPS, False, f"expected a function, got {find_gaps!r}",
                              "Pass the function itself: check_find_gaps(find_gaps).")
    if inspect.iscoroutinefunction(find_gaps):
        return ExerciseResult(GAPS, False, "find_gaps is async",
                              "Nothing to await here: write a plain `def`.")
    try:
        find_gaps([])  # a stub says so at once, before the run
    except NotImplementedError:
        raise
    except Exception:  # judged on real lines below
        pass
    lines = await dropped_lines()
    late = [line for line in lines if line.seq >= 5]  # as if the first lines were dropped too
    for given in (lines, late):
        try:
            answer = find_gaps(list(given))
        except NotImplementedError:
            raise
        except Exception as exc:
            return ExerciseResult(GAPS, False, f"find_gaps raised {type(exc).__name__}: {exc}",
                                  "Run it on your own list of lines to see the traceback.")
        if not isinstance(answer, Mapping):
            return ExerciseResult(GAPS, False, f"it returned {type(answer).__name__}, not a dict",
                                  "Return a dict such as {('web', 'stdout'): 12}.")
        if _same(answer, missing(given)):
            continue
        if _same(answer, missing(given, key=lambda line: line.name)):
            return ExerciseResult(GAPS, False, "the keys are names only",
                                  "seq counts per (name, source): stdout and stderr of one "
                                  "child each start at 0. Key by (line.name, line.source).")
        if _same(answer, missing(given, start=None)):
            return ExerciseResult(GAPS, False, "lines dropped before the first one you got "
                                  "were not counted",
                                  "seq starts at 0: a first line with seq 5 means 5 drops.")
        if _same(answer, _gap_runs(given)):
            return ExerciseResult(GAPS, False, "it counts gaps, not missing lines",
                                  "A jump from seq 3 to seq 9 is 5 dropped lines, not 1.")
        return ExerciseResult(GAPS, False, "the counts do not match the seq numbers",
                              "For each (name, source): last seq + 1 - number of lines seen.")
    return ExerciseResult(GAPS, True, "every drop found from the seq numbers alone, "
                          "including drops before the first line you got.")


FAILING = python("""
    import sys, time
    time.sleep(0.1)
    print("cannot connect to the database", file=sys.stderr)
    sys.exit(3)
""")
SLOW = python("""
    import time
    print("serving", flush=True)
    time.sleep(60)
""")
PATIENCE = 15.0


async def check_stop_on_failure(stop_on_failure: Callable[[dict], Any]) -> ExerciseResult:
    """``await stop_on_failure(commands)`` must run the commands together, stop the others as
    soon as one exits non-zero, and return ``{name: returncode}`` for all of them."""
    names = random.sample(["api", "db", "web", "cache", "queue"], 3)
    commands = {names[0]: SLOW, names[1]: FAILING, names[2]: SLOW}
    answer, problem = await call(
        stop_on_failure, FAIL, commands, patience=PATIENCE,
        suspect="it waited for the children that were still running",
        stuck="Watch `async for name, code in logs.exits():` and call `await "
              "logs.terminate()` as soon as code != 0.")
    if problem is not None:
        return problem
    await anyio.sleep(0.2)  # a group that was just killed can take a moment to disappear
    if not isinstance(answer, Mapping):
        return ExerciseResult(FAIL, False, f"it returned {type(answer).__name__}, not a dict",
                              "Return {name: logs.summary[name].returncode for name in ...}.")
    if set(answer) != set(names):
        return ExerciseResult(FAIL, False, f"names {sorted(answer)}, expected {sorted(names)}",
                              "Return one entry per name in commands.")
    if answer[names[1]] != 3:
        return ExerciseResult(FAIL, False, f"{names[1]!r} (the failing one) has "
                              f"{answer[names[1]]!r}, expected 3",
                              "Read the return codes after the block: logs.summary[name]."
                              "returncode.")
    others = [answer[names[0]], answer[names[2]]]
    if any(code is None for code in others):
        return ExerciseResult(FAIL, False, "a return code is None: read before it ended",
                              "Read logs.summary after the `async with` block.")
    if any(code >= 0 for code in others):
        return ExerciseResult(FAIL, False, f"the others ended with {others}, not by a signal",
                              "Stop them with `await logs.terminate()` (SIGTERM).")
    return ExerciseResult(FAIL, True, "the failure was seen at once, the others were stopped, "
                          "and every return code is there.")

