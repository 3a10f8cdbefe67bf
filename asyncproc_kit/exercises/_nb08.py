"""Checks for notebook 08 (circuit breakers): drive a breaker by hand; build one yourself.

Both run on a hand-moved clock, so nothing sleeps. The learner's own breaker is tried with
plain async functions (no processes) that count their calls. ``NotImplementedError`` passes
through.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import anyio

from .._breaker import CircuitBreaker
from .._errors import CircuitOpenError
from .._text import plural
from ..testing import EXIT
from ._common import ExerciseResult
from ._try import call

DRIVE = "08.1 drive a breaker through its states"
BUILD = "08.2 a breaker with a half-open state"


class HandClock:
    """A clock that moves only when told: ``clock.advance(5)``; ``clock()`` reads it."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def check_drive(drive: Callable[..., Any]) -> ExerciseResult:
    """``await drive(breaker, clock, failing, working)`` takes a closed breaker
    (failure_threshold=2, reset_timeout=5, on ``clock``) and, with ``breaker.call(run,
    ...)`` and ``clock.advance(...)`` only, leaves it closed again after passing through open
    and half-open."""
    clock = HandClock()
    breaker = CircuitBreaker("exercise", failure_threshold=2, reset_timeout=5, clock=clock)
    failing, attempts = EXIT(1), []
    plain_call = breaker.call

    async def recording_call(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        return await plain_call(*args, **kwargs)

    breaker.call = recording_call  # type: ignore[method-assign]
    _, problem = await call(drive, DRIVE, breaker, clock, failing, EXIT(0))
    if problem is not None:
        if "CircuitOpenError" in problem.message and attempts and failing in attempts[-1] \
                and breaker.state == "open" and clock.now < 5:
            return ExerciseResult(DRIVE, False, "a third failing call was refused: two "
                                  "failures had already opened the circuit",
                                  "Stop after 2 failures (the threshold); then advance the "
                                  "clock and let a working call be the probe.")
        if "CircuitOpenError" in problem.message:
            return ExerciseResult(DRIVE, False, "a call was refused: the circuit was open",
                                  "Advance the clock by reset_timeout (5) before the probe.")
        if "ProcessFailed" in problem.message:
            return ExerciseResult(DRIVE, False, "a failing call's ProcessFailed escaped",
                                  "Wrap each failing call in try/except ProcessFailed.")
        return problem
    path = [(c.old, c.new) for c in breaker.history]
    if any("by hand" in c.reason for c in breaker.history):
        return ExerciseResult(DRIVE, False, "trip() or reset() was used",
                              "Move it with calls and the clock only.")
    want = [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]
    if path != want:
        shown = " -> ".join(["closed", *(new for _, new in path)])
        return ExerciseResult(DRIVE, False, f"it went {shown}",
                              "Two failures open it; advance 5 s; one success closes it.")
    return ExerciseResult(DRIVE, True, f"closed -> open -> half-open -> closed in "
                          f"{clock.now:g} s of hand-moved time.")


async def check_breaker_class(make: Callable[..., Any]) -> ExerciseResult:
    """``make(threshold, reset_timeout, clock)`` builds a breaker whose ``await
    breaker.call(fn)`` opens after ``threshold`` consecutive failures, refuses with
    ``CircuitOpenError`` without calling ``fn``, lets exactly one probe through after
    ``reset_timeout``, and does not count cancellation as a failure."""
    if not callable(make):
        return ExerciseResult(BUILD, False, f"expected a class, got {make!r}",
                              "Pass the class itself: check_breaker_class(SimpleBreaker).")
    clock = HandClock()
    calls = 0
    release = anyio.Event()

    async def fail() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("down")

    async def ok() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    async def slow_ok() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "ok"

    try:
        breaker = make(3, 10, clock)
        if not inspect.iscoroutinefunction(getattr(breaker, "call", None)):
            return ExerciseResult(BUILD, False, "breaker.call is not an async method",
                                  "Define `async def call(self, fn):`.")
        problem = await _scenario(breaker, clock, fail, ok, slow_ok, release, lambda: calls)
    except NotImplementedError:
        raise
    except Exception as exc:
        return ExerciseResult(BUILD, False, f"it raised {type(exc).__name__}: {exc}",
                              "Run your class on its own in a cell to see the traceback.")
    if problem is not None:
        message, hint = problem
        return ExerciseResult(BUILD, False, message, hint)
    return ExerciseResult(BUILD, True, "opens after 3 consecutive failures, refuses without "
                          "calling, one probe among 20 callers, and cancellation (of a "
                          "call or of the probe) is not a failure.")


async def _expect(coro: Any) -> tuple[str, Any]:
    try:
        return "value", await coro
    except NotImplementedError:  # a RuntimeError, but it means "not written yet"
        raise
    except CircuitOpenError as exc:
        return "refused", exc
    except RuntimeError as exc:
        return "failed", exc


async def _scenario(breaker: Any, clock: HandClock, fail: Any, ok: Any, slow_ok: Any,
                    release: anyio.Event, calls: Callable[[], int]
                    ) -> tuple[str, str] | None:
    for _ in range(2):
        await _expect(breaker.call(fail))
    kinds = []
    for _ in range(3):  # cancelled calls: not failures
        with anyio.move_on_after(0):
            kinds.append((await _expect(breaker.call(anyio.sleep_forever)))[0])
    kind, _ = await _expect(breaker.call(ok))
    if kind != "value" or "refused" in kinds:
        return ("2 failures and 3 cancelled calls opened it (threshold 3)",
                "Catch only Exception as a failure: cancellation is a BaseException.")
    for _ in range(2):  # fail, fail, success, fail, fail: never 3 in a row
        await _expect(breaker.call(fail))
    kind, _ = await _expect(breaker.call(ok))
    if kind == "value":
        kind, _ = await _expect(breaker.call(fail))
        if kind == "failed":
            kind, _ = await _expect(breaker.call(ok))
    if kind != "value":
        return ("fail, fail, success, fail, fail: it opened, though no 3 failures were "
                "consecutive", "A success resets the failure count to 0 (the threshold "
                "counts consecutive failures, not all of them).")
    kind, _ = await _expect(breaker.call(ok))  # a success: back to 0 failures
    for _ in range(3):
        await _expect(breaker.call(fail))
    before = calls()
    kind, _ = await _expect(breaker.call(ok))
    if kind != "refused":
        return (f"after 3 failures a call gave {kind!r}, not CircuitOpenError",
                "Count consecutive failures; at the threshold, open and refuse.")
    if calls() != before:
        return ("it refused, but only after calling fn", "Decide before calling fn.")
    clock.advance(9.9)
    kind, _ = await _expect(breaker.call(ok))
    if kind != "refused":
        return ("it let a call through before reset_timeout passed",
                "Compare clock() with the time it opened plus reset_timeout.")
    clock.advance(0.1)
    refused = 0
    before = calls()

    async def caller() -> None:
        nonlocal refused
        kind, _ = await _expect(breaker.call(slow_ok))
        refused += kind == "refused"

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        started = calls() - before
        release.set()
    if started != 1:
        return (f"after reset_timeout, {started} of 20 concurrent callers ran",
                "Half-open: the first caller becomes the probe; refuse the others until it "
                "has finished (decide without awaiting anything in between).")
    if refused != 19:
        return (f"of the 19 others, {plural(refused, 'was', 'were')} refused",
                "Raise CircuitOpenError for them.")
    kind, value = await _expect(breaker.call(ok))
    if kind != "value" or value != "ok":
        return ("after a successful probe the next call gave "
                f"{kind!r}", "A successful probe closes the circuit.")
    for _ in range(3):
        await _expect(breaker.call(fail))
    clock.advance(10)
    await _expect(breaker.call(fail))  # the probe fails
    kind, _ = await _expect(breaker.call(ok))
    if kind != "refused":
        return ("after a failed probe the next call was not refused",
                "A failed probe opens the circuit again, for another reset_timeout.")
    clock.advance(10)
    with anyio.move_on_after(0):  # the probe is cancelled: neither success nor failure
        await _expect(breaker.call(anyio.sleep_forever))
    kind, _ = await _expect(breaker.call(ok))
    if kind != "refused":
        return None
    clock.advance(10)
    kind, _ = await _expect(breaker.call(ok))
    if kind == "value":
        return ("a cancelled probe reopened the circuit", "Cancellation is not a failure: "
                "count only Exception, also for the probe.")
    return ("after a cancelled probe every later call was refused (the probe flag stayed "
            "set)", "Clear the probe flag in `finally:`, so it is cleared however the probe "
            "ends, cancelled included.")
