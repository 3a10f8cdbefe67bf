"""Timing async code, because ``%time`` and ``%timeit`` cannot ``await``.

Either wrap a block::

    async with stopwatch() as sw:
        await run(["sleep", "0.2"])
    sw.elapsed                          # ~0.2 (seconds, float)

or time one awaitable and keep its result::

    result, seconds = await timed(run(["sleep", "0.2"]))
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, NamedTuple, TypeVar

T = TypeVar("T")


class Stopwatch:
    """Measures the wall-clock seconds spent inside a ``with`` or ``async with`` block.

    Make one with :func:`stopwatch`. ``elapsed`` reads the time so far while the block is
    running and the final time after it; ``None`` before it starts. The clock is
    ``time.perf_counter``: real time that includes every await, whichever event loop (asyncio
    or trio) runs the block, or none.

    **Errors:** an exception (or cancellation) inside the block still stops the watch, so
    ``elapsed`` says how long the block ran before it failed.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self.started: float | None = None
        self.ended: float | None = None

    @property
    def elapsed(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended if self.ended is not None else self._clock()) - self.started

    def start(self) -> Stopwatch:
        if self.started is not None:
            raise RuntimeError("this stopwatch has already been started; make a new one")
        self.started = self._clock()
        return self

    def stop(self) -> float:
        if self.started is None:
            raise RuntimeError("this stopwatch was never started; use it in a with block")
        if self.ended is None:
            self.ended = self._clock()
        return self.ended - self.started

    def __enter__(self) -> Stopwatch:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Stopwatch:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        elapsed = self.elapsed
        if elapsed is None:
            return "<Stopwatch: not started>"
        state = "running" if self.ended is None else "stopped"
        return f"<Stopwatch: {state}, {elapsed:.3f} s>"


def stopwatch(*, clock: Callable[[], float] = time.perf_counter) -> Stopwatch:
    """A new :class:`Stopwatch`: ``async with stopwatch() as sw: ...`` then ``sw.elapsed``.

    Plain ``with`` works too (the watch does not need an event loop). ``clock`` is any
    function returning seconds; pass a fake one to test code that reports timings.
    """
    return Stopwatch(clock)


class Timing(NamedTuple, Generic[T]):
    """What :func:`timed` returns: the awaitable's ``value`` and the ``seconds`` it took."""

    value: T
    seconds: float


async def timed(awaitable: Awaitable[T], *,
                clock: Callable[[], float] = time.perf_counter) -> Timing[T]:
    """Await ``awaitable`` and return ``(value, seconds)``: the async twin of ``%time``.

    ``result, seconds = await timed(run(["sleep", "0.2"]))``. Pass the coroutine itself
    (``run(...)``, not ``await run(...)``); it runs exactly once.

    **Errors:** an exception from the awaitable propagates unchanged (no timing is returned;
    use :func:`stopwatch` if you need the time of a failure).

    **Cancellation:** propagates unchanged, like any await.
    """
    if not isinstance(awaitable, Awaitable):
        raise TypeError(f"timed() needs an awaitable such as run([...]), not "
                        f"{type(awaitable).__name__}: pass the call without 'await'")
    with Stopwatch(clock) as sw:
        value: Any = await awaitable
    return Timing(value, sw.elapsed)  # type: ignore[arg-type]
