"""map_limited(): bounded concurrency, results in input order, every failure kept."""

from __future__ import annotations

import io
import time

import anyio
import pytest
from helpers import (  # noqa: F401
    interrupted,
    live_kit_children,
    members_at_least,
    nothing_left_behind,
    open_fds,
    zombie_children,
)

from asyncproc_kit import (
    ProcessError,
    ProcessFailed,
    ProcessResult,
    ProcessTimeout,
    Progress,
    SpawnError,
    Timeline,
    default_workers,
    map_limited,
)
from asyncproc_kit.testing import EXIT, PRINT_LINES, SLEEP, session_members

pytestmark = pytest.mark.anyio


def exit_with(code: int) -> list[str]:
    return ["sh", "-c", f"exit {code}"]


# -- results ----------------------------------------------------------------------------------


async def test_results_come_back_in_input_order_whatever_finishes_first() -> None:
    """The slowest command is first in the input and first in the results."""
    commands = [SLEEP(0.4), PRINT_LINES(1, prefix="b"), PRINT_LINES(1, prefix="c")]
    results = await map_limited(commands, limit=3)
    assert [r.stdout for r in results] == ["", "b 0\n", "c 0\n"]
    assert all(isinstance(r, ProcessResult) for r in results)
    assert results[0].ended > results[1].ended


async def test_every_failure_is_kept_next_to_the_successes() -> None:
    """Non-zero exit, a missing program and a timeout each fill their own slot."""
    commands = [EXIT(0), EXIT(3, "boom"), ["no-such-program-xyz"], SLEEP(30), EXIT(0)]
    begun = time.monotonic()
    results = await map_limited(commands, limit=5, timeout=1.0, grace=0.5)
    assert time.monotonic() - begun < 10
    ok, failed, missing, slow, ok2 = results
    assert isinstance(ok, ProcessResult)
    assert ok.returncode == 0
    assert isinstance(failed, ProcessFailed)
    assert failed.returncode == 3
    assert failed.stderr == "boom"
    assert isinstance(missing, SpawnError)
    assert "no-such-program-xyz" in str(missing)
    assert isinstance(slow, ProcessTimeout)
    assert isinstance(ok2, ProcessResult)


async def test_check_false_gives_results_for_non_zero_exits() -> None:
    """With check=False a non-zero exit is a result, not an error."""
    results = await map_limited([EXIT(0), EXIT(2)], limit=2, check=False)
    assert [r.returncode for r in results] == [0, 2]


async def test_input_and_options_apply_to_every_command() -> None:
    """input= is written to each command's stdin."""
    cat = ["sh", "-c", "cat; echo"]
    results = await map_limited([cat, cat], limit=2, input="hi")
    assert [r.stdout for r in results] == ["hi\n", "hi\n"]


async def test_an_empty_batch_returns_an_empty_list() -> None:
    """No commands, no workers, no results."""
    assert await map_limited([], limit=3) == []


# -- the limit --------------------------------------------------------------------------------


async def test_limit_is_never_exceeded_and_is_reached() -> None:
    """Six 0.3 s sleeps with limit 2 run in three waves of two."""
    timeline = Timeline()
    await map_limited([SLEEP(0.3)] * 6, limit=2, timeline=timeline)
    assert timeline.peak_concurrency() == 2
    assert len(timeline.spans) == 6
    assert timeline.makespan >= 0.85  # three waves of 0.3 s at least


async def test_spans_are_queued_at_the_call_and_labelled() -> None:
    """Each span has queued <= started <= ended and the label it was given."""
    timeline = Timeline()
    await map_limited([SLEEP(0.1)] * 3, limit=1, timeline=timeline, labels=["a", "b", "c"])
    spans = timeline.spans
    assert [s.label for s in spans] == ["a", "b", "c"]
    for span in spans:
        assert span.queued is not None
        assert span.started is not None
        assert span.ended is not None
        assert span.queued <= span.started <= span.ended
    assert spans[2].waited > spans[0].waited


async def test_default_limit_comes_from_a_small_number(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without limit=, at most default_workers() run at once (the env var overrides it)."""
    monkeypatch.setenv("ASYNCPROC_KIT_WORKERS", "3")
    assert default_workers() == 3
    timeline = Timeline()
    await map_limited([SLEEP(0.3)] * 6, timeline=timeline)
    assert timeline.peak_concurrency() == 3


def test_default_workers_is_small_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    """min(4, CPUs) by default; a bad environment value is named in the error."""
    monkeypatch.delenv("ASYNCPROC_KIT_WORKERS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 64)  # a Binder node reports all its cores
    assert default_workers() == 4
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert default_workers() == 1
    monkeypatch.setenv("ASYNCPROC_KIT_WORKERS", "many")
    with pytest.raises(ValueError, match="ASYNCPROC_KIT_WORKERS='many'"):
        default_workers()
    monkeypatch.setenv("ASYNCPROC_KIT_WORKERS", "0")
    with pytest.raises(ValueError, match="at least 1"):
        default_workers()


# -- as they complete -------------------------------------------------------------------------


async def test_as_completed_yields_in_finishing_order() -> None:
    """Outcomes arrive fastest first, each with its input index."""
    commands = [SLEEP(0.6), SLEEP(0.05), SLEEP(0.3)]
    seen = []
    async with map_limited(commands, limit=3, as_completed=True) as finished:
        async for index, outcome in finished:
            assert isinstance(outcome, ProcessResult)
            seen.append(index)
    assert seen == [1, 2, 0]


async def test_as_completed_delivers_errors_too() -> None:
    """A failing command is delivered as its exception, the others as results."""
    outcomes = {}
    async with map_limited([EXIT(0), EXIT(5)], limit=2, as_completed=True) as finished:
        async for index, outcome in finished:
            outcomes[index] = outcome
    assert isinstance(outcomes[0], ProcessResult)
    assert isinstance(outcomes[1], ProcessFailed)
    assert outcomes[1].returncode == 5


async def test_leaving_as_completed_early_ends_the_rest() -> None:
    """Breaking out of the loop terminates the children still running; none survives."""
    timeline = Timeline()
    commands = [SLEEP(0.05)] + [SLEEP(60)] * 3
    async with map_limited(commands, limit=4, as_completed=True, timeline=timeline) as finished:
        async for index, _ in finished:
            assert index == 0
            break
    pids = [s.pid for s in timeline.spans if s.pid is not None]
    assert len(pids) == 4
    assert session_members(pids) == []
    assert [s.outcome for s in timeline.spans[1:]] == ["cancelled"] * 3


async def test_an_error_in_the_as_completed_loop_propagates_unwrapped() -> None:
    """The caller's exception comes out as itself; the running children are ended."""
    timeline = Timeline()

    async def consume() -> None:
        async with map_limited([SLEEP(0.05), SLEEP(60)], limit=2, as_completed=True,
                               timeline=timeline) as finished:
            async for _ in finished:
                raise KeyError("stop")

    with pytest.raises(KeyError, match="stop"):
        await consume()
    assert session_members([s.pid for s in timeline.spans]) == []  # type: ignore[misc]
    assert timeline.spans[1].outcome == "cancelled"


async def test_as_completed_must_be_used_with_async_with() -> None:
    """Awaiting an as_completed batch, or `async with` a plain one, is a TypeError."""
    with pytest.raises(TypeError, match="async with"):
        await map_limited([EXIT(0)], as_completed=True)
    with pytest.raises(TypeError, match="as_completed=True"):
        async with map_limited([EXIT(0)]):
            pass


# -- cancellation -----------------------------------------------------------------------------


async def test_cancelling_the_caller_terminates_every_running_child() -> None:
    """move_on_after around the batch ends all running children and their groups."""
    timeline = Timeline()
    with anyio.move_on_after(1.0):
        await map_limited([SLEEP(60)] * 5, limit=3, timeline=timeline)
    pids = [s.pid for s in timeline.spans if s.pid is not None]
    assert len(pids) == 3  # the other two never started
    assert session_members(pids) == []
    assert sum(s.started is None for s in timeline.spans) == 2


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, -1])
async def test_a_limit_below_one_is_refused(limit: int) -> None:
    """limit=0 could never run anything: ValueError naming the value."""
    with pytest.raises(ValueError, match=f"limit must be at least 1, not {limit}"):
        await map_limited([EXIT(0)], limit=limit)


@pytest.mark.parametrize("limit", [1.5, "4", True])
async def test_a_limit_that_is_not_an_int_is_refused(limit: object) -> None:
    """The limit is a whole number of processes."""
    with pytest.raises(TypeError, match="limit must be a whole number"):
        await map_limited([EXIT(0)], limit=limit)  # type: ignore[arg-type]


async def test_bad_commands_are_refused_before_anything_starts() -> None:
    """A string command (or a string instead of a list of commands) raises TypeError."""
    with pytest.raises(TypeError, match="not a string"):
        await map_limited([EXIT(0), "echo hi"], limit=2)
    with pytest.raises(TypeError, match="not a string"):
        await map_limited("echo hi", limit=2)
    with pytest.raises(ValueError, match="labels has 1 names for 2 commands"):
        await map_limited([EXIT(0), EXIT(0)], labels=["one"])


async def test_progress_counts_done_failed_and_running() -> None:
    """A Progress passed in ends with the right counts and the batch as its total."""
    progress = Progress(bar=False)
    await map_limited([EXIT(0), EXIT(1), ["no-such-program-xyz"], EXIT(0)], limit=2,
                      progress=progress)
    assert (progress.done, progress.failed, progress.running, progress.total) == (2, 2, 0, 4)
    assert str(progress) == "processes: 2 done, 2 failed, 0 running (of 4)"


# -- reliability ------------------------------------------------------------------------------


async def test_a_thousand_processes_with_limit_fifty() -> None:
    """1,000 x `sh -c "exit i % 3"`, limit 50: peak exactly 50, every exit code in order,
    no zombie, no live child, the same open descriptors, well under 10 s."""
    await map_limited([exit_with(0)], limit=1)  # warm up anything created lazily
    fds_before = open_fds()
    timeline = Timeline()
    begun = time.monotonic()
    results = await map_limited([exit_with(i % 3) for i in range(1000)], limit=50,
                                timeline=timeline)
    elapsed = time.monotonic() - begun
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert timeline.peak_concurrency() == 50
    assert len(results) == 1000
    codes = [r.returncode for r in results]
    assert codes == [i % 3 for i in range(1000)]
    for i, outcome in enumerate(results):
        expected = ProcessResult if i % 3 == 0 else ProcessFailed
        assert type(outcome) is expected
    assert not any(isinstance(r, ProcessError) and not isinstance(r, ProcessFailed)
                   for r in results)
    assert zombie_children() == []
    assert live_kit_children() == []
    pids = [s.pid for s in timeline.spans]
    assert None not in pids
    assert session_members(pids) == []
    assert open_fds() == fds_before


async def test_progress_bar_in_a_terminal_shows_the_counts() -> None:
    """With file=, a text bar is drawn; its last state carries done, failed and running."""
    stream = io.StringIO()
    with Progress(description="batch", file=stream) as progress:
        await map_limited([EXIT(0), EXIT(0), EXIT(2)], limit=2, progress=progress)
    final = stream.getvalue().split("\r")[-1]
    assert final.startswith("batch: 100%")
    assert "3/3" in final
    assert "done=2 failed=1 running=0" in final


def test_progress_refuses_a_bad_total() -> None:
    """A negative or fractional total is a ValueError; progress= must be a bool or Progress."""
    with pytest.raises(ValueError, match="total"):
        Progress(-1)
    with pytest.raises(TypeError, match="progress must be"):
        map_limited([EXIT(0)], progress="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_during_map_limited_is_a_plain_keyboard_interrupt(backend) -> None:
    """Ctrl-C while awaiting map_limited is KeyboardInterrupt on both
    backends; children are ended."""
    code, out, children = interrupted("""
        await map_limited([SLEEP(60), SLEEP(60)], limit=2)
    """, backend)
    assert (code, out) == (130, "KeyboardInterrupt")
    assert session_members(children) == []


@pytest.mark.parametrize(
    ("options", "error", "fact"),
    [({"cwd": 5}, TypeError, "cwd must be a path"),
     ({"cwd": "/tmp\0x"}, ValueError, "cwd contains a NUL"),
     ({"env": {"A": "x\0y"}}, ValueError, r"env\['A'\] contains a NUL"),
     ({"encoding": "utf9"}, LookupError, "unknown encoding"),
     ({"grace": float("inf")}, ValueError, "grace must be finite")],
)
async def test_bad_options_raise_at_the_call_not_from_the_workers(options, error, fact) -> None:
    """A bad cwd, env, encoding or grace raises its own TypeError/ValueError/LookupError at
    the call, as documented, not an ExceptionGroup once workers run."""
    with pytest.raises(error, match=fact):
        map_limited([SLEEP(0), SLEEP(0)], limit=2, **options)
