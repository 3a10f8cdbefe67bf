"""stopwatch() and timed(): timing async code, which %time cannot do."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from helpers import FakeClock

from asyncproc_kit import ProcessFailed, Stopwatch, run, stopwatch, timed
from asyncproc_kit.testing import EXIT, SLEEP

pytestmark = pytest.mark.anyio


async def test_stopwatch_measures_an_awaited_sleep() -> None:
    """The block's wall-clock time includes every await, on either backend."""
    async with stopwatch() as sw:
        await anyio.sleep(0.1)
    assert sw.elapsed is not None
    assert 0.09 <= sw.elapsed < 2.0


async def test_stopwatch_with_a_fake_clock_is_exact() -> None:
    """elapsed reads so-far while running and freezes when the block ends."""
    clock = FakeClock(100.0)
    sw = stopwatch(clock=clock)
    assert sw.elapsed is None
    assert repr(sw) == "<Stopwatch: not started>"
    async with sw:
        clock.now += 1.5
        assert sw.elapsed == 1.5
        assert repr(sw) == "<Stopwatch: running, 1.500 s>"
        clock.now += 0.5
    clock.now += 10
    assert sw.elapsed == 2.0
    assert repr(sw) == "<Stopwatch: stopped, 2.000 s>"


def test_stopwatch_works_without_an_event_loop() -> None:
    """Plain `with` needs no loop at all."""
    clock = FakeClock(100.0)
    with stopwatch(clock=clock) as sw:
        clock.now += 0.25
    assert isinstance(sw, Stopwatch)
    assert sw.elapsed == 0.25


async def test_stopwatch_stops_when_the_block_raises() -> None:
    """A failure still records how long the block ran, and propagates unchanged."""
    clock = FakeClock(100.0)
    sw = stopwatch(clock=clock)

    async def fail_after_a_while() -> None:
        async with sw:
            clock.now += 0.75
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await fail_after_a_while()
    clock.now += 5
    assert sw.elapsed == 0.75


async def test_stopwatch_stops_on_cancellation() -> None:
    """A cancelled block is timed up to the cancellation."""
    with anyio.move_on_after(0.1):
        async with stopwatch() as sw:
            await anyio.sleep(30)
    assert sw.ended is not None
    assert sw.elapsed is not None
    assert 0.05 <= sw.elapsed < 5.0


def test_a_stopwatch_runs_once() -> None:
    """Reusing a stopwatch is a mistake that says what to do instead."""
    sw = stopwatch()
    with pytest.raises(RuntimeError, match="never started"):
        sw.stop()
    with sw:
        pass
    with pytest.raises(RuntimeError, match="already been started; make a new one"), sw:
        pass


async def test_timed_returns_the_value_and_the_seconds() -> None:
    """timed(run(...)) gives the ProcessResult and how long it took."""
    result, seconds = await timed(run(SLEEP(0.1)))
    assert result.returncode == 0
    assert 0.1 <= seconds < 5.0
    assert seconds >= result.duration - 0.01


async def test_timed_with_a_fake_clock() -> None:
    """The seconds are the clock's difference across the await."""
    clock = FakeClock(100.0)

    async def work() -> str:
        clock.now += 3.0
        await anyio.lowlevel.checkpoint()
        return "done"

    timing = await timed(work(), clock=clock)
    assert timing.value == "done"
    assert timing.seconds == 3.0


async def test_timed_propagates_errors() -> None:
    """An exception from the awaitable comes out unchanged."""
    with pytest.raises(ProcessFailed):
        await timed(run(EXIT(4)))


async def test_timed_rejects_an_already_awaited_result() -> None:
    """Passing `await run(...)` instead of `run(...)` gets a hint."""
    result = await run(SLEEP(0))
    with pytest.raises(TypeError, match="without 'await'"):
        await timed(result)  # type: ignore[arg-type]
