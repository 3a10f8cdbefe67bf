"""watch_loop sees a blocked event loop on both backends; the kit logs its process events."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time

import anyio
import anyio.lowlevel
import pytest

from asyncproc_kit import ProcessFailed, ProcessTimeout, Timeline, run, terminate
from asyncproc_kit.diagnostics import LoopBlocked, watch_loop
from asyncproc_kit.testing import EXIT, SLEEP, python

pytestmark = pytest.mark.anyio

BLOCK = 0.4  # far above the 0.05 s threshold, so a loaded machine cannot blur the verdict
# Where nothing may be reported: a threshold still well below BLOCK, but above the stalls a
# loaded machine causes by itself (a process descheduled, a slow fork).
QUIET = 0.2
METHODS = ["auto", "heartbeat"]


@pytest.mark.parametrize("method", METHODS)
async def test_a_blocking_sleep_is_reported(method: str) -> None:
    """time.sleep in async code is one stretch of about its length."""
    async with watch_loop(method=method) as watch:  # the default threshold, 0.05 s
        time.sleep(BLOCK)
    long = [b for b in watch.blocked if b.seconds >= QUIET]  # a loaded machine adds short ones
    assert len(long) == 1
    (stretch,) = long
    assert isinstance(stretch, LoopBlocked)
    assert BLOCK - 0.02 <= stretch.seconds < BLOCK + 2  # the heartbeat is short by < 1 tick
    assert watch.longest == stretch.seconds
    assert all(b.seconds >= 0.05 for b in watch.blocked)
    assert "event loop blocked for" in str(stretch)


async def test_the_hook_names_the_blocking_task() -> None:
    """With the backend's hook, the stretch names the task that held the loop."""
    async def culprit() -> None:
        time.sleep(BLOCK)

    async with watch_loop(QUIET) as watch:
        async with anyio.create_task_group() as tg:
            tg.start_soon(culprit, name="the-culprit")
    assert watch.method in ("trio instrument", "asyncio debug mode")
    assert [b.task for b in watch.blocked] == ["the-culprit"]
    assert watch.blocked[0].seconds >= BLOCK


async def test_a_blocking_subprocess_run_is_reported() -> None:
    """subprocess.run blocks the loop just like time.sleep."""
    async with watch_loop(QUIET) as watch:
        subprocess.run(SLEEP(BLOCK), check=True)
    assert len(watch.blocked) == 1
    assert watch.blocked[0].seconds >= BLOCK


@pytest.mark.parametrize("method", METHODS)
async def test_offloading_to_a_thread_reports_nothing(method: str) -> None:
    """The same call in a worker thread leaves the loop free."""
    async with watch_loop(QUIET, method=method) as watch:
        await anyio.to_thread.run_sync(time.sleep, BLOCK)
    assert watch.blocked == []


@pytest.mark.parametrize("method", METHODS)
async def test_awaiting_reports_nothing(method: str) -> None:
    """anyio.sleep and awaiting a child process never block the loop."""
    async with watch_loop(QUIET, method=method) as watch:
        await anyio.sleep(BLOCK)
        await run(SLEEP(BLOCK))
    assert watch.blocked == []


async def test_every_stretch_is_reported_in_order() -> None:
    """Two blocking calls with an await between them are two stretches."""
    async with watch_loop(QUIET) as watch:
        time.sleep(BLOCK)
        await anyio.sleep(0.01)
        time.sleep(BLOCK)
    assert len(watch.blocked) == 2
    assert watch.blocked[0].at < watch.blocked[1].at


async def test_the_threshold_decides_what_counts() -> None:
    """A stretch shorter than the threshold is not reported; a longer one is."""
    async with watch_loop(threshold=5) as watch:
        time.sleep(BLOCK)
    assert watch.blocked == []
    async with watch_loop(threshold=QUIET) as watch:
        time.sleep(BLOCK)
    assert len(watch.blocked) == 1


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "0.05", True])
async def test_a_bad_threshold_is_rejected(bad: object) -> None:
    """The error names the argument and what it must be."""
    with pytest.raises((TypeError, ValueError), match="threshold must be"):
        async with watch_loop(threshold=bad):  # type: ignore[arg-type]
            pass


async def test_a_bad_method_is_rejected() -> None:
    with pytest.raises(ValueError, match="method must be 'auto', 'hook' or 'heartbeat'"):
        async with watch_loop(method="psychic"):  # type: ignore[arg-type]
            pass


@pytest.mark.parametrize("method", METHODS)
async def test_the_blocks_error_comes_out_unwrapped(method: str) -> None:
    """An exception inside the watch propagates as itself, not in an ExceptionGroup."""
    with pytest.raises(KeyError, match="inside"):
        async with watch_loop(method=method):
            raise KeyError("inside")


async def test_asyncio_debug_mode_is_restored_and_its_records_stay_out(
        anyio_backend: str, caplog: pytest.LogCaptureFixture) -> None:
    """The watch turns debug mode on only while it runs and keeps its records to itself."""
    if anyio_backend != "asyncio":
        pytest.skip("asyncio's debug mode")
    loop = asyncio.get_running_loop()
    before = (loop.get_debug(), loop.slow_callback_duration)
    with caplog.at_level(logging.DEBUG):
        async with watch_loop(QUIET) as watch:
            assert loop.get_debug()
            time.sleep(BLOCK)
        time.sleep(0.15)  # after the watch: a slow step that debug mode must not time
        await anyio.lowlevel.checkpoint()
    assert (loop.get_debug(), loop.slow_callback_duration) == before
    assert len(watch.blocked) == 1
    assert not [r for r in caplog.records if r.name == "asyncio"]


async def test_trio_instrument_is_removed(anyio_backend: str) -> None:
    """After the watch, no instrument of ours is left in the trio run."""
    if anyio_backend != "trio":
        pytest.skip("trio's instrument API")
    async with watch_loop(QUIET) as watch:
        pass
    async with watch_loop(QUIET) as second:
        time.sleep(BLOCK)
    assert watch.blocked == []
    assert len(second.blocked) == 1


async def test_cancellation_inside_the_watch_leaves_it_clean() -> None:
    """A cancelled block ends the watch without an error of its own."""
    with anyio.move_on_after(0.1):
        async with watch_loop(QUIET) as watch:
            await anyio.sleep(10)
    assert watch.blocked == []
    async with watch_loop(QUIET) as again:
        time.sleep(BLOCK)
    assert len(again.blocked) == 1


# -- process events on the "asyncproc_kit" logger ------------------------------------------

def kit_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "asyncproc_kit"]


async def test_start_and_reap_are_logged_with_attributes(
        caplog: pytest.LogCaptureFixture) -> None:
    """One record at start (command, pid), one at reap (pid, returncode, duration)."""
    command = EXIT(3)
    with caplog.at_level(logging.DEBUG, logger="asyncproc_kit"):
        with pytest.raises(ProcessFailed):
            await run(command)
    start, end = kit_records(caplog)
    assert (start.levelno, end.levelno) == (logging.DEBUG, logging.DEBUG)
    assert start.command == command  # type: ignore[attr-defined]
    assert start.pid == end.pid  # type: ignore[attr-defined]
    assert f"as pid {start.pid}" in start.getMessage()  # type: ignore[attr-defined]
    assert end.returncode == 3  # type: ignore[attr-defined]
    assert 0 < end.duration < 30  # type: ignore[attr-defined]
    assert end.command == command  # type: ignore[attr-defined]
    assert "exit code 3" in end.getMessage()


async def test_signals_sent_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A timeout's SIGTERM is a record with the signal's name; routine sweeps are not."""
    with caplog.at_level(logging.DEBUG, logger="asyncproc_kit"):
        with pytest.raises(ProcessTimeout):
            await run(SLEEP(30), timeout=0.2)
    records = kit_records(caplog)
    sent = [r for r in records if hasattr(r, "signal")]
    assert [r.signal for r in sent] == ["SIGTERM"]  # type: ignore[attr-defined]
    assert "sent SIGTERM to pid" in sent[0].getMessage()
    assert records[-1].returncode == -15  # type: ignore[attr-defined]
    assert len(records) == 3


async def test_terminate_logs_the_escalation(caplog: pytest.LogCaptureFixture) -> None:
    """terminate() of a streaming child: SIGTERM then the reap, in that order."""
    from asyncproc_kit import open_stream

    with caplog.at_level(logging.DEBUG, logger="asyncproc_kit"):
        async with open_stream(python("import time; print('up', flush=True); time.sleep(30)")
                               ) as stream:
            async for _line in stream:
                break
            await terminate(stream, grace=5)
    kinds = ["signal" if hasattr(r, "signal") else "reap" if hasattr(r, "returncode")
             else "start" for r in kit_records(caplog)]
    assert kinds == ["start", "signal", "reap"]


async def test_silent_by_default(caplog: pytest.LogCaptureFixture) -> None:
    """Without logging configured, the kit's logger emits nothing at its default level."""
    logger = logging.getLogger("asyncproc_kit")
    assert logger.handlers == []
    assert not logger.isEnabledFor(logging.DEBUG)
    await run(SLEEP(0))
    assert kit_records(caplog) == []


def test_silent_in_a_fresh_interpreter() -> None:
    """A program that never configures logging prints nothing on stderr."""
    code = ("import anyio; from asyncproc_kit import run; from asyncproc_kit.testing import "
            "EXIT; anyio.run(run, EXIT(0))")
    done = subprocess.run(python(code), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


# -- metrics from a Timeline ----------------------------------------------------------------

async def test_timeline_metrics_count_failures_durations_and_bytes() -> None:
    """Failures, p50/p95 and bytes out come from real runs."""
    tl = Timeline()
    for _ in range(3):
        await run(python("print('x' * 9)"), timeline=tl)
    with pytest.raises(ProcessFailed):
        await run(EXIT(2, "bad"), timeline=tl)
    s = tl.summary()
    assert (s.processes, s.failures) == (4, 1)
    assert s.bytes_out == 3 * 10 + len("bad")  # print adds a newline; EXIT does not
    assert s.p50 is not None
    assert s.p95 is not None
    assert 0 < s.p50 <= s.p95
    text = s.metrics()
    assert "processes: 4 (1 failed, 3 ok)" in text
    assert "failures:  1" in text
    assert "33 out" in text


async def test_watches_can_overlap_in_any_order() -> None:
    """Two watches, the first ending first: each sees what happened while it watched."""
    first = watch_loop(QUIET)
    outer = await first.__aenter__()
    async with watch_loop(QUIET) as inner:
        time.sleep(BLOCK)
        await first.__aexit__(None, None, None)
        time.sleep(BLOCK)
    assert len(outer.blocked) == 1
    assert len(inner.blocked) == 2


async def test_method_hook_insists_on_the_hook() -> None:
    """method='hook' uses the backend's hook, and says so."""
    async with watch_loop(QUIET, method="hook") as watch:
        time.sleep(BLOCK)
    assert watch.method in ("trio instrument", "asyncio debug mode")
    assert len(watch.blocked) == 1


async def test_a_silenced_asyncio_logger_falls_back_to_the_heartbeat(anyio_backend: str) -> None:
    """With the 'asyncio' logger above WARNING, debug mode cannot report: the heartbeat does."""
    if anyio_backend != "asyncio":
        pytest.skip("asyncio's debug mode")
    logger = logging.getLogger("asyncio")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        async with watch_loop(QUIET) as watch:
            time.sleep(BLOCK)
        with pytest.raises(RuntimeError, match="use method='heartbeat'"):
            async with watch_loop(method="hook"):
                pass
    finally:
        logger.setLevel(level)
    assert watch.method == "heartbeat"
    assert len(watch.blocked) == 1
