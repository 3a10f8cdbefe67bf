"""ProcessGroup: cancelling many processes together, politely then firmly, grandchildren too."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import anyio
import psutil
import pytest
from helpers import interrupted, members_at_least, nothing_left_behind  # noqa: F401

from asyncproc_kit import (
    ChildReport,
    GroupTimeout,
    ProcessGroup,
    ProcessTimeout,
    SpawnError,
    Timeline,
    terminate,
)
from asyncproc_kit.testing import (
    IGNORE_SIGTERM,
    SLEEP,
    SPAWN_GRANDCHILDREN,
    descendants,
    python,
    session_members,
)

pytestmark = pytest.mark.anyio

PRINT_THEN_SLEEP = python("print('partial', flush=True); import time; time.sleep(60)")


async def printed(member, text: str, *, within: float = 15.0) -> None:
    """Wait until ``member`` has printed ``text`` (e.g. ``ready``)."""
    with anyio.fail_after(within):
        while text not in member.stdout:  # noqa: ASYNC110 (the child's output, no event)
            await anyio.sleep(0.02)


# -- escalation ---------------------------------------------------------------------------------


async def test_child_ignoring_sigterm_is_killed_at_grace() -> None:
    """A member that ignores SIGTERM gets SIGKILL once the grace passes, within 0.5 s more."""
    grace = 0.5
    async with ProcessGroup() as group:
        member = group.start(IGNORE_SIGTERM(60))
        await printed(member, "ready")
        begun = time.monotonic()
        [report] = await group.cancel(grace=grace)
        took = time.monotonic() - begun
    assert report.how == "SIGKILL"
    assert report.returncode == -signal.SIGKILL
    assert report.reason == "cancelled"
    assert grace <= took <= grace + 0.5
    assert grace <= report.elapsed <= grace + 0.5


async def test_child_exiting_on_sigterm_is_not_waited_for_the_whole_grace() -> None:
    """A member that exits on SIGTERM ends the wait at once, not after the grace period."""
    async with ProcessGroup() as group:
        group.start(SLEEP(60))
        await members_at_least([group.members[0].pid], 1)
        begun = time.monotonic()
        [report] = await group.cancel(grace=10)
        took = time.monotonic() - begun
    assert report.how == "SIGTERM"
    assert report.returncode == -signal.SIGTERM
    assert took < 1.5
    assert report.elapsed < 1.5


async def test_cancel_terminates_members_concurrently() -> None:
    """Five members that ignore SIGTERM are all killed in about one grace period, not five."""
    grace = 0.5
    async with ProcessGroup(grace=grace) as group:
        members = [group.start(IGNORE_SIGTERM(60)) for _ in range(5)]
        for member in members:
            await printed(member, "ready")
        begun = time.monotonic()
        reports = await group.cancel()
        took = time.monotonic() - begun
    assert [r.how for r in reports] == ["SIGKILL"] * 5
    assert took <= grace + 0.5  # one after another would take 5 x grace = 2.5 s


async def test_twenty_shells_and_their_grandchildren_all_end_within_grace() -> None:
    """20 shells with 2 background grandchildren each: 0 live descendants in grace + 0.5 s."""
    grace = 2.0
    # children this process had before (multiprocessing's resource tracker, once another
    # test used Dask) are not the group's
    before = set(descendants())
    async with ProcessGroup(grace=grace) as group:
        shells = [group.start(SPAWN_GRANDCHILDREN(2)) for _ in range(20)]
        pids = [m.pid for m in shells]
        await members_at_least(pids, 60)  # 20 shells + 40 sleepers are running
        assert len(descendants()) >= 60
        begun = time.monotonic()
        reports = await group.cancel()
        left = session_members(pids) + [p for p in descendants() if p not in before]
        took = time.monotonic() - begun
    assert left == []
    assert took <= grace + 0.5
    assert len(reports) == 20
    assert {r.how for r in reports} <= {"SIGTERM", "SIGKILL"}


async def test_negative_control_killing_only_the_shell_leaves_grandchildren_running() -> None:
    """Without process groups, killing each shell's pid leaves its 2 grandchildren running.

    This is the original tutorial's `child.kill()`: it proves the group kill above is what
    ends the grandchildren. The survivors are killed at the end.
    """
    shells = [subprocess.Popen(SPAWN_GRANDCHILDREN(2), stdout=subprocess.DEVNULL)  # noqa: ASYNC220
              for _ in range(20)]  # no start_new_session: they share our process group
    grandchildren: list[psutil.Process] = []
    try:
        with anyio.fail_after(15):
            for shell in shells:
                while len(kids := psutil.Process(shell.pid).children()) < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
                grandchildren += kids
        for shell in shells:
            os.kill(shell.pid, signal.SIGKILL)  # what child.kill() does: the shell pid only
            shell.wait()
        await anyio.sleep(0.5)
        survivors = [p for p in grandchildren
                     if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert len(survivors) == 40
    finally:
        for shell in shells:
            if shell.poll() is None:
                shell.kill()
                shell.wait()
        for proc in grandchildren:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(grandchildren, timeout=5)


# -- waiting, timeouts and reports ----------------------------------------------------------------


async def test_leaving_the_block_waits_for_every_member() -> None:
    """Leaving the block normally waits for all members; each report says it exited."""
    async with ProcessGroup() as group:
        group.start(python("print('a')"), label="a")
        group.start(python("import sys; print('b', file=sys.stderr); sys.exit(3)"), label="b")
    a, b = group.reports
    assert (a.label, a.how, a.reason, a.returncode, a.stdout) == ("a", "exited", "finished", 0,
                                                                  "a\n")
    assert (b.how, b.returncode, b.stderr) == ("exited", 3, "b\n")
    assert a.elapsed == 0.0
    assert "exited on its own" in str(a)


async def test_member_timeout_ends_only_that_member() -> None:
    """start(timeout=) terminates that member (reason "timeout"); the others finish."""
    async with ProcessGroup() as group:
        slow = group.start(PRINT_THEN_SLEEP, timeout=0.5)
        quick = group.start(SLEEP(0.1))
        reports = await group.wait()
    assert reports == [await slow.wait(), await quick.wait()]
    assert (reports[0].reason, reports[0].how, reports[0].stdout) == ("timeout", "SIGTERM",
                                                                      "partial\n")
    assert (reports[1].reason, reports[1].returncode) == ("finished", 0)


async def test_group_timeout_raises_with_partial_output_per_child() -> None:
    """ProcessGroup(timeout=) raises GroupTimeout naming the limit, with each child's output."""
    async def batch() -> None:
        async with ProcessGroup(timeout=0.5, grace=1.0) as group:
            group.start(PRINT_THEN_SLEEP, label="slow")
            group.start(SLEEP(0.05), label="quick")

    begun = time.monotonic()
    with pytest.raises(GroupTimeout) as caught:
        await batch()
    error = caught.value
    assert isinstance(error, ProcessTimeout)
    assert isinstance(error, TimeoutError)
    assert time.monotonic() - begun < 0.5 + 1.5
    assert error.limit == "group timeout"
    slow, quick = error.reports
    assert (slow.reason, slow.how, slow.stdout) == ("group timeout", "SIGTERM", "partial\n")
    assert (quick.reason, quick.how) == ("finished", "exited")
    assert "timed out after 0.5 s (the group's timeout=)" in str(error)
    assert "1 had finished, 1 was terminated (1 by SIGTERM, 0 by SIGKILL)" in str(error)
    assert session_members([slow.pid]) == []


async def test_fail_after_around_the_group_terminates_members_and_keeps_reports() -> None:
    """An anyio deadline around the block terminates every member; reports keep the output."""
    group = ProcessGroup(grace=1.0)

    async def batch() -> None:
        with anyio.fail_after(0.5):
            async with group:
                for _ in range(3):
                    group.start(PRINT_THEN_SLEEP)

    with pytest.raises(TimeoutError):
        await batch()
    assert [(r.reason, r.how, r.stdout) for r in group.reports] == [
        ("cancelled", "SIGTERM", "partial\n")] * 3
    assert session_members([r.pid for r in group.reports]) == []


async def test_move_on_after_around_the_group_leaves_nothing_running() -> None:
    """move_on_after: the block is abandoned quietly and every member was terminated."""
    with anyio.move_on_after(0.3) as scope:
        async with ProcessGroup() as group:
            group.start(SPAWN_GRANDCHILDREN(2))
            await group.wait()
    assert scope.cancelled_caught
    [report] = group.reports
    assert report.reason == "cancelled"
    assert session_members([report.pid]) == []


async def test_error_in_the_block_terminates_members_and_propagates_unwrapped() -> None:
    """An exception in the block ends every member and comes out as itself."""
    group = ProcessGroup()

    async def body() -> None:
        async with group:
            member = group.start(SLEEP(60))
            await members_at_least([member.pid], 1)
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await body()
    [report] = group.reports
    assert report.how == "SIGTERM"


async def test_cancel_reports_members_that_had_already_exited() -> None:
    """cancel() reports every member; one that had finished says "exited", signalled none."""
    async with ProcessGroup() as group:
        done = group.start(python("print('done')"))
        await done.wait()
        group.start(SLEEP(60))
        reports = await group.cancel(grace=1)
    assert [(r.how, r.reason) for r in reports] == [("exited", "finished"),
                                                    ("SIGTERM", "cancelled")]
    assert all(isinstance(r, ChildReport) for r in reports)


async def test_one_member_can_be_cancelled_or_terminated_alone() -> None:
    """member.cancel() and terminate(member) end one member; the rest keep running."""
    async with ProcessGroup() as group:
        a, b, c = (group.start(SLEEP(60)) for _ in range(3))
        await members_at_least([a.pid, b.pid, c.pid], 3)
        report = await a.cancel(grace=1)
        ended = await terminate(b, grace=1)
        assert report.how == "SIGTERM"
        assert ended.how == "SIGTERM"
        assert c.running
        await group.cancel()


async def test_timeline_records_members_signals_and_the_cancel_mark() -> None:
    """With timeline=, each member is a span with its SIGTERM event; cancel() is a mark."""
    timeline = Timeline()
    async with ProcessGroup(timeline=timeline) as group:
        group.start(SLEEP(60), label="sleeper")
        await members_at_least([group.members[0].pid], 1)
        await group.cancel(grace=1)
    [span] = timeline.spans
    assert span.label == "sleeper"
    assert span.outcome == "cancelled"
    assert [name for _, name in span.events] == ["SIGTERM"]
    assert [name for _, name in timeline.marks] == ["cancel group"]


async def test_misuse_is_refused_with_a_clear_message() -> None:
    """start() outside the block or after cancel() is refused; a missing command is SpawnError."""
    group = ProcessGroup()
    with pytest.raises(RuntimeError, match="inside `async with ProcessGroup"):
        group.start(SLEEP(1))
    async with group:
        with pytest.raises(SpawnError, match="no-such-program-here"):
            group.start(["no-such-program-here"])
        await group.cancel()
        with pytest.raises(RuntimeError, match="was cancelled"):
            group.start(SLEEP(1))
    with pytest.raises(ValueError, match="grace"):
        ProcessGroup(grace=-1)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_in_a_process_group_is_a_plain_keyboard_interrupt(backend) -> None:
    """Ctrl-C inside a ProcessGroup is KeyboardInterrupt on both
    backends; members are ended."""
    code, out, children = interrupted("""
        async with ProcessGroup() as group:
            group.start(SLEEP(60))
            await group.wait()
    """, backend)
    assert (code, out) == (130, "KeyboardInterrupt")
    assert session_members(children) == []


async def test_member_output_reads_crlf_as_newlines() -> None:
    """A member's stdout in its report reads \\r\\n line ends as \\n, as run() does."""
    async with ProcessGroup() as group:
        member = group.start(python(r"import sys; sys.stdout.buffer.write(b'a\r\nb\r\n')"))
    assert (await member.wait()).stdout == "a\nb\n"
