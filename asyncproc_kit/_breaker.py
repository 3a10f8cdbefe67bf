"""A circuit breaker: stop calling something that keeps failing, then try again carefully.

::

    breaker = CircuitBreaker("backup", failure_threshold=3, reset_timeout=30)

    async with breaker:                      # guard any block...
        await run(["rsync", ...])
    await breaker.call(run, ["rsync", ...])  # ...or one call

The three states::

    closed ──N consecutive failures──▶ open ──reset_timeout passes──▶ half-open
      ▲                                  ▲                               │
      └──────────── the probe succeeds ──┼─────── the probe fails ◀──────┘

*Closed*: calls go through; consecutive failures are counted. *Open*: calls are refused at
once with :class:`CircuitOpenError` (nothing is started) which says when it will try again.
*Half-open*: exactly one call, the probe, goes through; every other caller is refused until
the probe has decided: success closes the circuit, failure opens it for another
``reset_timeout``.

The original tutorial (§4.6) had no half-open state (once the timeout passed, every waiting
caller went through at once) and checked, then acted, across an ``await``. Here every decision
is taken without awaiting anything, so concurrent callers can never both become the probe.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio

from ._errors import CircuitOpenError
from ._timeline import Timeline

T = TypeVar("T")

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"

Clock = Callable[[], float]
Listener = Callable[["StateChange"], object]


@dataclass(frozen=True)
class StateChange:
    """One transition of a :class:`CircuitBreaker`: what a listener receives.

    ``at`` is the breaker clock's time; ``reason`` says in words what caused it.
    """

    breaker: str
    at: float
    old: str
    new: str
    reason: str

    def __str__(self) -> str:
        return f"t={self.at:.1f} s {self.breaker!r}: {self.old} -> {self.new} ({self.reason})"


class ProbeRunning(CircuitOpenError):
    """The circuit is half-open and its one probe is still running: this call was refused.

    ``retry_after`` is 0: the circuit may close as soon as the probe succeeds.
    """

    def __init__(self, name: str, at: float):
        super().__init__(name, 0.0, at)

    def __str__(self) -> str:
        return (f"circuit {self.name!r} is half-open and its one probe is still running: "
                "refusing to start; try again when the probe has finished (it decides whether "
                "the circuit closes)")


@dataclass(frozen=True)
class _Ticket:
    generation: int
    probe: bool


class CircuitBreaker:
    """Refuse calls to something that keeps failing; let one probe test whether it is back.

    ``async with breaker:`` guards a block; ``await breaker.call(fn, *args, **kwargs)``
    guards one call, e.g. ``await breaker.call(run, cmd, timeout=5)``.

    ``failure_threshold`` consecutive failures open the circuit (a success in between starts
    the count again); after ``reset_timeout`` seconds it lets one probe through.

    ``clock`` is any callable returning seconds (default :func:`time.monotonic`): pass your
    own to drive the breaker by hand in tests and notebooks, no sleeping needed.

    **What counts as a failure:** an ``Exception`` for which ``is_failure(exc)`` is true
    (default: every ``Exception``). An exception it rejects counts as a success: the thing
    answered, the answer was just not what you wanted. An ``is_failure`` that itself raises
    counts the call as a failure and its exception reaches the caller. **Cancellation is
    not a failure** (nor is any other ``BaseException``): a cancelled call changes no
    count; a cancelled probe frees the probe slot so the next caller probes instead.

    A call admitted in one state that finishes after the state changed (a slow call from
    before the circuit opened) does not move the breaker: only calls of the current state
    count, and in half-open only the probe decides.

    **Errors:** a refused call raises :class:`CircuitOpenError` with ``retry_after`` (seconds
    until a probe will be allowed) and ``retry_at`` (clock time); while a probe runs,
    :class:`ProbeRunning` (a ``CircuitOpenError`` with ``retry_after == 0``). The guarded
    call's own exceptions pass through unchanged.

    **Observing:** ``state``, ``failures``, ``history`` (every :class:`StateChange`),
    ``calls`` (``(time, outcome)`` with outcome ``"success"``, ``"failure"``,
    ``"rejected"``, ``"cancelled"``); ``add_listener(fn)`` calls ``fn(change)`` on each
    transition (an exception in a listener propagates to the caller); ``timeline=`` marks
    each transition on a :class:`Timeline`. ``plots.plot_breaker(breaker)`` draws it all.

    One breaker guards one thing that fails as a unit (a command, a host): use
    :class:`BreakerRegistry` to get one per key.
    """

    def __init__(self, name: str = "breaker", *, failure_threshold: int = 5,
                 reset_timeout: float = 30.0, clock: Clock = time.monotonic,
                 is_failure: Callable[[BaseException], bool] | None = None,
                 listeners: Sequence[Listener] = (), timeline: Timeline | None = None,
                 history_limit: int = 1000):
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int) \
                or failure_threshold < 1:
            raise ValueError(f"failure_threshold must be an int >= 1, not {failure_threshold!r}")
        if not isinstance(reset_timeout, int | float) or isinstance(reset_timeout, bool) \
                or not reset_timeout >= 0:
            raise ValueError(f"reset_timeout must be seconds >= 0, not {reset_timeout!r}")
        if not callable(clock):
            raise TypeError(f"clock must be a callable returning seconds, not {clock!r}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = float(reset_timeout)
        self.clock = clock
        self.is_failure = is_failure or (lambda exc: True)
        self.timeline = timeline
        self.failures = 0
        self.opened_at: float | None = None
        self.history: deque[StateChange] = deque(maxlen=history_limit)
        self.calls: deque[tuple[float, str]] = deque(maxlen=history_limit)
        self.created_at = clock()
        self._state = CLOSED
        self._generation = 0
        self._probing = False
        self._listeners: list[Listener] = list(listeners)
        self._tickets: dict[Any, list[_Ticket]] = {}

    def __repr__(self) -> str:
        return (f"<CircuitBreaker {self.name!r} {self.state}, failures "
                f"{self.failures}/{self.failure_threshold}>")

    # -- state ------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"`` (an open circuit whose reset timeout
        has passed reads as half-open)."""
        self._refresh(self.clock())
        return self._state

    @property
    def retry_at(self) -> float | None:
        """Clock time at which an open circuit lets a probe through (``None`` unless open)."""
        if self._state != OPEN or self.opened_at is None:
            return None
        return self.opened_at + self.reset_timeout

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(change)`` with a :class:`StateChange` on every transition."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def reset(self) -> None:
        """Close the circuit and forget the failures (an operator's "it is fixed")."""
        self.failures = 0
        self._probing = False
        if self._state != CLOSED:
            self._move(CLOSED, self.clock(), "reset by hand")

    def trip(self) -> None:
        """Open the circuit now (an operator's "stop calling it")."""
        now = self.clock()
        self._probing = False
        self.opened_at = now
        self._move(OPEN, now, "tripped by hand")

    def _refresh(self, now: float) -> None:
        retry_at = self.retry_at
        if retry_at is not None and now >= retry_at:
            self._move(HALF_OPEN, retry_at, f"reset_timeout={self.reset_timeout:g} s passed")

    def _move(self, new: str, at: float, reason: str) -> None:
        old, self._state = self._state, new
        self._generation += 1
        change = StateChange(self.name, at, old, new, reason)
        self.history.append(change)
        if self.timeline is not None:
            self.timeline.mark(f"{self.name}: {new}")
        for listener in list(self._listeners):
            listener(change)

    # -- guarding ---------------------------------------------------------------------------

    def _admit(self) -> _Ticket:
        now = self.clock()
        self._refresh(now)
        if self._state == OPEN:
            self.calls.append((now, "rejected"))
            retry_at = self.retry_at
            assert retry_at is not None
            raise CircuitOpenError(self.name, max(0.0, retry_at - now), retry_at)
        if self._state == HALF_OPEN:
            if self._probing:
                self.calls.append((now, "rejected"))
                raise ProbeRunning(self.name, now)
            self._probing = True
            return _Ticket(self._generation, probe=True)
        return _Ticket(self._generation, probe=False)

    def _settle(self, ticket: _Ticket, exc: BaseException | None) -> None:
        now = self.clock()
        try:
            outcome = _outcome(exc, self.is_failure)
        except Exception:
            # A predicate that cannot judge (``e.returncode`` of a SpawnError) counts as a
            # failure; the slot is settled first, then its own error reaches the caller.
            self._count(ticket, "failure", now)
            raise
        self._count(ticket, outcome, now)

    def _count(self, ticket: _Ticket, outcome: str, now: float) -> None:
        if ticket.generation != self._generation:
            # The state changed while this call ran: only the current state's calls count.
            self.calls.append((now, outcome))
            return
        self.calls.append((now, outcome))
        if ticket.probe:
            self._probing = False
        if outcome == "cancelled":
            return
        if outcome == "success":
            self.failures = 0
            if ticket.probe:
                self._move(CLOSED, now, "the probe succeeded")
            return
        self.failures += 1
        if ticket.probe:
            self.opened_at = now
            self._move(OPEN, now, "the probe failed")
        elif self.failures >= self.failure_threshold:
            self.opened_at = now
            self._move(OPEN, now, f"{self.failures} consecutive failures")

    async def __aenter__(self) -> CircuitBreaker:
        ticket = self._admit()  # no await before this: the decision is atomic on the loop
        self._tickets.setdefault(_task_key(), []).append(ticket)
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        key = _task_key()
        stack = self._tickets[key]
        ticket = stack.pop()
        if not stack:
            del self._tickets[key]
        self._settle(ticket, exc)

    async def call(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """``await fn(*args, **kwargs)`` guarded by this breaker; its result or exception."""
        async with self:
            return await fn(*args, **kwargs)


def _outcome(exc: BaseException | None, is_failure: Callable[[BaseException], bool]) -> str:
    if exc is None:
        return "success"
    if not isinstance(exc, Exception):
        return "cancelled"  # cancellation, KeyboardInterrupt, SystemExit: not the callee's fault
    return "failure" if is_failure(exc) else "success"


def _task_key() -> Any:
    return anyio.get_current_task().id


class BreakerRegistry:
    """One :class:`CircuitBreaker` per key (a command, a host), created on first use.

    ::

        breakers = BreakerRegistry(failure_threshold=3, reset_timeout=10)
        await breakers.for_command(cmd).call(run, cmd)   # keyed by the program name
        await breakers["db-1.internal"].call(run, ssh_cmd)

    Every keyword argument is passed to each new breaker; its name is the key.
    """

    def __init__(self, **settings: Any):
        self.settings = settings
        self._breakers: dict[Hashable, CircuitBreaker] = {}

    def __getitem__(self, key: Hashable) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = CircuitBreaker(str(key), **self.settings)
        return breaker

    def for_command(self, cmd: Sequence[Any]) -> CircuitBreaker:
        """The breaker for ``cmd``'s program (its first argument, without the directory)."""
        if isinstance(cmd, str | bytes) or not cmd:
            raise TypeError("for_command() takes a command as a list of arguments, "
                            "e.g. ['rsync', '-a', 'src', 'dst']")
        program = str(cmd[0]).rsplit("/", 1)[-1]
        return self[program]

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(list(self._breakers.values()))

    def __len__(self) -> int:
        return len(self._breakers)

    def __repr__(self) -> str:
        states = ", ".join(f"{b.name}={b.state}" for b in self)
        return f"<BreakerRegistry: {states or 'empty'}>"
