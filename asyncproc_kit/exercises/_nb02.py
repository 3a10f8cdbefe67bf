"""Checks for notebook 02 (streaming output): count lines by source; stop at the first match.

Each check runs the learner's function against a real child whose output it chose (with
random counts, so a hard-coded answer fails) and explains what is wrong. ``NotImplementedError``
passes through: it means "not written yet".
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from ..testing import descendants, python
from ._common import ExerciseResult
from ._try import call

COUNT = "02.1 count lines by source"
MATCH = "02.2 stop at the first match"
SLOW_TAIL = 3.0  # seconds the match child keeps running after printing the match
MARKER = "asyncproc-kit-exercise-02.2"  # in the child's command line, to find leftovers


def chatty(stdout_lines: int, stderr_lines: int) -> list[str]:
    """A child that interleaves ``stdout_lines`` and ``stderr_lines`` lines; its very last
    stdout line has no newline."""
    return python(f"""
        import sys
        out, err = {stdout_lines}, {stderr_lines}
        for i in range(max(out, err)):
            if i < err:
                print(f"warning {{i}}", file=sys.stderr, flush=True)
            if i < out - 1:
                print(f"result {{i}}", flush=True)
        sys.stdout.write("done (no newline)")
    """)


async def check_count_sources(count_sources: Callable[[list[str]], Any]) -> ExerciseResult:
    """``await count_sources(cmd)`` must return ``{"stdout": n, "stderr": m}``: how many lines
    the command printed on each stream (a last line without newline counts)."""
    out, err = random.randint(3, 9), random.randint(1, 5)
    answer, problem = await call(count_sources, COUNT, chatty(out, err))
    if problem is not None:
        return problem
    if not isinstance(answer, Mapping):
        return ExerciseResult(COUNT, False, f"it returned {type(answer).__name__}, not a dict",
                              'Return a dict such as {"stdout": 4, "stderr": 2}.')
    got = {key: answer.get(key) for key in ("stdout", "stderr")}
    if got == {"stdout": out, "stderr": err}:
        return ExerciseResult(COUNT, True, "every stdout and stderr line counted, "
                              "including a last line without a newline.")
    if set(answer) - {"stdout", "stderr"}:
        return ExerciseResult(COUNT, False, f"unexpected keys {sorted(set(answer))}",
                              'Use exactly the keys "stdout" and "stderr" (line.source).')
    if got["stdout"] == out + err and not got["stderr"]:
        return ExerciseResult(COUNT, False, "stderr lines were counted as stdout",
                              "Did you pass merge_stderr=True? Then every line says 'stdout'.")
    if not got["stderr"] and got["stdout"] in (out, out - 1):
        return ExerciseResult(COUNT, False, f"no stderr lines counted (expected {err})",
                              "Count with line.source: open_stream gives stderr lines too.")
    if got["stdout"] == out - 1:
        return ExerciseResult(COUNT, False, f"stdout: {out - 1} lines, expected {out}",
                              "The last line has no newline; open_stream still delivers it.")
    return ExerciseResult(COUNT, False, f"got {got}, expected stdout={out}, stderr={err}",
                          "Add 1 to counts[line.source] for each line of `async for`.")


def slow_after_match(word: str, before: int) -> list[str]:
    return python(f"""
        import time
        # {MARKER}
        for i in range({before}):
            print(f"line {{i}}: nothing yet", flush=True)
        print("here is the {word} you want", flush=True)
        time.sleep({SLOW_TAIL})
        print("a {word} that comes too late", flush=True)
    """)


def leftovers() -> list[int]:
    import psutil

    found = []
    for pid in descendants():
        try:
            if any(MARKER in part for part in psutil.Process(pid).cmdline()):
                found.append(pid)
        except psutil.NoSuchProcess:
            pass
    return found


async def check_first_match(first_match: Callable[[list[str], str], Any]) -> ExerciseResult:
    """``await first_match(cmd, word)`` must return the text of the first output line that
    contains ``word`` as soon as it arrives (stopping the child), or ``None`` if none does."""
    word = random.choice(["needle", "token", "answer", "signal"])
    begun = time.monotonic()
    answer, problem = await call(
        first_match, MATCH, slow_after_match(word, random.randint(1, 4)), word,
        patience=SLOW_TAIL * 4, stuck="Return from inside the `async for` loop once you find it.")
    took = time.monotonic() - begun
    if problem is not None:
        return problem
    if hasattr(answer, "text") and hasattr(answer, "source"):
        return ExerciseResult(MATCH, False, "it returned the OutputLine, not its text",
                              "Return line.text.")
    if answer != f"here is the {word} you want":
        return ExerciseResult(MATCH, False, f"it returned {answer!r}",
                              f"Return the text of the first line where {word!r} in line.text.")
    if took >= SLOW_TAIL:
        return ExerciseResult(MATCH, False, f"right line, but only after {took:.1f} s: it "
                              "waited for the child to finish",
                              "Return (or break) as soon as the line arrives; leaving "
                              "`async with open_stream(...)` ends the child for you.")
    await anyio.sleep(0.2)  # a terminated child can take a moment to disappear
    if left := leftovers():
        return ExerciseResult(MATCH, False, f"the child is still running ({len(left)} left)",
                              "Use `async with open_stream(...)` so leaving the block ends it.")
    none, problem = await call(first_match, MATCH, python("print('nothing here')"), word)
    if problem is not None:
        return problem
    if none is not None:
        return ExerciseResult(MATCH, False, f"with no match it returned {none!r}",
                              "Return None when the loop ends without finding the word.")
    return ExerciseResult(MATCH, True, "found the line while the child was still running, "
                          "stopped it, and gave None when nothing matched.")
