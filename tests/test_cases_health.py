"""cases.health: the state machine on a fake clock; the monitor with real children."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import anyio
import anyio.lowlevel
import psutil
import pytest
from helpers import FakeClock, eventually, nothing_left_behind  # noqa: F401

from asyncproc_kit.cases.health import (
    CheckResult,
    HealthEvent,
    HealthMonitor,
    ServiceHealth,
    plot_health,
)
from asyncproc_kit.plots import to_png
from asyncproc_kit.testing import EXIT, SLEEP, python


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=0.0)


def kinds(events: list[HealthEvent]) -> list[str]:
    return [e.kind for e in events]


def decisions(events: list[HealthEvent]) -> list[str]:
    """The kinds of the events that decide a status (a loaded machine may add overruns)."""
    return [e.kind for e in events if e.kind != "overrun"]


def feed(health: ServiceHealth, clock: FakeClock, outcomes: str, step: float = 10.0) -> None:
    """One check per character ("+" passes, "-" fails), ``step`` seconds apart."""
    for outcome in outcomes:
        clock.advance(step)
        health.record(outcome == "+", "exit 0" if outcome == "+" else "exit code 1")


# -- the state machine: plain code, a fake clock, no sleeping ---------------------------------


def test_unknown_until_success_threshold_then_up_exactly_once(clock: FakeClock) -> None:
    """Status stays unknown until success_threshold successes in a row; one "up" event."""
    web = ServiceHealth("web", success_threshold=3, clock=clock)
    feed(web, clock, "++")
    assert web.status == "unknown"
    assert web.events == []
    feed(web, clock, "+")
    assert web.status == "up"
    assert web.events == [HealthEvent("web", "up", 30.0, "3 consecutive successes")]
    feed(web, clock, "+" * 20)
    assert kinds(web.events) == ["up"]


def test_down_exactly_once_however_many_failures_follow(clock: FakeClock) -> None:
    """failure_threshold failures in a row decide down once; the next 50 failures say nothing."""
    db = ServiceHealth("db", failure_threshold=3, clock=clock)
    feed(db, clock, "+--")
    assert db.status == "up"
    assert db.failures == 2
    feed(db, clock, "-")
    assert db.status == "down"
    assert db.events[-1] == HealthEvent("db", "down", 40.0,
                                        "3 consecutive failures; last: exit code 1")
    feed(db, clock, "-" * 50)
    assert kinds(db.events) == ["up", "down"]


def test_recovered_once_with_the_outage_from_down_to_recovered(clock: FakeClock) -> None:
    """Recovery needs success_threshold successes in a row; outage = recovered - down."""
    api = ServiceHealth("api", failure_threshold=2, success_threshold=2, clock=clock)
    feed(api, clock, "++")          # up at 20
    feed(api, clock, "--")          # down at 40
    feed(api, clock, "+-+", step=5)  # a failure in between restarts the success count
    assert api.status == "down"
    feed(api, clock, "+", step=5)   # 2 in a row at 60: recovered
    assert api.status == "up"
    recovered = api.events[-1]
    assert (recovered.kind, recovered.time, recovered.outage) == ("recovered", 60.0, 20.0)
    feed(api, clock, "+" * 5)
    feed(api, clock, "--", step=1)   # down at 112
    feed(api, clock, "++", step=3)   # recovered at 118
    assert kinds(api.events) == ["up", "down", "recovered", "down", "recovered"]
    assert [e.outage for e in api.events] == [None, None, 20.0, None, 6.0]
    assert api.down_since is None


def test_failing_from_the_start_goes_down_then_recovers_without_an_up(clock: FakeClock) -> None:
    """unknown -> down -> recovered: "up" is only the first decision from unknown."""
    s = ServiceHealth("s", failure_threshold=2, clock=clock)
    feed(s, clock, "--+")
    assert kinds(s.events) == ["down", "recovered"]
    assert s.events[-1].outage == 10.0


@pytest.mark.parametrize("thresholds", [(2, 2), (3, 2), (2, 5)])
def test_flapping_never_alerts_below_threshold(clock: FakeClock,
                                               thresholds: tuple[int, int]) -> None:
    """ok, fail, ok, fail... for 200 checks: no event at all while both thresholds are > 1."""
    failure, success = thresholds
    s = ServiceHealth("flappy", failure_threshold=failure, success_threshold=success,
                      clock=clock)
    feed(s, clock, "+-" * 100)
    assert s.events == []
    assert s.status == "unknown"
    assert len(s.history) == 200


def test_flapping_after_up_stays_up(clock: FakeClock) -> None:
    """Once up, single failures between successes never reach failure_threshold=2."""
    s = ServiceHealth("flappy", failure_threshold=2, clock=clock)
    feed(s, clock, "+" + "-+" * 50)
    assert kinds(s.events) == ["up"]
    assert s.status == "up"


def test_failures_inside_start_period_do_not_count(clock: FakeClock) -> None:
    """Checks started within start_period of the start fail without counting (kept in history)."""
    s = ServiceHealth("slow", failure_threshold=2, start_period=30, clock=clock)
    feed(s, clock, "---")            # at 10, 20 (counted False), 30: counted
    assert [r.counted for r in s.history] == [False, False, True]
    assert s.status == "unknown"
    assert s.failures == 1
    feed(s, clock, "-")
    assert kinds(s.events) == ["down"]
    assert s.events[0].time == 40.0


def test_a_check_that_started_inside_start_period_is_judged_by_its_start(
        clock: FakeClock) -> None:
    """A check started at 25 s that fails at 35 s (start_period=30) is not counted."""
    s = ServiceHealth("slow", failure_threshold=1, start_period=30, clock=clock)
    clock.advance(35)
    s.record(False, "timeout", duration=10)
    assert s.history[-1] == CheckResult(25.0, False, "timeout", 10.0, counted=False)
    assert s.status == "unknown"


def test_the_first_success_ends_the_start_period(clock: FakeClock) -> None:
    """Docker's rule: once a check passed, failures count even inside start_period."""
    s = ServiceHealth("boot", failure_threshold=2, start_period=100, clock=clock)
    feed(s, clock, "-+--")
    assert [r.counted for r in s.history] == [False, True, True, True]
    assert kinds(s.events) == ["up", "down"]
    assert not s.in_start_period()


def test_overrun_is_an_event_that_changes_no_count(clock: FakeClock) -> None:
    """overrun() records an event; the counts and the status stay as they were."""
    s = ServiceHealth("s", failure_threshold=2, clock=clock)
    feed(s, clock, "-")
    event = s.overrun()
    assert (event.kind, event.time, s.failures, s.status) == ("overrun", 10.0, 1, "unknown")
    feed(s, clock, "-")
    assert kinds(s.events) == ["overrun", "down"]


def test_listeners_get_each_event_and_their_errors_reach_the_caller(clock: FakeClock) -> None:
    """add_listener(fn): fn(event) on every event; a broken listener raises from record()."""
    seen: list[str] = []
    s = ServiceHealth("s", failure_threshold=1, clock=clock,
                      listeners=[lambda e: seen.append(e.kind)])
    feed(s, clock, "+-+")
    assert seen == ["up", "down", "recovered"]

    def broken(event: HealthEvent) -> None:
        raise RuntimeError("pager is down")

    s.add_listener(broken)
    with pytest.raises(RuntimeError, match="pager is down"):
        feed(s, clock, "-")
    with pytest.raises(TypeError, match="callable"):
        s.add_listener("print")  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "error", "words"), [
    ({"failure_threshold": 0}, ValueError, "failure_threshold must be a whole number >= 1"),
    ({"success_threshold": True}, ValueError, "success_threshold"),
    ({"failure_threshold": 2.5}, ValueError, "not 2.5"),
    ({"start_period": -1}, ValueError, "start_period must be zero or more"),
    ({"start_period": "10"}, TypeError, "start_period must be a number"),
    ({"clock": 5}, TypeError, "clock must be a callable"),
    ({"name": ""}, ValueError, "non-empty name"),
])
def test_state_machine_rejects_bad_settings(kwargs: dict, error: type, words: str) -> None:
    """Each bad setting gets one clear fact naming it."""
    with pytest.raises(error, match=words):
        ServiceHealth(**kwargs)


def test_record_rejects_a_result_that_is_not_a_bool(clock: FakeClock) -> None:
    """record("yes") is a mistake, not a success."""
    with pytest.raises(TypeError, match="ok must be True or False"):
        ServiceHealth(clock=clock).record("yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="duration"):
        ServiceHealth(clock=clock).record(True, duration=-1)


# -- the monitor, with real children ----------------------------------------------------------

def pid_file_check(path: Path, *, grandchild: bool = False, ignore_term: bool = False) -> list[str]:
    """A check that writes its pid (and its grandchild's) to ``path``, then hangs."""
    return python(textwrap.dedent(f"""
        import os, signal, subprocess, sys, time
        if {ignore_term!r}:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pids = [os.getpid()]
        if {grandchild!r}:
            pids.append(subprocess.Popen([sys.executable, "-c",
                                          "import time; time.sleep(60)"]).pid)
        with open({str(path)!r} + ".tmp", "w") as f:
            f.write(" ".join(map(str, pids)))
        os.replace({str(path)!r} + ".tmp", {str(path)!r})
        time.sleep(60)
    """))


def read_pids(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split()]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.anyio
async def test_a_hung_check_is_ended_with_its_group_and_counts_as_timeout(
        tmp_path: Path) -> None:
    """A check that hangs (ignoring SIGTERM, with a grandchild) is killed at its timeout."""
    marker = tmp_path / "pids"
    monitor = HealthMonitor()
    monitor.add("hung", pid_file_check(marker, grandchild=True, ignore_term=True),
                interval=30, timeout=1.0, grace=0.2, failure_threshold=1)
    with anyio.fail_after(20):
        async with monitor:
            down = await monitor.wait_for("down", "hung")
    assert down.reason == "1 failure; last: timeout"
    [result] = monitor.history("hung")
    assert (result.ok, result.reason, result.counted) == (False, "timeout", True)
    assert result.duration >= 1.0
    pids = read_pids(marker)
    assert len(pids) == 2
    assert [pid for pid in pids if alive(pid)] == []


@pytest.mark.anyio
async def test_a_check_still_running_at_its_tick_is_not_started_twice(
        spawns: list[list[str]]) -> None:
    """timeout > interval: the ticks that find it running are overrun events; no overlap."""
    monitor = HealthMonitor()
    monitor.add("slow", SLEEP(0.7), interval=0.25, timeout=10)
    with anyio.fail_after(30):
        async with monitor:
            await monitor.wait_for("overrun", "slow", count=2)
            assert monitor.history("slow") == []  # the first check is still running
            await monitor.wait_until(lambda: len(monitor.history("slow")) >= 2)
    history = monitor.history("slow")
    for before, after in itertools.pairwise(history):
        assert before.ended <= after.time
    assert len(spawns) <= len(history) + 1  # + the one running when the block ended
    overruns = [e for e in monitor.events if e.kind == "overrun"]
    assert len(overruns) >= 2
    assert all("still running" in e.reason for e in overruns)
    assert all(r.ok for r in history)


@pytest.mark.anyio
async def test_the_schedule_does_not_drift_with_slow_checks() -> None:
    """Checks lasting half an interval still start on the grid start + k * interval."""
    interval = 0.6
    monitor = HealthMonitor()
    monitor.add("steady", SLEEP(0.3), interval=interval, timeout=10)
    with anyio.fail_after(30):
        async with monitor:
            await monitor.wait_until(lambda: len(monitor.history("steady")) >= 6)
    starts = [r.time for r in monitor.history("steady")]
    ticks = [round(t / interval) for t in starts]
    assert ticks == sorted(set(ticks))
    # Sleeping `interval` after each check would start them at 0, 0.9, 1.8...: 0.3 s off.
    assert all(-0.01 <= t - k * interval < 0.25 for t, k in zip(starts, ticks, strict=True))
    assert ticks[-1] - ticks[0] == len(ticks) - 1  # no tick skipped either


@pytest.mark.anyio
async def test_up_down_recovered_with_a_real_service(tmp_path: Path) -> None:
    """A check that passes while a file exists: up, down once, recovered once, with the outage."""
    flag = tmp_path / "healthy"
    flag.touch()
    check = python(f"import os, sys; sys.exit(0 if os.path.exists({str(flag)!r}) else 1)")
    monitor = HealthMonitor()
    monitor.add("svc", check, interval=0.1, timeout=5, failure_threshold=2,
                success_threshold=2)
    with anyio.fail_after(30):
        async with monitor:
            await monitor.wait_for("up", "svc")
            flag.unlink()
            down = await monitor.wait_for("down", "svc")
            flag.touch()
            recovered = await monitor.wait_for("recovered", "svc")
    assert decisions(monitor.events) == ["up", "down", "recovered"]
    assert recovered.outage == pytest.approx(recovered.time - down.time)
    assert recovered.outage > 0
    assert monitor.status("svc") == "up"
    failed = [r for r in monitor.history("svc") if not r.ok]
    assert len(failed) >= 2
    assert all(r.reason == "exit code 1" for r in failed)


@pytest.mark.anyio
async def test_leaving_the_block_ends_every_running_check(tmp_path: Path) -> None:
    """A check far from its timeout is ended with its grandchild when the block ends."""
    marker = tmp_path / "pids"
    monitor = HealthMonitor()
    monitor.add("long", pid_file_check(marker, grandchild=True), interval=60, timeout=60,
                grace=0.5)
    monitor.add("quick", EXIT(0), interval=0.2, timeout=5)
    with anyio.fail_after(20):  # far less than the 60 s timeout: the block did not wait
        async with monitor:
            await eventually(marker.exists)
    pids = read_pids(marker)
    assert [pid for pid in pids if alive(pid)] == []
    assert monitor.history("long") == []  # ended by the block, not a result
    assert monitor.status("quick") == "up"


@pytest.mark.anyio
async def test_an_exception_in_the_block_comes_out_unwrapped_and_ends_the_checks(
        tmp_path: Path) -> None:
    """`raise ValueError` inside the block raises ValueError (no group), children ended."""
    marker = tmp_path / "pids"
    monitor = HealthMonitor()
    monitor.add("long", pid_file_check(marker), interval=60, timeout=60, grace=0.5)
    async def body_fails() -> None:
        async with monitor:
            await eventually(marker.exists)
            raise ValueError("the body failed")

    with pytest.raises(ValueError, match="the body"):
        await body_fails()
    assert not alive(read_pids(marker)[0])


@pytest.mark.anyio
async def test_cancelled_from_outside_ends_the_checks(tmp_path: Path) -> None:
    """A deadline around the block cancels it like any other code; nothing survives."""
    marker = tmp_path / "pids"
    monitor = HealthMonitor()
    monitor.add("long", pid_file_check(marker), interval=60, timeout=60, grace=0.5)
    with anyio.move_on_after(15) as scope:
        async with monitor:
            await eventually(marker.exists)
            scope.deadline = anyio.current_time()  # expire now
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert not alive(read_pids(marker)[0])


@pytest.mark.anyio
async def test_a_command_that_cannot_start_is_a_failure_not_a_crash() -> None:
    """A missing program shows up as a down service with the reason, not an exception."""
    monitor = HealthMonitor()
    monitor.add("nocurl", ["/nonexistent/curl", "-f", "http://127.0.0.1:1/"], interval=0.1,
                timeout=5, failure_threshold=2)
    with anyio.fail_after(20):
        async with monitor:
            down = await monitor.wait_for("down", "nocurl")
    assert "cannot start: '/nonexistent/curl' does not exist" in down.reason


@pytest.mark.anyio
async def test_listeners_sync_async_and_broken() -> None:
    """Sync and async listeners get every event; a broken one is logged and kept, no crash."""
    sync_seen: list[str] = []
    async_seen: list[str] = []

    async def pager(event: HealthEvent) -> None:
        await anyio.lowlevel.checkpoint()
        async_seen.append(event.kind)

    def broken(event: HealthEvent) -> None:
        if event.kind == "down":
            raise RuntimeError("webhook unreachable")

    monitor = HealthMonitor(listeners=[lambda e: sync_seen.append(e.kind), broken])
    monitor.add_listener(pager)
    monitor.add("bad", EXIT(3, "boom\n"), interval=0.1, timeout=5, failure_threshold=1)
    with anyio.fail_after(20):
        async with monitor:
            await monitor.wait_for("down")
            await monitor.wait_until(lambda: "down" in async_seen)
    assert [k for k in sync_seen if k != "overrun"] == ["down"]
    assert [k for k in async_seen if k != "overrun"] == ["down"]
    [down] = [e for e in monitor.events if e.kind == "down"]
    assert down.reason == "1 failure; last: exit code 3: boom"
    [(event, exc)] = monitor.listener_errors
    assert event.kind == "down"
    assert str(exc) == "webhook unreachable"


@pytest.mark.anyio
async def test_a_service_added_while_running_starts_at_once_with_its_own_start_period(
) -> None:
    """add() on a running monitor schedules it immediately; its start period begins then."""
    monitor = HealthMonitor()
    monitor.add("first", EXIT(0), interval=0.1, timeout=5)
    with anyio.fail_after(20):
        async with monitor:
            await monitor.wait_for("up", "first")
            late = monitor.add("late", EXIT(1), interval=0.1, timeout=5, failure_threshold=1,
                               start_period=60)
            assert late.started_at > 0
            await monitor.wait_until(lambda: len(monitor.history("late")) >= 2)
    assert monitor.status("late") == "unknown"
    assert not any(r.counted for r in monitor.history("late"))


@pytest.mark.anyio
async def test_bad_arguments_are_rejected_clearly() -> None:
    """Each mistake raises at once with the setting, the reason and the fix."""
    monitor = HealthMonitor()
    with pytest.raises(TypeError, match=r"service 'web': a command is a list .*\['curl', '-f'"):
        monitor.add("web", "curl -f http://127.0.0.1:8080/")
    with pytest.raises(ValueError, match="interval must be more than zero seconds"):
        monitor.add("web", EXIT(0), interval=0)
    with pytest.raises(ValueError, match="timeout must be more than zero seconds"):
        monitor.add("web", EXIT(0), timeout=-1)
    with pytest.raises(ValueError, match="failure_threshold must be a whole number"):
        monitor.add("web", EXIT(0), failure_threshold=0)
    with pytest.raises(ValueError, match="non-empty name"):
        monitor.add("", EXIT(0))
    with pytest.raises(TypeError, match=r"service 'web': env\['PORT'\] = 8080"):
        monitor.add("web", EXIT(0), env={"PORT": 8080})
    with pytest.raises(ValueError, match="history_limit must be a whole number >= 1"):
        HealthMonitor(history_limit=0)
    monitor.add("web", EXIT(0), interval=0.1)
    with pytest.raises(ValueError, match="'web' is already monitored"):
        monitor.add("web", EXIT(0))
    with pytest.raises(KeyError, match=r"no service named 'wbe' \(monitored: 'web'\)"):
        monitor.status("wbe")
    with pytest.raises(RuntimeError, match="not running"):
        await monitor.wait_for("up", "web")
    with pytest.raises(ValueError, match="kind must be one of"):
        await monitor.wait_for("DOWN")
    with pytest.raises(TypeError, match="listener is a callable"):
        monitor.add_listener(None)  # type: ignore[arg-type]
    async with monitor:
        with pytest.raises(RuntimeError, match="runs once"):
            await monitor.__aenter__()
        await monitor.wait_for("up", "web")
    with pytest.raises(RuntimeError, match="has stopped"):
        monitor.add("db", EXIT(0))
    stopped_at = monitor.now()
    await anyio.sleep(0.05)
    assert monitor.now() == stopped_at


@pytest.mark.anyio
async def test_plot_has_one_row_per_service_and_renders_png(tmp_path: Path) -> None:
    """plot_health(monitor): a PNG with each service's name on its row and a legend."""
    monitor = HealthMonitor()
    monitor.add("web", EXIT(0), interval=0.1, timeout=5)
    monitor.add("db", EXIT(1), interval=0.1, timeout=5, failure_threshold=2)
    with anyio.fail_after(20):
        async with monitor:
            await monitor.wait_for("down", "db")
            await monitor.wait_for("up", "web")
    fig = plot_health(monitor)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["web", "db"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "up" in legend
    assert "down" in legend
    assert "check failed" in legend
    assert to_png(fig).startswith(b"\x89PNG")
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_plot_draws_a_hand_driven_service_and_rejects_other_things(clock: FakeClock) -> None:
    """A ServiceHealth on a fake clock plots too (start period marks, overruns)."""
    s = ServiceHealth("s", failure_threshold=2, start_period=15, clock=clock)
    feed(s, clock, "--+--")
    s.overrun()
    fig = plot_health([s], title="by hand")
    ax = fig.axes[0]
    assert ax.get_title() == "by hand"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "failed, not counted (start period)" in legend
    assert "tick skipped (overrun)" in legend
    with pytest.raises(TypeError, match="not str"):
        plot_health(["s"])  # type: ignore[list-item]


@pytest.mark.anyio
async def test_leaving_just_as_ticks_fall_due_is_clean() -> None:
    """The block ends in the same loop turn as 20 ticks fall due: the wake-ups that raced the
    cancellation start nothing and raise nothing (asyncio resumes such a task once)."""
    for _ in range(10):
        monitor = HealthMonitor()
        for i in range(20):
            monitor.add(f"s{i}", EXIT(0), interval=1.0, timeout=5)
        with anyio.fail_after(30):
            async with monitor:
                origin = anyio.current_time() - monitor.now()
                await anyio.sleep_until(origin + 1.0 - 1e-9)  # wake just before the ticks
        assert all(len(monitor.history(f"s{i}")) <= 1 for i in range(20))
