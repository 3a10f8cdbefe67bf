"""Best practices you can see: catch the moments your event loop could not run.

An event loop runs one task at a time; between two ``await`` points a task holds it. A
blocking call in async code (``time.sleep``, ``subprocess.run``, a big computation) freezes
every other task, timer and child-process reader for as long as it lasts. :func:`watch_loop`
makes that visible::

    from asyncproc_kit.diagnostics import watch_loop

    async with watch_loop(threshold=0.05) as watch:
        time.sleep(0.2)                     # blocks the loop
    watch.blocked                           # [LoopBlocked(seconds=0.2..., task='...')]

    async with watch_loop() as watch:
        await anyio.to_thread.run_sync(time.sleep, 0.2)   # the fix: a worker thread
    watch.blocked                           # []

**How it measures.** Each backend has a public hook that times every stretch a task (or
callback) held the loop, and says which one it was:

* **trio**: an *instrument* (``trio.lowlevel.add_instrument``) sees ``before_task_step`` and
  ``after_task_step`` for every task, so each step is timed exactly and named.
* **asyncio**: *debug mode* (``loop.set_debug(True)``) times every callback and task step and
  logs those over ``loop.slow_callback_duration`` to the ``"asyncio"`` logger; the watch sets
  that duration to ``threshold``, collects those records and keeps them out of your logs
  (unless debug mode was already on: then they are yours and pass through).

Where neither hook is available (an asyncio loop that is not a standard one, such as uvloop,
or an ``"asyncio"`` logger silenced below WARNING), a **heartbeat** task does the job on any
backend: it sleeps a few milliseconds at a time and notices when it wakes up late. It knows
how long the loop was stuck, not who held it (``task`` is ``None``). Ask for it explicitly
with ``method="heartbeat"``.

The watch changes nothing about what your code does; it only observes, and it restores the
loop's settings when the block ends.

**What it costs** (``python -m benchmarks diagnostics``): trio's instrument and the heartbeat
are cheap. asyncio's debug mode is not: it records a stack for every callback scheduled,
so code that switches tasks very often runs many times slower while watched (spawning
processes, a few times slower). Watch the region you are investigating, in a test or a
notebook, not a whole service; ``method="heartbeat"`` is the light option there.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

import anyio
import anyio.lowlevel

from ._command import check_seconds

__all__ = ["LoopBlocked", "LoopWatch", "watch_loop"]

Method = Literal["auto", "hook", "heartbeat"]


@dataclass(frozen=True)
class LoopBlocked:
    """One stretch during which the event loop could not run anything else.

    ``seconds`` is how long it lasted; ``task`` names the task (or callback) that held the
    loop, or is ``None`` when the method cannot tell (the heartbeat); ``at`` is when the
    stretch ended, in seconds since the watch began. The hooks time a stretch exactly; the
    heartbeat's figure is a lower bound, short by at most one tick (10 ms).
    """

    seconds: float
    task: str | None = None
    at: float = 0.0

    def __str__(self) -> str:
        where = f" in {self.task}" if self.task else ""
        return f"event loop blocked for {self.seconds:.2f} s{where}"


@dataclass
class LoopWatch:
    """What :func:`watch_loop` yields: the settings and, as they happen, the stretches found."""

    threshold: float
    method: str  # "trio instrument", "asyncio debug mode" or "heartbeat"
    blocked: list[LoopBlocked] = field(default_factory=list)

    @property
    def longest(self) -> float:
        """The longest stretch found so far in seconds (0.0 if none)."""
        return max((b.seconds for b in self.blocked), default=0.0)


@asynccontextmanager
async def watch_loop(threshold: float = 0.05, *,
                     method: Method = "auto") -> AsyncIterator[LoopWatch]:
    """Report every stretch of at least ``threshold`` seconds the event loop could not run.

    Use it around code you suspect: ``async with watch_loop() as watch: ...``, then read
    ``watch.blocked`` (a list of :class:`LoopBlocked`, in the order they ended).

    **Method:** ``"auto"`` (default) uses the backend's own hook (trio's instrument API,
    asyncio's debug mode), which times each stretch exactly and names the task; it falls back
    to the heartbeat where no hook is available. ``"hook"`` insists on the hook
    (``RuntimeError`` if there is none), ``"heartbeat"`` uses the heartbeat on any backend.

    **Threshold:** 0.05 s by default: far above a healthy task step (microseconds), below
    what a person notices. Stretches shorter than it are not reported.

    The stretch that ends when the block is left is included: leaving the block yields to
    the loop once, so a blocking call on its last line is still caught.
    """
    threshold = check_seconds("threshold", threshold, allow_none=False)
    if method not in ("auto", "hook", "heartbeat"):
        raise ValueError(f"method must be 'auto', 'hook' or 'heartbeat', not {method!r}")
    hook = None if method == "heartbeat" else _hook_for_this_loop()
    if hook is None and method == "hook":
        raise RuntimeError("this event loop offers no hook to time its task steps (asyncio "
                           "debug mode needs a standard asyncio loop and the 'asyncio' logger "
                           "enabled for WARNING); use method='heartbeat'")
    origin = time.monotonic()
    watch = LoopWatch(threshold, hook.name if hook else "heartbeat")

    def found(seconds: float, task: str | None) -> None:
        if seconds >= threshold:
            watch.blocked.append(LoopBlocked(seconds, task, time.monotonic() - origin))

    if hook is not None:
        hook.start(threshold, found)
        try:
            await anyio.lowlevel.checkpoint()  # the current step began before the hook
            yield watch
            await anyio.lowlevel.checkpoint()  # end the block's last step, so it is timed
        finally:
            await hook.stop()
        return
    beat = _Heartbeat(threshold, found)
    raised: BaseException | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(beat.run)
            try:
                yield watch
                await anyio.lowlevel.checkpoint()
                beat.check()
            except BaseException as exc:
                raised = exc
                raise
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if raised is not None and group.exceptions == (raised,):
            raise raised from None  # the block's own error, not wrapped in a group
        raise


class _Heartbeat:
    """Sleeps ``tick`` seconds at a time; a wake-up later than due means the loop was stuck."""

    def __init__(self, threshold: float, found) -> None:
        self.tick = min(0.01, threshold / 4)
        self.found = found
        self.last = time.monotonic()

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.tick)
            self.check()

    def check(self) -> None:
        now = time.monotonic()
        late = now - self.last - self.tick
        self.last = now
        if late > 0:
            self.found(late, None)


def _hook_for_this_loop():
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:  # trio is imported but this is not a trio run
            pass
        else:
            return _TrioHook()
    loop = asyncio.get_running_loop()
    if isinstance(loop, asyncio.BaseEventLoop) and _ASYNCIO_LOG.isEnabledFor(logging.WARNING):
        return _AsyncioHook(loop)
    return None


class _TrioHook:
    name = "trio instrument"

    def start(self, threshold: float, found) -> None:
        import trio

        hook = self

        class StepTimer(trio.abc.Instrument):
            def before_task_step(self, task: trio.lowlevel.Task) -> None:
                hook.began = time.perf_counter()

            def after_task_step(self, task: trio.lowlevel.Task) -> None:
                if hook.began is not None:
                    found(time.perf_counter() - hook.began, task.name)
                    hook.began = None

        self.began: float | None = None
        self.instrument = StepTimer()
        trio.lowlevel.add_instrument(self.instrument)

    async def stop(self) -> None:
        import trio

        try:
            trio.lowlevel.remove_instrument(self.instrument)
        except KeyError:  # trio removes an instrument that raised; nothing to undo
            pass


_ASYNCIO_LOG = logging.getLogger("asyncio")
_TASK_NAME = re.compile(r"^<Task \w+ name='((?:[^'\\]|\\.)*)'")


class _AsyncioHook:
    """Debug mode's slow-callback records, caught by a filter on the ``"asyncio"`` logger.

    The record's arguments are the handle, already formatted (a task's repr for a task
    step), and the seconds it took, as documented for debug mode. Watches on one loop share
    a :class:`_LoopState`, so they can nest or overlap in any order.
    """

    name = "asyncio debug mode"

    def __init__(self, loop) -> None:
        self.loop = loop

    def start(self, threshold: float, found) -> None:
        self.threshold = threshold
        self.found = found
        state = _loops.get(self.loop)
        if state is None:
            state = _loops[self.loop] = _LoopState(self.loop)
            if len(_loops) == 1:
                _ASYNCIO_LOG.addFilter(_catch_slow_callbacks)
        state.hooks.append(self)
        state.apply()

    async def stop(self) -> None:
        state = _loops[self.loop]
        state.hooks.remove(self)
        if state.hooks:
            state.apply()
            return
        # The step running now began in debug mode and is timed when it ends: end it (a
        # moment's work) before the filter goes, or its record would reach the app's logs.
        self.loop.set_debug(state.was_debug)
        try:
            await anyio.lowlevel.cancel_shielded_checkpoint()
        finally:
            if not state.hooks:  # no watch began meanwhile
                self.loop.slow_callback_duration = state.was_duration
                del _loops[self.loop]
                if not _loops:
                    _ASYNCIO_LOG.removeFilter(_catch_slow_callbacks)


class _LoopState:
    """What the watches on one asyncio loop share: the settings to restore, who listens."""

    def __init__(self, loop) -> None:
        self.was_debug = loop.get_debug()
        self.was_duration = loop.slow_callback_duration
        self.loop = loop
        self.hooks: list[_AsyncioHook] = []

    def apply(self) -> None:
        """Debug mode on, reporting what the most demanding watch (or the app) asks for."""
        limits = [hook.threshold for hook in self.hooks]
        if self.was_debug:
            limits.append(self.was_duration)
        self.loop.slow_callback_duration = min(limits)
        self.loop.set_debug(True)


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = \
    weakref.WeakKeyDictionary()


def _catch_slow_callbacks(record: logging.LogRecord) -> bool:
    args = record.args
    if not (isinstance(record.msg, str) and record.msg.startswith("Executing ")
            and isinstance(args, tuple) and len(args) == 2 and isinstance(args[1], float)):
        return True
    try:
        state = _loops.get(asyncio.get_running_loop())
    except RuntimeError:  # logged outside a running loop: not ours
        return True
    if state is None:
        return True
    handle = str(args[0])
    match = _TASK_NAME.match(handle)
    for hook in list(state.hooks):
        hook.found(args[1], match.group(1) if match else handle)
    return state.was_debug  # debug mode was ours: keep its records out of the app's logs
