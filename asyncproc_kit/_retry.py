"""Retrying a failing command, the careful way, on top of **stamina**.

The original tutorial (§4.5) retried every failure the same way, "command not found"
included, after the same fixed delay. Here you say *which* failures are worth another try,
and stamina supplies exponential backoff with jitter, an attempt limit and a total time
budget (and a testing mode that switches the waiting off)::

    result = await run_with_retries(["rsync", ...], on_exit_codes={23, 30}, attempts=5)

    policy = RetryPolicy(on_stderr=r"Connection (refused|reset)", timeout=60)
    result = await policy.run(cmd)

    @retry_process(on_exit_codes={75})          # decorate your own async function
    async def fetch() -> str: ...

    @stamina.retry(on=retry_if(exit_codes={75}), attempts=3)   # or use stamina directly
    async def fetch() -> str: ...

A command that could not start (:class:`SpawnError`) is never retried: it will not start
the next time either.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

from ._command import check_command, check_seconds
from ._errors import (
    ProcessError,
    ProcessFailed,
    ProcessTimeout,
    SpawnError,
    describe_returncode,
    format_command,
)
from ._run import ProcessResult, run
from ._timeline import Timeline

T = TypeVar("T")

BUDGET = "the retry budget"
"""Start of ``ProcessTimeout.limit`` when an attempt was cut short by the total ``timeout``."""


def _stamina() -> Any:
    try:
        import stamina
    except ImportError:  # pragma: no cover - stamina comes with the retry extra
        raise ImportError(
            "retries need stamina: pip install 'asyncproc-kit[retry]' (or pip install "
            "stamina)") from None
    return stamina


class RetryOn:
    """A predicate ``exc -> bool`` that says which process failures are worth retrying.

    Made by :func:`retry_if`; stamina accepts it as ``on=``. True for a
    :class:`ProcessFailed` whose return code is in ``exit_codes`` or whose stderr matches
    ``stderr`` (a regular expression, searched), and for a :class:`ProcessTimeout` when
    ``timeouts`` is true (but never for one cut short by the retry budget). Never true for
    :class:`SpawnError` or any other exception.
    """

    def __init__(self, exit_codes: Collection[int] = (),
                 stderr: str | re.Pattern[str] | None = None, timeouts: bool = False):
        if isinstance(exit_codes, int):
            exit_codes = (exit_codes,)
        codes = frozenset(exit_codes)
        for code in codes:
            if isinstance(code, bool) or not isinstance(code, int):
                raise TypeError(f"exit codes are ints (negative for signals), not {code!r}")
        if 0 in codes:
            raise ValueError("exit code 0 is success and is never retried: remove it from "
                             "exit_codes")
        if not codes and stderr is None and not timeouts:
            raise ValueError(
                "say which failures are worth retrying: exit_codes={...}, stderr='regex' or "
                "timeouts=True (retrying every failure, 'command not found' included, is the "
                "mistake this helper exists to avoid)")
        self.exit_codes = codes
        self.stderr = re.compile(stderr) if isinstance(stderr, str) else stderr
        self.timeouts = bool(timeouts)

    def __call__(self, exc: BaseException) -> bool:
        if isinstance(exc, SpawnError):
            return False
        if isinstance(exc, ProcessTimeout):
            return self.timeouts and not str(exc.limit).startswith(BUDGET)
        if isinstance(exc, ProcessFailed):
            if exc.returncode in self.exit_codes:
                return True
            if self.stderr is not None:
                text = exc.stderr or ""
                if isinstance(text, bytes):
                    text = text.decode("utf-8", "replace")
                return self.stderr.search(text) is not None
        return False

    def __repr__(self) -> str:
        parts = []
        if self.exit_codes:
            parts.append(f"exit_codes={sorted(self.exit_codes)}")
        if self.stderr is not None:
            parts.append(f"stderr={self.stderr.pattern!r}")
        if self.timeouts:
            parts.append("timeouts=True")
        return f"retry_if({', '.join(parts)})"


def retry_if(*, exit_codes: Collection[int] = (), stderr: str | re.Pattern[str] | None = None,
             timeouts: bool = False) -> RetryOn:
    """The predicate to give stamina: retry on these exit codes, this stderr, or timeouts.

    ``@stamina.retry(on=retry_if(exit_codes={75}), attempts=3)`` retries a function that
    calls :func:`run` when the command exits 75 (``EX_TEMPFAIL``). ``stderr`` is a regular
    expression searched in the failed command's stderr. ``SpawnError`` ("command not
    found") is never retried. At least one condition is required: stamina, too, refuses to
    guess what is worth retrying.
    """
    return RetryOn(exit_codes, stderr, timeouts)


@dataclass(frozen=True)
class RetryEvent:
    """A retry that is about to start: what ``on_retry=`` receives.

    ``attempt`` is the number of the attempt about to start (2 for the first retry);
    ``error`` ended the previous one; ``backoff`` is stamina's planned wait without jitter
    (a lower bound; 0 in testing mode) and ``waited`` the seconds really waited.
    """

    args: list[Any]
    attempt: int
    error: ProcessError
    backoff: float
    waited: float

    def __str__(self) -> str:
        return (f"attempt {self.attempt} of {format_command(self.args)} after "
                f"{_reason(self.error)}; waited {self.waited:.2f} s")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ProcessFailed):
        return describe_returncode(exc.returncode)
    if isinstance(exc, ProcessTimeout):
        return f"a timeout ({exc.limit})"
    return type(exc).__name__


Hold = AbstractAsyncContextManager[Any] | Callable[[], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Which failures to retry, how often, and how long to wait: one reusable object.

    ``await policy.run(cmd)`` runs ``cmd`` with retries; ``policy(fn)`` (or
    :func:`retry_process`) decorates an async function that calls :func:`run`.

    What to retry (at least one; see :func:`retry_if`): ``on_exit_codes``, ``on_stderr`` (a
    regex), ``on_timeout`` (attempts cut by ``attempt_timeout``). Never ``SpawnError``.

    How (stamina's parameters and defaults, except ``attempts``): ``attempts=3`` in total;
    ``timeout=45.0`` seconds for all attempts and waits together (``None``: no budget);
    backoff before retry *n* is ``min(wait_max, wait_initial * wait_exp_base ** (n - 1))``
    plus a random jitter up to ``wait_jitter``. ``attempt_timeout`` limits each attempt
    (``run(timeout=)``).

    Tests and notebooks: ``stamina.set_testing(True, attempts=...)`` removes the waiting
    (and stamina's own budget check; :meth:`run` still cuts an attempt at the budget).
    """

    on_exit_codes: Collection[int] = ()
    on_stderr: str | re.Pattern[str] | None = None
    on_timeout: bool = False
    attempts: int = 3
    timeout: float | None = 45.0
    attempt_timeout: float | None = None
    wait_initial: float = 0.1
    wait_max: float = 5.0
    wait_jitter: float = 1.0
    wait_exp_base: float = 2.0
    should_retry: RetryOn = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "should_retry",
                           RetryOn(self.on_exit_codes, self.on_stderr, self.on_timeout))
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) \
                or self.attempts < 1:
            raise ValueError(f"attempts must be an int >= 1 (1 = no retry), not "
                             f"{self.attempts!r}")
        check_seconds("timeout", self.timeout)
        check_seconds("attempt_timeout", self.attempt_timeout)
        for name in ("wait_initial", "wait_max", "wait_jitter"):
            check_seconds(name, getattr(self, name), allow_none=False, allow_zero=True)

    def _stamina_kwargs(self) -> dict[str, Any]:
        return dict(attempts=self.attempts, timeout=self.timeout,
                    wait_initial=self.wait_initial, wait_max=self.wait_max,
                    wait_jitter=self.wait_jitter, wait_exp_base=self.wait_exp_base)

    def __call__(self, fn: Callable[..., T]) -> Callable[..., T]:
        """Decorate ``fn`` with ``stamina.retry`` using this policy.

        The budget is stamina's: it stops *scheduling* retries once ``timeout`` has passed,
        but does not cut an attempt that is running (use ``run(timeout=)`` inside ``fn``, or
        :meth:`run`, for that).
        """
        decorate = _stamina().retry(on=self.should_retry, **self._stamina_kwargs())
        return decorate(fn)  # type: ignore[no-any-return]

    async def run(self, cmd: Any, *, hold: Hold | None = None,
                  on_retry: Callable[[RetryEvent], object] | None = None,
                  timeline: Timeline | None = None, label: str | None = None,
                  **run_options: Any) -> ProcessResult:
        """Run ``cmd`` (through :func:`run`) until it succeeds or the policy gives up.

        Returns the successful :class:`ProcessResult`. ``run_options`` go to :func:`run`
        (``input``, ``grace``, ``cwd``, ``env``, ``text``...; not ``check`` or ``timeout``,
        which the policy owns).

        **Errors:** the last attempt's exception: :class:`ProcessFailed` (it exited non-zero
        with a code or stderr not worth retrying, or attempts ran out), :class:`SpawnError`
        at once (never retried), :class:`ProcessTimeout` whose ``limit`` names what fired:
        ``"attempt_timeout=..."`` or ``"the retry budget, timeout=..."``.

        **Cancellation:** cancelling the caller ends the running attempt (its process group
        is terminated) or the backoff wait; nothing is retried after that.

        **Giving a slot back:** ``hold`` is entered around each attempt and left before the
        backoff wait: pass a pool's ``anyio.CapacityLimiter`` (or any async context manager,
        or a callable returning a fresh one) and a job that waits to retry lets another job
        run meanwhile.

        ``on_retry(event)`` is called with a :class:`RetryEvent` as each retry starts;
        ``timeline=`` records every attempt as a span (``label #2``...) and marks each retry.
        """
        for name in ("check", "timeout"):
            if name in run_options:
                raise TypeError(f"{name}= is set by the policy: use attempt_timeout= or the "
                                "policy's timeout= (the budget for all attempts)")
        args = check_command(cmd)
        name = label or format_command(args)
        stamina = _stamina()
        budget_end = math.inf if self.timeout is None else anyio.current_time() + self.timeout
        failed_at = 0.0
        last: ProcessError | None = None
        backoff = 0.0
        tries = 0
        try:
            async for attempt in stamina.retry_context(on=self.should_retry,
                                                       **self._stamina_kwargs()):
                if last is not None:
                    if anyio.current_time() >= budget_end:  # testing mode ignores the budget
                        raise _BudgetSpent
                    event = RetryEvent(args, attempt.num, last, backoff,
                                       anyio.current_time() - failed_at)
                    if timeline is not None:
                        timeline.mark(f"retry {attempt.num - 1}: {name}")
                    if on_retry is not None:
                        on_retry(event)
                with attempt:
                    try:
                        return await self._attempt(args, attempt.num, name, hold, budget_end,
                                                   timeline, run_options)
                    except ProcessError as exc:
                        tries += 1
                        failed_at, last, backoff = anyio.current_time(), exc, attempt.next_wait
                        raise
        except _BudgetSpent:
            if last is None:  # waiting for `hold` took the whole budget
                raise ProcessTimeout(args, self.timeout or 0.0,
                                     limit=f"{BUDGET}, spent waiting for a slot") from None
            last.add_note(f"gave up: the retry budget, timeout={self.timeout:g} s, ran out "
                          f"after {tries} attempts")
            raise last from None
        except ProcessError as exc:
            if exc is last and self.should_retry(exc):
                budget = "no budget" if self.timeout is None else f"timeout={self.timeout:g} s"
                limits = ("stamina's testing mode" if stamina.is_testing() else
                          f"attempts={self.attempts}, {budget}")
                exc.add_note(f"gave up after {tries} attempts ({limits})")
            raise
        raise AssertionError("unreachable: stamina re-raises the last error")

    async def _attempt(self, args: list[Any], num: int, name: str, hold: Hold | None,
                       budget_end: float, timeline: Timeline | None,
                       run_options: dict[str, Any]) -> ProcessResult:
        if hold is None:
            held: AbstractAsyncContextManager[Any] = nullcontext()
        elif isinstance(hold, AbstractAsyncContextManager):
            held = hold  # reusable: a CapacityLimiter, Semaphore, Lock...
        else:
            held = hold()  # a factory of fresh context managers
        async with held:
            remaining = budget_end - anyio.current_time()
            if remaining <= 0:
                raise _BudgetSpent  # not retried: stamina lets it out at once
            limit, by_budget = self.attempt_timeout, False
            if remaining < (limit if limit is not None else math.inf):
                limit, by_budget = remaining, True
            try:
                return await run(args, check=True, timeout=limit, timeline=timeline,
                                 label=f"{name} #{num}", **run_options)
            except ProcessTimeout as exc:
                exc.limit = (f"{BUDGET}, timeout={self.timeout:g} s for all attempts"
                             if by_budget else f"attempt_timeout={self.attempt_timeout:g} s")
                raise


class _BudgetSpent(Exception):
    """The total budget ran out before the next attempt could start (never retried)."""


def retry_process(*, on_exit_codes: Collection[int] = (),
                  on_stderr: str | re.Pattern[str] | None = None, on_timeout: bool = False,
                  **settings: Any) -> RetryPolicy:
    """A decorator that retries an async function calling :func:`run`, chosen failures only.

    ``@retry_process(on_exit_codes={75}, attempts=4)`` over ``async def sync_mirror(): ...``.
    Takes :class:`RetryPolicy`'s arguments; the result is the policy (it decorates when
    called with a function).
    """
    return RetryPolicy(on_exit_codes=on_exit_codes, on_stderr=on_stderr,
                       on_timeout=on_timeout, **settings)


async def run_with_retries(cmd: Any, *, on_exit_codes: Collection[int] = (),
                           on_stderr: str | re.Pattern[str] | None = None,
                           on_timeout: bool = False, attempts: int = 3,
                           timeout: float | None = 45.0,  # noqa: ASYNC109 (stamina's budget)
                           attempt_timeout: float | None = None,
                           wait_initial: float = 0.1, wait_max: float = 5.0,
                           wait_jitter: float = 1.0, hold: Hold | None = None,
                           on_retry: Callable[[RetryEvent], object] | None = None,
                           timeline: Timeline | None = None, label: str | None = None,
                           **run_options: Any) -> ProcessResult:
    """Run ``cmd``, retrying the failures you name; the one-line form of :class:`RetryPolicy`.

    ``await run_with_retries(cmd, on_exit_codes={75}, attempts=5, timeout=30)`` runs ``cmd``
    up to 5 times while it exits 75, with exponential backoff and jitter between attempts,
    and never longer than 30 s in total. Any other failure is raised at once; a missing
    command (:class:`SpawnError`) is never retried.

    The arguments are :class:`RetryPolicy`'s and :meth:`RetryPolicy.run`'s (see there for
    errors, cancellation and ``hold=``); ``run_options`` go to :func:`run`.
    """
    policy = RetryPolicy(on_exit_codes=on_exit_codes, on_stderr=on_stderr,
                         on_timeout=on_timeout, attempts=attempts, timeout=timeout,
                         attempt_timeout=attempt_timeout, wait_initial=wait_initial,
                         wait_max=wait_max, wait_jitter=wait_jitter)
    return await policy.run(cmd, hold=hold, on_retry=on_retry, timeline=timeline, label=label,
                            **run_options)
