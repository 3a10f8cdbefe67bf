"""Periodic health checks that cannot hang the monitor (seed case 4, notebook 12).

::

    from asyncproc_kit.cases.health import HealthMonitor

    monitor = HealthMonitor()
    monitor.add("web", ["curl", "-fsS", "http://127.0.0.1:8080/health"], interval=10,
                timeout=2, failure_threshold=3, success_threshold=1, start_period=0)
    monitor.add_listener(print)            # your alert hook: called with each HealthEvent
    async with monitor:                    # runs every check in the background
        ...
    monitor.status("web")                  # "unknown" | "up" | "down"
    monitor.events                         # every HealthEvent, in order

Two parts, kept apart on purpose:

- :class:`ServiceHealth` is the *decision*: plain code with no I/O and no sleeping. Feed it
  check results (``record(ok, reason)``) and it decides ``unknown`` → ``up`` → ``down`` →
  ``up`` with Kubernetes' rules (separate failure and success thresholds) and Docker's start
  period. Its clock is any callable, so a test or a notebook moves time by hand.
- :class:`HealthMonitor` is the *schedule*: one background task per service ticks at
  ``start + k * interval`` (no drift, however long the checks take) and runs the check
  command with :func:`~asyncproc_kit.run` under its timeout. A check that hangs is ended
  with its whole process group and counts as a failure with reason ``"timeout"``; a check
  still running at its next tick is not started twice (an ``"overrun"`` event instead).

The original tutorial ran each check with no timeout (one hung ``curl`` froze that service's
monitor forever), printed "DOWN" again on every failure past the threshold, printed
"recovered" after any single failure, went through a shell, and its alert was a ``println!``.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anyio

from .._command import check_command, check_env, check_seconds
from .._errors import ProcessTimeout, SpawnError, describe_returncode
from .._process import DEFAULT_GRACE
from .._run import run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["CheckResult", "HealthEvent", "HealthMonitor", "ServiceHealth", "plot_health"]

UNKNOWN = "unknown"
UP = "up"
DOWN = "down"
EVENT_KINDS = ("up", "down", "recovered", "overrun")

Clock = Callable[[], float]
Listener = Callable[["HealthEvent"], object]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthEvent:
    """A decision about one service: what a listener receives.

    ``kind`` is ``"up"`` (first decided healthy), ``"down"`` (failure threshold reached),
    ``"recovered"`` (healthy again after being down; ``outage`` is the seconds from the
    ``"down"`` decision to this one) or ``"overrun"`` (a tick found the previous check still
    running, so it was not started twice). ``time`` is on the deciding clock (for a
    :class:`HealthMonitor`: seconds since it started); ``reason`` says why in words.
    """

    name: str
    kind: str
    time: float
    reason: str
    outage: float | None = None

    def __str__(self) -> str:
        text = f"t={self.time:.2f} s {self.name}: {self.kind} ({self.reason})"
        return text if self.outage is None else f"{text}, outage {self.outage:.2f} s"


@dataclass(frozen=True)
class CheckResult:
    """One check's result: when it started (``time``), whether it passed (``ok``), why
    (``reason``: ``"exit 0"``, ``"exit code 1: <last stderr line>"``, ``"timeout"``,
    ``"cannot start: ..."``), how long it ran (``duration``, s) and whether it ``counted``
    (a failure inside the start period does not)."""

    time: float
    ok: bool
    reason: str
    duration: float
    counted: bool = True

    @property
    def ended(self) -> float:
        """When the result was known (``time + duration``)."""
        return self.time + self.duration


def _check_threshold(name: str, value: Any, unit: str = "consecutive checks") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1 ({unit}), not {value!r}")
    return value


class ServiceHealth:
    """Decide one service's health from its check results; plain code, no I/O.

    ::

        clock = HandClock()                    # any callable returning seconds
        web = ServiceHealth("web", failure_threshold=3, success_threshold=2, clock=clock)
        web.record(True)                       # -> None: 1 success of the 2 needed
        clock.advance(10)
        web.record(True)                       # -> HealthEvent(kind="up", ...)

    **Status** is ``"unknown"`` until the first decision, then ``"up"`` or ``"down"``.

    **Rules** (Kubernetes' probe thresholds, Docker's start period):

    - ``failure_threshold`` *consecutive* counted failures decide ``"down"``: one ``"down"``
      event, however many failures follow. A success in between starts the count again.
    - ``success_threshold`` consecutive successes decide healthy: ``"up"`` the first time
      (from unknown), ``"recovered"`` when it was down, with the outage's duration. A failure
      in between starts the count again, so a flapping service (ok, fail, ok, fail...) never
      alerts while both thresholds are above 1.
    - Failures of checks started within ``start_period`` seconds of ``started_at`` do not
      count (a service is allowed to boot). The first success ends the start period early.
    - ``overrun()`` records that a check was still running at its next tick; it changes no
      count (the running check's own result will).

    ``record()`` returns the event it decided, or ``None``. ``events``, ``history`` (each
    :class:`CheckResult`, the last ``history_limit``), ``failures`` and ``successes`` (the
    current consecutive counts) show what it saw; ``add_listener(fn)`` calls ``fn(event)``
    on each event (an exception in a listener propagates to the caller of ``record``).
    """

    def __init__(self, name: str = "service", *, failure_threshold: int = 3,
                 success_threshold: int = 1, start_period: float = 0.0,
                 clock: Clock = time.monotonic, started_at: float | None = None,
                 listeners: Sequence[Listener] = (), history_limit: int = 1000):
        if not isinstance(name, str) or not name:
            raise ValueError(f"a service needs a non-empty name (str), not {name!r}")
        if not callable(clock):
            raise TypeError(f"clock must be a callable returning seconds, not {clock!r}")
        self.name = name
        self.failure_threshold = _check_threshold("failure_threshold", failure_threshold)
        self.success_threshold = _check_threshold("success_threshold", success_threshold)
        self.start_period = check_seconds("start_period", start_period, allow_none=False,
                                          allow_zero=True)
        self.clock = clock
        self.started_at = clock() if started_at is None else float(started_at)
        self.status = UNKNOWN
        self.failures = 0
        self.successes = 0
        self.down_since: float | None = None
        self.events: list[HealthEvent] = []
        self.history: deque[CheckResult] = deque(maxlen=history_limit)
        self._booted = False  # a success ends the start period early (Docker's rule)
        self._listeners: list[Listener] = list(listeners)

    def __repr__(self) -> str:
        return (f"<ServiceHealth {self.name!r} {self.status}, failures {self.failures}/"
                f"{self.failure_threshold}, successes {self.successes}/"
                f"{self.success_threshold}>")

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` with each :class:`HealthEvent` this service decides."""
        if not callable(listener):
            raise TypeError(f"a listener is a callable taking a HealthEvent, not {listener!r}")
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def in_start_period(self, at: float | None = None) -> bool:
        """True while failures (of checks started at ``at``, default now) are not counted."""
        at = self.clock() if at is None else at
        return not self._booted and at < self.started_at + self.start_period

    def record(self, ok: bool, reason: str = "", *, duration: float = 0.0) -> HealthEvent | None:
        """Take one check result that is known now (it started ``duration`` s ago)."""
        if not isinstance(ok, bool):
            raise TypeError(f"ok must be True or False, not {ok!r}")
        duration = check_seconds("duration", duration, allow_none=False, allow_zero=True)
        now = self.clock()
        started = now - duration
        reason = reason or ("ok" if ok else "failed")
        counted = ok or not self.in_start_period(started)
        self.history.append(CheckResult(started, ok, reason, duration, counted))
        if not counted:
            return None
        if ok:
            self._booted = True
            self.successes += 1
            self.failures = 0
            if self.status != UP and self.successes >= self.success_threshold:
                return self._decide_up(now)
            return None
        self.failures += 1
        self.successes = 0
        if self.status != DOWN and self.failures >= self.failure_threshold:
            self.status = DOWN
            self.down_since = now
            runs = _count(self.failures, "failure", "consecutive failures")
            return self._emit(HealthEvent(self.name, "down", now, f"{runs}; last: {reason}"))
        return None

    def _decide_up(self, now: float) -> HealthEvent:
        runs = _count(self.successes, "success", "consecutive successes")
        if self.status == DOWN:
            assert self.down_since is not None
            outage, self.down_since = now - self.down_since, None
            self.status = UP
            return self._emit(HealthEvent(self.name, "recovered", now, runs, outage))
        self.status = UP
        return self._emit(HealthEvent(self.name, "up", now, runs))

    def overrun(self, reason: str = "the previous check is still running") -> HealthEvent:
        """Record that a tick found the previous check still running (it was not restarted)."""
        return self._emit(HealthEvent(self.name, "overrun", self.clock(), reason))

    def _emit(self, event: HealthEvent) -> HealthEvent:
        self.events.append(event)
        for listener in list(self._listeners):
            listener(event)
        return event


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


@dataclass
class _Service:
    name: str
    cmd: list[Any]
    interval: float
    timeout: float
    grace: float
    cwd: Any
    env: Mapping[str, str] | None
    health: ServiceHealth
    running_since: float | None = None  # monitor time the running check started


class HealthMonitor:
    """Run each service's health check on a schedule, in the background, and decide.

    ``add(name, cmd, ...)`` one service per check command (a list of arguments; no shell),
    then ``async with monitor:`` runs every check until the block ends. Leaving the block
    (normally, on an exception or on cancellation) stops the schedule and ends every running
    check with its whole process group: nothing is left running.

    **Schedule:** a service's checks start at ``start + k * interval`` (k = 0, 1, 2, ...),
    where ``start`` is when the monitor started (or when the service was added to a running
    monitor). A slow check does not push the next ones later; a tick that finds its check
    still running does not start it twice but records an ``"overrun"`` event; a tick missed
    because the program itself was busy is skipped, keeping the grid.

    **Each check** runs with :func:`~asyncproc_kit.run` under ``timeout`` seconds: exit 0 is a
    success, anything else a failure whose reason is the exit status and the last line of
    stderr; a check that runs out of time is terminated with its group (SIGTERM, then SIGKILL
    after ``grace`` s) and is a failure with reason ``"timeout"``; a command that cannot
    start is a failure too (``"cannot start: ..."``), so a missing ``curl`` shows up as a
    down service instead of a crash.

    **Decisions** are :class:`ServiceHealth`'s (thresholds, start period, exactly-once
    events). Read them with ``status(name)``, ``events``, ``history(name)``, or
    ``services[name]``. Times are seconds since the monitor started.

    **Alerts:** ``add_listener(fn)`` (or ``listeners=``) calls ``fn(event)`` for each
    :class:`HealthEvent`. An ``async def`` listener runs as a background task of the monitor
    (so a slow webhook does not delay the checks, and it is cancelled when the block ends).
    A listener that raises does not stop the monitor: the error is logged and kept in
    ``listener_errors``.

    **Waiting:** inside the block, ``await monitor.wait_for("down", "web")`` returns the
    first such event (at once if it already happened); ``await monitor.wait_until(pred)``
    returns when ``pred()`` is true, re-checked after every result and event. Put your own
    deadline around them (``anyio.fail_after``).
    """

    def __init__(self, *, listeners: Iterable[Listener] = (), history_limit: int = 1000):
        self._services: dict[str, _Service] = {}
        self.events: list[HealthEvent] = []
        self.listener_errors: list[tuple[HealthEvent, Exception]] = []
        self._listeners: list[Listener] = []
        for listener in listeners:
            self.add_listener(listener)
        self.history_limit = _check_threshold("history_limit", history_limit,
                                              "results kept per service")
        self._origin: float | None = None
        self._stopped_at: float | None = None
        self._tg: anyio.abc.TaskGroup | None = None  # set while running (not stopping)
        self._changed: anyio.Event | None = None

    def __repr__(self) -> str:
        states = ", ".join(f"{s.name}={s.health.status}" for s in self._services.values())
        return f"<HealthMonitor {self._phase()}: {states or 'no services'}>"

    def _phase(self) -> str:
        if self._origin is None:
            return "not started"
        return "stopped" if self._stopped_at is not None else "running"

    # -- configuration -----------------------------------------------------------------------

    def add(self, name: str, cmd: Sequence[Any], *, interval: float = 10.0,
            timeout: float = 1.0, failure_threshold: int = 3, success_threshold: int = 1,
            start_period: float = 0.0, grace: float = DEFAULT_GRACE, cwd: Any = None,
            env: Mapping[str, str] | None = None) -> ServiceHealth:
        """Monitor ``name`` by running ``cmd`` every ``interval`` seconds; return its
        :class:`ServiceHealth`. Defaults are Kubernetes' (period 10 s, timeout 1 s, 3
        failures, 1 success). Added to a running monitor, its first check starts at once."""
        if self._stopped_at is not None:
            raise RuntimeError("this monitor has stopped; create a new HealthMonitor")
        if not isinstance(name, str) or not name:
            raise ValueError(f"a service needs a non-empty name (str), not {name!r}")
        if name in self._services:
            raise ValueError(f"a service named {name!r} is already monitored; pick another "
                             "name")
        try:
            args = check_command(cmd)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"service {name!r}: {exc}") from None
        interval = check_seconds("interval", interval, allow_none=False)
        timeout = check_seconds("timeout", timeout, allow_none=False)
        grace = check_seconds("grace", grace, allow_none=False, allow_zero=True)
        try:
            env = check_env(env)
        except TypeError as exc:
            raise TypeError(f"service {name!r}: {exc}") from None
        health = ServiceHealth(name, failure_threshold=failure_threshold,
                               success_threshold=success_threshold, start_period=start_period,
                               clock=self.now, history_limit=self.history_limit)
        health.add_listener(self._on_event)
        service = _Service(name, args, interval, timeout, grace, cwd, env, health)
        self._services[name] = service
        if self._tg is not None:
            self._tg.start_soon(self._schedule, service, self.now(),
                                name=f"health schedule {name}")
        return health

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` for every :class:`HealthEvent` (sync or ``async def``)."""
        if not callable(listener):
            raise TypeError(f"a listener is a callable taking a HealthEvent, not {listener!r}")
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    # -- reading ------------------------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the monitor started (0 before; frozen once it has stopped)."""
        if self._origin is None:
            return 0.0
        if self._stopped_at is not None:
            return self._stopped_at
        return anyio.current_time() - self._origin

    @property
    def services(self) -> Mapping[str, ServiceHealth]:
        """Each service's :class:`ServiceHealth`, by name (read-only)."""
        return MappingProxyType({n: s.health for n, s in self._services.items()})

    def _service(self, name: str) -> _Service:
        try:
            return self._services[name]
        except KeyError:
            known = ", ".join(repr(n) for n in self._services) or "none yet"
            raise KeyError(f"no service named {name!r} (monitored: {known})") from None

    def status(self, name: str) -> str:
        """``"unknown"`` until the first decision, then ``"up"`` or ``"down"``."""
        return self._service(name).health.status

    def history(self, name: str) -> list[CheckResult]:
        """Each check of ``name`` that finished, oldest first (the last ``history_limit``)."""
        return list(self._service(name).health.history)

    # -- waiting ------------------------------------------------------------------------------

    async def wait_until(self, predicate: Callable[[], object]) -> None:
        """Return once ``predicate()`` is true; it is re-checked after every check result and
        event. Only inside ``async with monitor:`` (nothing changes otherwise)."""
        while not predicate():
            if self._changed is None or self._stopped_at is not None:
                raise RuntimeError("the monitor is not running: nothing will change; wait "
                                   "inside `async with monitor:`")
            await self._changed.wait()

    async def wait_for(self, kind: str, name: str | None = None, *,
                       count: int = 1) -> HealthEvent:
        """The ``count``-th event of ``kind`` (for service ``name``, or any) since the start;
        waits for it if it has not happened yet."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(EVENT_KINDS)}, not {kind!r}")
        if name is not None:
            self._service(name)
        count = _check_threshold("count", count, "events")

        def matching() -> list[HealthEvent]:
            return [e for e in self.events
                    if e.kind == kind and (name is None or e.name == name)]

        await self.wait_until(lambda: len(matching()) >= count)
        return matching()[count - 1]

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = anyio.Event()

    # -- running ------------------------------------------------------------------------------

    async def __aenter__(self) -> HealthMonitor:
        if self._origin is not None:
            raise RuntimeError("a HealthMonitor runs once; create a new one to start again")
        self._origin = anyio.current_time()
        self._changed = anyio.Event()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        for service in self._services.values():
            tg.start_soon(self._schedule, service, 0.0, name=f"health schedule {service.name}")
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        tg, self._tg = self._tg, None
        assert tg is not None
        tg.cancel_scope.cancel()  # the schedule never ends by itself: stop it, end the checks
        try:
            return await tg.__aexit__(*exc_info)
        except BaseExceptionGroup as group:
            if exc_info[1] is not None and list(group.exceptions) == [exc_info[1]]:
                return False  # only the block's own exception: let it through, unwrapped
            raise
        finally:
            self._stopped_at = anyio.current_time() - self._origin  # type: ignore[operator]
            self._notify()

    async def _schedule(self, service: _Service, start: float) -> None:
        k = 0
        while True:
            due = self._origin + start + k * service.interval  # type: ignore[operator]
            await anyio.sleep_until(due)
            if self._tg is None:  # stopping: a wake-up that raced the cancellation
                return
            now = self.now()
            if service.running_since is not None:
                service.health.overrun(
                    f"the previous check is still running ({now - service.running_since:.2f} s "
                    "so far); not started twice")
            else:
                service.running_since = now
                self._tg.start_soon(self._check, service,  # type: ignore[union-attr]
                                    name=f"health check {service.name}")
            k = max(k + 1, math.floor((now - start) / service.interval) + 1)

    async def _check(self, service: _Service) -> None:
        started = service.running_since
        assert started is not None
        try:
            ok, reason = await _probe(service)
        finally:
            service.running_since = None
        service.health.record(ok, reason, duration=max(0.0, self.now() - started))
        self._notify()

    def _on_event(self, event: HealthEvent) -> None:
        self.events.append(event)
        self._notify()
        for listener in list(self._listeners):
            try:
                outcome = listener(event)
            except Exception as exc:
                self._listener_failed(event, exc)
                continue
            if inspect.isawaitable(outcome):
                if self._tg is None:
                    _close(outcome)
                else:
                    self._tg.start_soon(self._await_listener, event, outcome)

    async def _await_listener(self, event: HealthEvent, outcome: Any) -> None:
        try:
            await outcome
        except Exception as exc:
            self._listener_failed(event, exc)

    def _listener_failed(self, event: HealthEvent, exc: Exception) -> None:
        log.error("health listener failed on %s", event, exc_info=exc)
        self.listener_errors.append((event, exc))


def _close(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


async def _probe(service: _Service) -> tuple[bool, str]:
    """Run one check: ``(ok, reason)``. Never raises for the check's own failures."""
    try:
        result = await run(service.cmd, timeout=service.timeout, grace=service.grace,
                           check=False, cwd=service.cwd, env=service.env)
    except ProcessTimeout:
        return False, "timeout"
    except SpawnError as exc:
        return False, f"cannot start: {exc.reason}"
    if result.returncode == 0:
        return True, "exit 0"
    reason = describe_returncode(result.returncode)
    last = str(result.stderr).strip().splitlines()[-1:] if result.stderr else []
    if last:
        line = last[0].strip()
        reason += f": {line if len(line) <= 80 else line[:79] + '…'}"
    return False, reason


# -- the picture ------------------------------------------------------------------------------

STATUS_COLORS = {UNKNOWN: "0.75", UP: "#4c9a2a", DOWN: "#d62728"}


def plot_health(source: HealthMonitor | ServiceHealth | Iterable[ServiceHealth], *,
                ax: Axes | None = None, title: str | None = None,
                until: float | None = None) -> Figure:
    """Draw each service's status over time: one row per service, top to bottom.

    ``plot_health(monitor)`` (or one :class:`ServiceHealth`, or several) returns a
    :class:`~asyncproc_kit.plots.PlotFigure` that a notebook shows as a PNG; ``ax=`` draws
    into your axes instead. Needs matplotlib (the ``notebooks`` extra).

    **Output:** the x axis is time on the services' clock (a monitor's: seconds since it
    started). Each row is a band coloured by status (grey unknown, green up, red down) that
    changes where a decision was taken. The marks are the checks, drawn when their result
    came in: ● passed, ✕ failed, ◇ failed but not counted (start period), ✕ in orange with a
    line back to its start for a timeout; | above the band is an overrun tick. ``until``
    ends the picture (default: the clock's current time).
    """
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    from ..plots import PlotFigure

    if isinstance(source, HealthMonitor):
        services = list(source.services.values())
    elif isinstance(source, ServiceHealth):
        services = [source]
    else:
        services = list(source)
    for item in services:
        if not isinstance(item, ServiceHealth):
            raise TypeError(f"plot_health() draws a HealthMonitor or ServiceHealth objects, "
                            f"not {type(item).__name__}")
    if ax is None:
        fig: Figure = PlotFigure(figsize=(8, 1.2 + 0.7 * max(1, len(services))),
                                 layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure  # type: ignore[assignment]
    end = until
    if end is None:
        end = max((s.clock() for s in services), default=0.0)
    end = max([end, *(r.ended for s in services for r in s.history),
               *(e.time for s in services for e in s.events)])
    origin = min((s.started_at for s in services), default=0.0)
    handles: dict[str, object] = {}
    for row, service in enumerate(services):
        _draw_service(ax, row, service, end, handles)
    ax.set_yticks(range(len(services)), [s.name for s in services])
    ax.set_ylim(len(services) - 0.5 if services else 0.5, -0.5)
    ax.set_xlim(origin, max(end + (end - origin) * 0.02, origin + 0.01))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10]))
    ax.set_xlabel("seconds since monitoring started")
    ax.grid(axis="x", color="0.9", zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title is None:
        counts = {k: sum(1 for s in services for e in s.events if e.kind == k)
                  for k in EVENT_KINDS}
        title = (f"{len(services)} services: {counts['down']} down, {counts['recovered']} "
                 f"recovered, {counts['overrun']} overruns")
    ax.set_title(title, fontsize=11)
    drawn = {state for s in services for state in _status_spans(s, end)[1]}
    legend = [Patch(color=STATUS_COLORS[state], alpha=0.35, label=label)
              for state, label in ((UNKNOWN, "status unknown"), (UP, "up"), (DOWN, "down"))
              if state in drawn]
    legend += [handles[key] for key in ("ok", "failed", "not counted", "timeout", "overrun")
               if key in handles]
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8,
              frameon=False, borderaxespad=0)
    return fig


def _status_spans(service: ServiceHealth, end: float) -> tuple[list[float], list[str]]:
    times, states = [service.started_at], [UNKNOWN]
    for event in service.events:
        new = {"up": UP, "recovered": UP, "down": DOWN}.get(event.kind)
        if new is not None and new != states[-1]:
            times.append(event.time)
            states.append(new)
    times.append(max(end, times[-1]))
    return times, states


def _draw_service(ax: Axes, row: int, service: ServiceHealth, end: float,
                  handles: dict[str, object]) -> None:
    from matplotlib.lines import Line2D

    times, states = _status_spans(service, end)
    for start, stop, state in zip(times, times[1:], states, strict=False):
        ax.barh(row, stop - start, left=start, height=0.6, color=STATUS_COLORS[state],
                alpha=0.35, linewidth=0, zorder=1)
    styles = {  # key -> marker, colour, face, label
        "ok": ("o", "#2e6b14", "#2e6b14", "check passed"),
        "failed": ("X", "#a51d1d", "#a51d1d", "check failed"),
        "not counted": ("D", "#a51d1d", "none", "failed, not counted (start period)"),
        "timeout": ("X", "#ff7f0e", "#ff7f0e", "check timed out (line: how long)"),
    }
    for result in service.history:
        key = ("ok" if result.ok else "not counted" if not result.counted
               else "timeout" if result.reason == "timeout" else "failed")
        marker, color, face, label = styles[key]
        if key == "timeout":
            ax.plot([result.time, result.ended], [row, row], color=color, linewidth=1.5,
                    zorder=2)
        ax.plot(result.ended, row, marker=marker, markersize=6, color=color,
                markerfacecolor=face, linestyle="", zorder=3)
        handles.setdefault(key, Line2D([], [], marker=marker, color=color, linestyle="",
                                       markerfacecolor=face, label=label))
    overruns = [e.time for e in service.events if e.kind == "overrun"]
    if overruns:
        ax.plot(overruns, [row - 0.38] * len(overruns), marker="|", markersize=9,
                color="0.2", linestyle="", zorder=3)
        handles.setdefault("overrun", Line2D([], [], marker="|", color="0.2", linestyle="",
                                             label="tick skipped (overrun)"))
