"""CircuitBreaker: closed -> open -> half-open with one probe, on a fake clock, no sleeping."""

from __future__ import annotations

import time

import anyio
import anyio.lowlevel
import pytest
from helpers import FakeClock, nothing_left_behind  # noqa: F401

from asyncproc_kit import (
    BreakerRegistry,
    CircuitBreaker,
    CircuitOpenError,
    ProcessFailed,
    Timeline,
    run,
)
from asyncproc_kit._breaker import ProbeRunning, StateChange
from asyncproc_kit.testing import EXIT

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def succeed() -> str:
    return "ok"


async def fail() -> None:
    raise RuntimeError("down")


async def fail_n(breaker: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(RuntimeError):
            await breaker.call(fail)


async def test_opens_after_n_consecutive_failures_and_rejects_fast_without_spawning(
        clock: FakeClock, spawns: list[list[str]]) -> None:
    """N failing commands open it; then calls are refused in < 1 ms and spawn nothing."""
    breaker = CircuitBreaker("flaky", failure_threshold=3, reset_timeout=30, clock=clock)
    for _ in range(3):
        assert breaker.state == "closed"
        with pytest.raises(ProcessFailed):
            await breaker.call(run, EXIT(1))
    assert breaker.state == "open"
    assert len(spawns) == 3
    clock.advance(10)
    took = []
    for _ in range(101):
        begun = time.perf_counter()
        with pytest.raises(CircuitOpenError) as caught:
            await breaker.call(run, EXIT(0))
        took.append(time.perf_counter() - begun)
    # The median, so that one preemption on a busy machine does not decide the test.
    assert sorted(took)[50] < 0.001
    assert len(spawns) == 3
    assert caught.value.retry_after == pytest.approx(20.0)
    assert caught.value.retry_at == pytest.approx(130.0)
    assert "will let one probe through in 20.00 s" in str(caught.value)


async def test_a_success_resets_the_consecutive_failure_count(clock: FakeClock) -> None:
    """Failures must be consecutive: a success in between starts the count again."""
    breaker = CircuitBreaker(failure_threshold=3, clock=clock)
    await fail_n(breaker, 2)
    assert await breaker.call(succeed) == "ok"
    assert breaker.failures == 0
    await fail_n(breaker, 2)
    assert breaker.state == "closed"
    await fail_n(breaker, 1)
    assert breaker.state == "open"


async def test_half_open_after_reset_timeout_and_probe_success_closes(clock: FakeClock) -> None:
    """After reset_timeout one probe goes through; its success closes the circuit."""
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=30, clock=clock)
    await fail_n(breaker, 1)
    clock.advance(29.999)
    assert breaker.state == "open"
    clock.advance(0.001)
    assert breaker.state == "half-open"
    assert await breaker.call(succeed) == "ok"
    assert breaker.state == "closed"
    assert breaker.failures == 0


async def test_probe_failure_opens_again_for_another_reset_timeout(clock: FakeClock) -> None:
    """A failed probe reopens the circuit, and the wait starts again from that failure."""
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=10, clock=clock)
    await fail_n(breaker, 2)
    clock.advance(15)
    await fail_n(breaker, 1)  # the probe
    assert breaker.state == "open"
    clock.advance(9)
    with pytest.raises(CircuitOpenError) as caught:
        await breaker.call(succeed)
    assert caught.value.retry_after == pytest.approx(1.0)
    clock.advance(1)
    assert await breaker.call(succeed) == "ok"
    assert breaker.state == "closed"


async def test_half_open_lets_exactly_one_probe_through_among_50_callers(
        clock: FakeClock) -> None:
    """50 concurrent callers in half-open: exactly one runs, 49 are refused at once."""
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5, clock=clock)
    await fail_n(breaker, 1)
    clock.advance(5)
    release = anyio.Event()
    ran = 0
    refused: list[CircuitOpenError] = []

    async def probe() -> None:
        nonlocal ran
        ran += 1
        await release.wait()

    async def caller() -> None:
        try:
            await breaker.call(probe)
        except CircuitOpenError as exc:
            refused.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(caller)
        with anyio.fail_after(5):
            while len(refused) < 49:
                await anyio.lowlevel.checkpoint()
        assert ran == 1
        assert breaker.state == "half-open"
        release.set()
    assert ran == 1
    assert len(refused) == 49
    assert all(isinstance(e, ProbeRunning) and e.retry_after == 0 for e in refused)
    assert "probe is still running" in str(refused[0])
    assert breaker.state == "closed"


async def test_cancellation_leaves_the_failure_count_unchanged(clock: FakeClock) -> None:
    """A cancelled call is not a failure: the count stays, the circuit stays closed."""
    breaker = CircuitBreaker(failure_threshold=2, clock=clock)
    await fail_n(breaker, 1)
    for _ in range(5):
        with anyio.move_on_after(0) as scope:
            await breaker.call(anyio.sleep_forever)
        assert scope.cancelled_caught
    assert breaker.failures == 1
    assert breaker.state == "closed"
    assert [o for _, o in breaker.calls] == ["failure"] + ["cancelled"] * 5


async def test_cancelled_probe_frees_the_slot_for_the_next_caller(clock: FakeClock) -> None:
    """A cancelled probe decides nothing: still half-open, and the next caller probes."""
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=1, clock=clock)
    await fail_n(breaker, 1)
    clock.advance(1)
    with anyio.move_on_after(0):
        await breaker.call(anyio.sleep_forever)
    assert breaker.state == "half-open"
    assert breaker.failures == 1
    assert await breaker.call(succeed) == "ok"
    assert breaker.state == "closed"


async def test_async_with_guard_and_is_failure(clock: FakeClock) -> None:
    """`async with breaker:` guards a block; is_failure decides what counts as a failure."""
    breaker = CircuitBreaker(failure_threshold=1, clock=clock,
                             is_failure=lambda exc: not isinstance(exc, KeyError))
    with pytest.raises(KeyError):
        async with breaker:
            raise KeyError("not the service's fault")
    assert breaker.state == "closed"
    with pytest.raises(RuntimeError):
        async with breaker:
            raise RuntimeError("down")
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError):
        async with breaker:
            pytest.fail("the block must not run while the circuit is open")


async def test_a_slow_call_from_before_the_open_does_not_close_it(clock: FakeClock) -> None:
    """Only the probe can close an open circuit: a straggler's late success changes nothing."""
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=60, clock=clock)
    release = anyio.Event()

    async def slow() -> None:
        await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(breaker.call, slow)
        await anyio.wait_all_tasks_blocked()  # the slow call is inside the breaker
        await fail_n(breaker, 1)
        assert breaker.state == "open"
        release.set()
    assert breaker.calls[-1][1] == "success"  # it finished fine...
    assert breaker.state == "open"  # ...and changed nothing


async def test_listeners_history_and_timeline_marks(clock: FakeClock) -> None:
    """Every transition reaches the listeners, the history and the timeline, with a reason."""
    changes: list[StateChange] = []
    timeline = Timeline()
    breaker = CircuitBreaker("db", failure_threshold=1, reset_timeout=10, clock=clock,
                             listeners=[changes.append], timeline=timeline)
    await fail_n(breaker, 1)
    clock.advance(10)
    await breaker.call(succeed)
    assert [(c.old, c.new, c.at) for c in changes] == [
        ("closed", "open", 100.0), ("open", "half-open", 110.0), ("half-open", "closed", 110.0)]
    assert [c.reason for c in changes] == [
        "1 consecutive failures", "reset_timeout=10 s passed", "the probe succeeded"]
    assert list(breaker.history) == changes
    assert [name for _, name in timeline.marks] == ["db: open", "db: half-open", "db: closed"]
    assert str(changes[0]) == "t=100.0 s 'db': closed -> open (1 consecutive failures)"


async def test_reset_and_trip_by_hand(clock: FakeClock) -> None:
    """trip() opens at once; reset() closes and forgets the failures."""
    breaker = CircuitBreaker(clock=clock)
    breaker.trip()
    assert breaker.state == "open"
    breaker.reset()
    assert (breaker.state, breaker.failures) == ("closed", 0)


async def test_registry_gives_one_breaker_per_program(clock: FakeClock) -> None:
    """BreakerRegistry: the same program shares a breaker; another program has its own."""
    breakers = BreakerRegistry(failure_threshold=1, clock=clock)
    a = breakers.for_command(["/usr/bin/rsync", "-a", "x", "y"])
    assert a is breakers.for_command(["rsync", "z"])
    assert a.name == "rsync"
    assert breakers["db-1"] is not a
    with pytest.raises(ProcessFailed):
        await breakers.for_command(EXIT(1)).call(run, EXIT(1))
    assert breakers.for_command(EXIT(1)).state == "open"
    assert a.state == "closed"
    assert len(breakers) == 3


async def test_bad_settings_are_refused() -> None:
    """A threshold below 1, a negative timeout or a non-callable clock is refused."""
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError, match="reset_timeout"):
        CircuitBreaker(reset_timeout=-1)
    with pytest.raises(TypeError, match="clock"):
        CircuitBreaker(clock=5)  # type: ignore[arg-type]


async def test_plot_breaker_draws_states_and_calls(clock: FakeClock, tmp_path) -> None:
    """plot_breaker: one step line over the three states, markers per call, a PNG that saves."""
    from asyncproc_kit._breaker_plot import plot_breaker

    breaker = CircuitBreaker("flaky", failure_threshold=2, reset_timeout=5, clock=clock)
    await fail_n(breaker, 2)
    clock.advance(1)
    with pytest.raises(CircuitOpenError):
        await breaker.call(succeed)
    clock.advance(5)
    await breaker.call(succeed)
    clock.advance(2)
    fig = plot_breaker(breaker)
    assert fig._repr_png_().startswith(b"\x89PNG")  # a notebook shows it by itself
    [ax] = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["closed", "half-open", "open"]
    assert ax.get_title() == "breaker 'flaky': 3 state changes; calls: 1 ok, 2 failed, 1 refused"
    [step] = [line for line in ax.get_lines() if line.get_drawstyle() == "steps-post"]
    assert list(step.get_ydata()) == [0, 2, 1, 0, 0]
    assert list(step.get_xdata()) == [0.0, 0.0, 5.0, 6.0, 8.0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["call succeeded", "call failed", "refused (not started)", "closed",
                      "half-open", "open"]
    fig.savefig(tmp_path / "breaker.png")
    assert (tmp_path / "breaker.png").stat().st_size > 10_000


async def test_a_raising_is_failure_counts_as_a_failure_and_frees_the_probe(
        clock: FakeClock) -> None:
    """is_failure that raises during the probe (``e.returncode`` of a SpawnError) counts as
    a failure, its own exception reaches the caller, and the probe slot is free again: the
    breaker opens, and after reset_timeout the next caller probes (no ProbeRunning forever)."""
    from asyncproc_kit import SpawnError

    breaker = CircuitBreaker("picky", failure_threshold=1, reset_timeout=10, clock=clock,
                             is_failure=lambda e: e.returncode != 0)
    breaker.trip()
    clock.advance(10)
    assert breaker.state == "half-open"
    with pytest.raises(AttributeError) as caught:
        await breaker.call(run, ["/nonexistent/program"])
    assert isinstance(caught.value.__context__, SpawnError)
    assert breaker.state == "open"
    assert breaker.calls[-1][1] == "failure"
    clock.advance(10_000)
    assert await breaker.call(succeed) == "ok"
    assert breaker.state == "closed"
    # in the closed state too, the predicate's error propagates and the call counts
    with pytest.raises(AttributeError):
        await breaker.call(run, ["/nonexistent/program"])
    assert breaker.state == "open"


async def test_plot_breaker_puts_every_probe_on_the_half_open_row(clock: FakeClock) -> None:
    """A probe that fails and one that succeeds both sit on "half-open", even when the
    hand-moved clock gives half-open no time at all; that instant is drawn, not lost."""
    from asyncproc_kit._breaker_plot import STATE_COLORS, plot_breaker

    breaker = CircuitBreaker("probes", failure_threshold=2, reset_timeout=5, clock=clock)
    await fail_n(breaker, 2)
    clock.advance(5)
    await fail_n(breaker, 1)  # the probe fails: open again, at once
    clock.advance(5)
    await breaker.call(succeed)  # the probe succeeds: closed, at once
    clock.advance(2)
    [ax] = plot_breaker(breaker).axes
    markers = {line.get_marker(): list(line.get_ydata()) for line in ax.get_lines()
               if line.get_linestyle() == "None"}
    assert markers["X"] == [0, 0, 1]  # two failures while closed, then the failed probe
    assert markers["o"] == [1]  # the successful probe
    instants = [line for line in ax.get_lines() if line.get_color() == STATE_COLORS["half-open"]]
    assert len(instants) == 2  # each zero-length half-open is a visible line
