"""Timeline: spans per process, marks, and the summary plots and explorers print."""

from __future__ import annotations

import anyio
import pytest
from helpers import FakeClock

from asyncproc_kit import ProcessFailed, ProcessTimeout, Timeline, run
from asyncproc_kit.testing import EXIT, SLEEP, python

pytestmark = pytest.mark.anyio


def finished(tl: Timeline, label: str, start: float, end: float, outcome: str = "ok"):
    span = tl.add(["prog", label], label)
    span.started, span.ended, span.outcome = start, end, outcome
    return span


def test_times_are_seconds_since_the_origin() -> None:
    """now() counts from creation; add(queued=True) stamps the queue time."""
    clock = FakeClock(50.0)
    tl = Timeline(clock)
    clock.now += 1.25
    assert tl.now() == 1.25
    span = tl.add(["sleep", "1"], queued=True)
    assert span.label == "['sleep', '1']"  # format_command: the list form
    assert span.queued == 1.25
    assert span.waited is None
    span.started = 2.0
    assert span.waited == 0.75


def test_mark_records_moments_not_tied_to_a_process() -> None:
    """mark() defaults to now, accepts an explicit time, and keeps insertion order."""
    clock = FakeClock(50.0)
    tl = Timeline(clock)
    clock.now += 0.5
    assert tl.mark("limit raised") == 0.5
    assert tl.mark("retry", at=0.2) == 0.2
    assert tl.marks == [(0.5, "limit raised"), (0.2, "retry")]
    assert tl.spans == []


def test_peak_concurrency_and_makespan() -> None:
    """Touching spans (one ends as the next starts) do not overlap."""
    tl = Timeline(FakeClock(50.0))
    finished(tl, "a", 0.0, 1.0)
    finished(tl, "b", 1.0, 2.0)
    finished(tl, "c", 0.5, 1.5)
    assert tl.peak_concurrency() == 2
    assert tl.makespan == 2.0
    assert len(tl) == 3
    assert repr(tl) == "<Timeline: 3 processes, peak concurrency 2>"


def test_summary_counts_outcomes_and_totals() -> None:
    """busy is the sum of durations; average concurrency = busy / makespan."""
    tl = Timeline(FakeClock(50.0))
    for i in range(4):
        finished(tl, f"ok{i}", 0.0, 1.0)
    finished(tl, "bad", 0.0, 0.5, "failed")
    tl.add(["missing"]).outcome = "spawn-error"
    tl.add(["waiting"], queued=True)
    running = tl.add(["running"])
    running.started = 0.2
    s = tl.summary()
    assert s.processes == 8
    assert s.outcomes == {"ok": 4, "failed": 1, "spawn-error": 1, "not started": 1,
                          "running": 1}
    assert s.busy == 4.5
    assert s.makespan == 1.0
    assert s.peak_concurrency == 6
    assert s.average_concurrency == 4.5
    assert str(s) == ("8 processes (1 failed, 1 not started, 4 ok, 1 running, "
                      "1 spawn-error): 1.00 s from first start to last end, 4.50 s busy "
                      "in total, peak concurrency 6")


def test_empty_summary() -> None:
    """An empty timeline summarises without dividing by zero."""
    s = Timeline().summary()
    assert (s.processes, s.busy, s.makespan, s.average_concurrency) == (0, 0, 0.0, 0.0)
    assert str(s).startswith("0 processes (none)")


async def test_run_records_concurrent_processes() -> None:
    """Two sleeps run together: both spans overlap and the summary shows it."""
    tl = Timeline()
    async with anyio.create_task_group() as tg:
        for name in ("first", "second"):
            tg.start_soon(lambda n=name: run(SLEEP(0.3), timeline=tl, label=n))
    assert sorted(s.label for s in tl.spans) == ["first", "second"]
    for span in tl.spans:
        assert span.outcome == "ok"
        assert span.returncode == 0
        assert span.pid is not None
        assert span.duration is not None
        assert span.duration >= 0.3
    s = tl.summary()
    assert s.peak_concurrency == 2
    assert s.busy >= 0.6
    assert s.average_concurrency > 1.3


async def test_run_records_every_outcome_and_signal() -> None:
    """ok, failed, timeout (with its SIGTERM), and first output are all recorded."""
    tl = Timeline()
    await run(python("print('hi')"), timeline=tl, label="talks")
    with pytest.raises(ProcessFailed):
        await run(EXIT(3), timeline=tl, label="fails")
    with pytest.raises(ProcessTimeout):
        await run(SLEEP(30), timeout=0.2, timeline=tl, label="slow")
    talks, fails, slow = tl.spans
    assert talks.first_output is not None
    # first output is when the kit *read* it: under load that can be just after the reap
    assert talks.started <= talks.first_output
    assert (fails.outcome, fails.returncode) == ("failed", 3)
    assert slow.outcome == "timeout"
    assert [name for _, name in slow.events][:1] == ["SIGTERM"]
    assert tl.summary().outcomes == {"ok": 1, "failed": 1, "timeout": 1}
