"""Checks for notebook 04 (pools and structured concurrency): a bounded batch that keeps
every outcome; a worker pool built by hand.

Each check runs the learner's function on real children (random exit codes and sizes, so a
hard-coded answer fails) while an observer counts our live child processes every few
milliseconds: that is how "at most N at once" and "nothing outlives the call" are seen
without the learner's code having to report anything. ``NotImplementedError`` passes through.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from .._pool import WORKERS_ENV
from ..testing import descendants, python
from ._common import ExerciseResult
from ._try import call

BATCH = "04.1 a bounded batch"
WORKERS = "04.2 a pool by hand"
MISSING = "no-such-program-for-04"


def _exiting(code: int, seconds: float) -> list[str]:
    return python(f"import sys, time; time.sleep({seconds!r}); sys.exit({code})")


def _printing(text: str, seconds: float) -> list[str]:
    return python(f"import time; time.sleep({seconds!r}); print({text!r})")


def running(commands: list[list[str]]) -> list[int]:
    """Live processes, anywhere, whose command line is one of ``commands`` (the check's own
    commands carry random words, so nothing else matches)."""
    import psutil

    wanted = {tuple(c) for c in commands}
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if (tuple(proc.info["cmdline"] or ()) in wanted
                and proc.info["status"] != psutil.STATUS_ZOMBIE):
            found.append(proc.pid)
    return found


async def observe(work: Any, commands: list[list[str]]) -> tuple[
        Any, ExerciseResult | None, int, list[int]]:
    """Await ``work`` while sampling our live children; return (value, problem, peak, left).

    Only children that were not there before count: a kernel may hold helpers of its own
    (multiprocessing's resource tracker, once anything used multiprocessing)."""
    before = set(descendants())

    def new_children() -> list[int]:
        return [pid for pid in descendants() if pid not in before]

    peak = 0
    outcome: list[Any] = [None, None]
    error: Exception | None = None
    left: list[int] = []

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, len(await anyio.to_thread.run_sync(new_children)))
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sample)
        try:
            outcome[:] = await work
            # at once: a loaded machine must not let leftovers finish
            left = new_children() or running(commands)
        except Exception as exc:  # NotImplementedError, unwrapped from the task group
            error = exc
        finally:
            tg.cancel_scope.cancel()
    if error is not None:
        raise error
    return outcome[0], outcome[1], peak, left


async def check_exit_codes(exit_codes: Callable[[list[list[str]], int], Any], *,
                           patience: float = 20.0) -> ExerciseResult:
    """``await exit_codes(commands, limit)`` returns each command's exit code in input order
    (``None`` when it could not start), with at most ``limit`` children at once."""
    limit = random.randint(2, 3)
    codes: list[int | None] = [random.choice([0, 0, 1, 2, 3]) for _ in range(7)]
    codes[random.randrange(1, 6)] = None
    commands = [[MISSING] if c is None else _exiting(c, 0.25) for c in codes]
    with _default_workers(len(commands)):  # a forgotten limit= shows on any machine
        answer, problem, peak, left = await observe(call(
            exit_codes, BATCH, commands, limit, patience=patience,
            stuck="Each command sleeps 0.25 s; with the limit, all of them take about a "
                  "second. Is something waiting forever?"), commands)
    if problem is not None:
        return problem
    if left:
        return ExerciseResult(BATCH, False, f"{len(left)} children still run after it returned",
                              "Await every command before returning (map_limited does).")
    if not isinstance(answer, list | tuple) or len(answer) != len(codes):
        return ExerciseResult(BATCH, False, f"expected a list of {len(codes)} exit codes, got "
                              f"{answer!r}", "Return one entry per command, in input order.")
    answer = list(answer)
    if peak > limit:
        return ExerciseResult(BATCH, False, f"{peak} children ran at once with limit={limit}",
                              "Pass limit= to map_limited (or hold a semaphore around run).")
    if answer == codes:
        return ExerciseResult(BATCH, True, "every exit code in input order, never more than "
                              "the limit at once, and the missing program did not stop the "
                              "others.")
    if sorted(answer, key=str) == sorted(codes, key=str):
        return ExerciseResult(BATCH, False, "the right codes in the wrong order",
                              "Keep the input order: map_limited's list already has it.")
    return ExerciseResult(BATCH, False, f"got {answer}, expected {codes}",
                          "A slot holds a ProcessResult or an error: ProcessFailed has "
                          ".returncode too; SpawnError (could not start) becomes None.")


async def check_pool_by_hand(pool_by_hand: Callable[[list[list[str]], int], Any], *,
                             patience: float = 20.0) -> ExerciseResult:
    """``await pool_by_hand(commands, workers)`` runs the commands with ``workers`` worker
    tasks fed by one channel and returns their stdout (text) in input order."""
    workers = random.randint(2, 3)
    words = random.sample(["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "owl"], 7)
    commands = [_printing(word, 0.3) for word in words]
    expected = [f"{word}\n" for word in words]
    with _receivers(commands) as takers:
        answer, problem, peak, left = await observe(call(
            pool_by_hand, WORKERS, commands, workers, patience=patience,
            stuck="Close the send stream once every job is sent (async with send:), so the "
                  "workers' `async for` loops end."), commands)
    if problem is not None:
        return problem
    if left:
        return ExerciseResult(WORKERS, False, f"{len(left)} children still run after it returned",
                              "Start the workers inside a task group: leaving it waits for them.")
    if peak > workers:
        return ExerciseResult(WORKERS, False, f"{peak} children ran at once with "
                              f"{workers} workers", "Start exactly `workers` tasks, each running "
                              "one command at a time.")
    if peak < 2:
        return ExerciseResult(WORKERS, False, "the commands ran one at a time",
                              "Start all the workers with tg.start_soon before feeding jobs, "
                              "and give each worker its own receive_stream.clone().")
    if not takers:
        return ExerciseResult(WORKERS, False, "no job went through a memory object stream",
                              "map_limited and ProcessPool do the pooling for you; here you "
                              "build it: send (index, command) into "
                              "anyio.create_memory_object_stream() and let `workers` tasks "
                              "receive from it.")
    if len(takers) != workers:
        return ExerciseResult(WORKERS, False, f"{len(takers)} tasks took jobs from the stream, "
                              f"with workers={workers}", "Start exactly `workers` worker tasks, "
                              "each receiving from the stream (receive.clone() for each).")
    if not isinstance(answer, list | tuple):
        return ExerciseResult(WORKERS, False, f"it returned {type(answer).__name__}, not a list",
                              "Collect the outputs in a list indexed by the job's position.")
    answer = list(answer)
    if answer == expected:
        return ExerciseResult(WORKERS, True, "every output in input order, never more than "
                              "`workers` at once, nothing left running.")
    if [a.strip() if isinstance(a, str) else a for a in answer] == words:
        return ExerciseResult(WORKERS, False, "the outputs lost their newline",
                              "Return result.stdout unchanged.")
    if sorted(map(str, answer)) == sorted(expected):
        return ExerciseResult(WORKERS, False, "the right outputs in completion order",
                              "Send (index, command) into the channel and store each output "
                              "at results[index].")
    return ExerciseResult(WORKERS, False, f"got {answer!r}, expected {expected!r}",
                          "Return each command's stdout, in the order of the commands.")


@contextlib.contextmanager
def _default_workers(count: int) -> Iterator[None]:
    """Make the kit's default worker count ``count`` (above any limit the check picks)."""
    before = os.environ.get(WORKERS_ENV)
    os.environ[WORKERS_ENV] = str(count)
    try:
        yield
    finally:
        if before is None:
            del os.environ[WORKERS_ENV]
        else:
            os.environ[WORKERS_ENV] = before


def _is_job(item: Any, commands: list[list[str]]) -> bool:
    parts = item if isinstance(item, tuple | list) else (item,)
    return any(part in commands for part in parts if isinstance(part, list))


@contextlib.contextmanager
def _receivers(commands: list[list[str]]) -> Iterator[set[Any]]:
    """Collect the tasks that receive one of ``commands`` from any memory object stream."""
    takers: set[Any] = set()
    original = MemoryObjectReceiveStream.receive

    async def receive(self: Any) -> Any:
        item = await original(self)
        if _is_job(item, commands):
            takers.add(anyio.get_current_task().id)
        return item

    MemoryObjectReceiveStream.receive = receive  # type: ignore[method-assign]
    try:
        yield takers
    finally:
        MemoryObjectReceiveStream.receive = original  # type: ignore[method-assign]
