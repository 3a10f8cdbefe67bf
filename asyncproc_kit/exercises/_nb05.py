"""Checks for notebook 05 (dynamic and priority scheduling): the start order of a priority
queue with FIFO ties; submitting work as it arrives.

The order check compares against the rule (smaller priority first, then submission order)
on random inputs full of ties, and names the classic mistakes: the original's newest-first
tie-break, and larger-first. ``NotImplementedError`` passes through.
"""

from __future__ import annotations

import contextlib
import inspect
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio

from .._pool import ProcessPool
from ..testing import python
from ._common import ExerciseResult
from ._try import call

ORDER = "05.1 priorities, FIFO among equals"
FEED = "05.2 submit while it runs"


def expected_order(submissions: list[tuple[str, int]]) -> list[str]:
    """The rule, stated plainly: by priority, then by position in ``submissions``."""
    ranked = sorted(range(len(submissions)), key=lambda i: (submissions[i][1], i))
    return [submissions[i][0] for i in ranked]


def _lifo_order(submissions: list[tuple[str, int]]) -> list[str]:
    ranked = sorted(range(len(submissions)), key=lambda i: (submissions[i][1], -i))
    return [submissions[i][0] for i in ranked]


def check_start_order(start_order: Callable[[list[tuple[str, int]]], Any]) -> ExerciseResult:
    """``start_order(submissions)`` takes ``(name, priority)`` pairs in submission order and
    returns the names in the order a scheduler must start them."""
    for _ in range(20):
        count = random.randint(6, 12)
        submissions = [(f"job{i}", random.choice([0, 1, 1, 2, 2, 2])) for i in range(count)]
        try:
            answer = start_order(list(submissions))
        except NotImplementedError:
            raise
        except Exception as exc:
            return ExerciseResult(ORDER, False, f"it raised {type(exc).__name__}: {exc}",
                                  "Run it on its own in a cell to see the whole traceback.")
        if inspect.iscoroutine(answer):
            answer.close()
            return ExerciseResult(ORDER, False, "start_order is `async def`: calling it gave a "
                                  "coroutine, not a list", "Define it with a plain `def`: "
                                  "nothing in it waits, so nothing needs `await`.")
        if not isinstance(answer, list | tuple):
            return ExerciseResult(ORDER, False, f"it returned {type(answer).__name__}, not a "
                                  "list of names", "Pop every entry and collect the names.")
        answer = list(answer)
        right = expected_order(submissions)
        if answer == right:
            continue
        shown = ", ".join(f"{n}:{p}" for n, p in submissions)
        if answer == _lifo_order(submissions):
            return ExerciseResult(ORDER, False, f"equal priorities came out newest first "
                                  f"for [{shown}]", "That is the original's bug: put a "
                                  "sequence number after the priority, (priority, seq, name).")
        if answer == [n for n, _ in sorted(submissions, key=lambda s: -s[1])]:
            return ExerciseResult(ORDER, False, "larger priorities came out first",
                                  "Smaller number = more urgent here; heapq pops the smallest.")
        if sorted(answer) != sorted(right):
            return ExerciseResult(ORDER, False, f"the names differ from the input: {answer}",
                                  "Return every submitted name exactly once.")
        return ExerciseResult(ORDER, False, f"for [{shown}] got {answer}, expected {right}",
                              "Order by (priority, submission number).")
    return ExerciseResult(ORDER, True, "20 random queues started by priority, FIFO among "
                          "equals.")


async def _arrivals(commands: list[list[str]], gap: float, done: list[float]
                    ) -> AsyncIterator[list[str]]:
    for command in commands:
        await anyio.sleep(gap)
        yield command
    done.append(time.time())


async def check_feed(run_feed: Callable[[AsyncIterator[list[str]]], Any], *,
                     patience: float = 20.0) -> ExerciseResult:
    """``await run_feed(arrivals)`` submits each command to a ProcessPool *as it arrives*
    (``async for command in arrivals``) and returns their ProcessResults in arrival order."""
    words = random.sample(["red", "green", "blue", "cyan", "pink", "gold", "grey"], 5)
    # Each job outlasts the gap between arrivals, so a job still runs when the next arrives
    # unless it was awaited first.
    commands = [python(f"import time; time.sleep(0.5); print({word!r})") for word in words]
    done: list[float] = []
    with _submissions() as busy:
        answer, problem = await call(run_feed, FEED, _arrivals(commands, 0.2, done),
                                     patience=patience,
                                     stuck="Await each job after the async for loop has "
                                           "ended.")
    if problem is not None:
        return problem
    if not done:
        return ExerciseResult(FEED, False, "it returned before all commands had arrived",
                              "Loop with `async for command in arrivals` to the end.")
    if not isinstance(answer, list | tuple) or not all(
            hasattr(item, "stdout") and hasattr(item, "started") for item in answer):
        return ExerciseResult(FEED, False, f"expected a list of results, got {answer!r}",
                              "Return [await job for job in jobs]: the ProcessResults.")
    outputs = [item.stdout for item in answer]
    if outputs != [f"{word}\n" for word in words]:
        return ExerciseResult(FEED, False, f"got the outputs {outputs!r}",
                              "Keep the jobs in a list in submission order and await each.")
    if not busy:
        return ExerciseResult(FEED, False, "no command went through ProcessPool.submit",
                              "Open `async with ProcessPool(...) as pool:` and submit each "
                              "command with `await pool.submit(command)`.")
    if min(item.started for item in answer) > done[0]:
        return ExerciseResult(FEED, False, "nothing started before the last command arrived",
                              "Submit inside the async for loop, not after collecting.")
    if not any(busy[1:]):
        return ExerciseResult(FEED, False, "each job had finished before the next command "
                              "arrived: one at a time", "Do not await a job inside the loop: "
                              "keep the handles in a list and await them after it.")
    return ExerciseResult(FEED, True, "each command was submitted as it arrived and ran "
                          "while the others were still coming.")


@contextlib.contextmanager
def _submissions() -> Iterator[list[int]]:
    """Record, for each ``ProcessPool.submit``, how many earlier jobs were still unfinished."""
    busy: list[int] = []
    jobs: list[Any] = []
    original = ProcessPool.submit

    async def submit(self: Any, *args: Any, **kwargs: Any) -> Any:
        busy.append(sum(not job.done() for job in jobs))
        job = await original(self, *args, **kwargs)
        jobs.append(job)
        return job

    ProcessPool.submit = submit  # type: ignore[method-assign]
    try:
        yield busy
    finally:
        ProcessPool.submit = original  # type: ignore[method-assign]
