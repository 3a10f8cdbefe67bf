"""Cancelling many processes together: a group that ends every child's process group at once.

The original tutorial (§4.4) broadcast a "cancel" message and each task killed its own child,
one pid at a time; the children's own children kept running. Here every member is its own
process group, and cancelling the group terminates all of them *concurrently*: SIGTERM to each
group, a grace period cut short by each child's exit, SIGKILL for whatever is left::

    async with ProcessGroup() as group:
        for name in ["a", "b", "c"]:
            group.start(["sleep", "60"], label=name)
        await anyio.sleep(0.2)
        for report in await group.cancel(grace=1.0):
            print(report)        # pid 4242 ['sleep', '60']: ended by SIGTERM in 0.00 s ...
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio

from ._command import check_grace, check_seconds
from ._errors import ProcessTimeout, describe_returncode, format_command
from ._process import (
    DEFAULT_GRACE,
    Child,
    Termination,
    raise_lone_interrupt,
    read_available,
    spawn,
)
from ._run import decode, drain
from ._text import plural
from ._timeline import Timeline


@dataclass(frozen=True)
class ChildReport:
    """How one member of a :class:`ProcessGroup` ended.

    ``how`` is ``"exited"`` (it ended on its own, or before a signal reached it),
    ``"SIGTERM"`` (it ended within the grace period) or ``"SIGKILL"`` (it had to be killed).
    ``reason`` says why it stopped: ``"finished"`` (nobody stopped it), ``"cancelled"``
    (``cancel()`` or a cancelled scope around the group), ``"timeout"`` (its own
    ``timeout=``) or ``"group timeout"`` (the group's ``timeout=``). ``elapsed`` is the
    seconds from the first signal to the reap (0 when no signal was needed); ``duration``
    the seconds from spawn to reap. ``stdout`` and ``stderr`` hold everything it printed,
    partial output included.
    """

    pid: int
    args: list[Any]
    label: str
    how: str
    reason: str
    returncode: int
    elapsed: float
    duration: float
    stdout: str
    stderr: str

    def __str__(self) -> str:
        command = format_command(self.args)
        if self.how == "exited":
            return (f"pid {self.pid} {command}: exited on its own after {self.duration:.2f} s "
                    f"({describe_returncode(self.returncode)})")
        return (f"pid {self.pid} {command}: {self.reason}, ended by {self.how} in "
                f"{self.elapsed:.2f} s ({describe_returncode(self.returncode)})")


def _text(chunks: list[bytes]) -> str:
    return decode(b"".join(chunks), True, "utf-8", "replace")  # type: ignore[return-value]


class GroupTimeout(ProcessTimeout):
    """A :class:`ProcessGroup` ran past its own ``timeout=``: every member still running was
    terminated. ``reports`` holds one :class:`ChildReport` per member (start order), partial
    output included; ``limit`` is ``"group timeout"``. Also a ``TimeoutError``.
    """

    def __init__(self, timeout: float, reports: list[ChildReport]):
        super().__init__([r.args for r in reports], timeout, limit="group timeout")
        self.reports = reports

    def __str__(self) -> str:
        stopped = [r for r in self.reports if r.reason == "group timeout"]
        by = {how: sum(r.how == how for r in stopped) for how in ("SIGTERM", "SIGKILL")}
        return (f"a group of {len(self.reports)} processes timed out after {self.timeout:g} s "
                f"(the group's timeout=): {len(self.reports) - len(stopped)} had finished, "
                f"{plural(len(stopped), 'was', 'were')} terminated ({by['SIGTERM']} by SIGTERM, "
                f"{by['SIGKILL']} by SIGKILL); each one's output so far is in .reports")


class Member:
    """A process started by :meth:`ProcessGroup.start`, while it runs and after.

    ``pid``, ``args`` and ``label`` are known at once; ``report`` is ``None`` until it has
    ended. ``await member.wait()`` gives its :class:`ChildReport`; ``await
    member.cancel()`` ends just this one. :func:`asyncproc_kit.terminate` accepts it too.
    """

    def __init__(self, child: Child, label: str, timeout: float | None):
        self._child = child
        self.pid = child.pid
        self.args = child.args
        self.label = label
        self.report: ChildReport | None = None
        self._scope = anyio.CancelScope(
            deadline=math.inf if timeout is None else anyio.current_time() + timeout)
        self._timeout = timeout
        self._done = anyio.Event()
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self._reason = "finished"
        self._grace = DEFAULT_GRACE

    @property
    def running(self) -> bool:
        return self.report is None

    @property
    def stdout(self) -> str:
        """What it has printed on stdout so far (all of it once it has ended)."""
        return _text(self._out)

    @property
    def stderr(self) -> str:
        """What it has printed on stderr so far."""
        return _text(self._err)

    def __repr__(self) -> str:
        state = "running" if self.report is None else self.report.how
        return f"<Member {self.label!r} pid={self.pid} {state}>"

    async def wait(self) -> ChildReport:
        """Wait until this member has ended (and its output is collected)."""
        await self._done.wait()
        assert self.report is not None
        return self.report

    async def cancel(self, *, grace: float | None = None) -> ChildReport:
        """Terminate this member (SIGTERM, ``grace``, SIGKILL) and return its report."""
        self._stop("cancelled", grace)
        with anyio.CancelScope(shield=True):
            return await self.wait()

    def _stop(self, reason: str, grace: float | None) -> None:
        if self.report is None and not self._scope.cancel_called:
            self._reason = reason
            if grace is not None:
                self._grace = grace
            self._scope.cancel()


class ProcessGroup:
    """Start processes into a group, then wait for them all or cancel them all at once.

    ``async with ProcessGroup(grace=1.0) as group:`` then ``group.start(cmd)`` (no await: it
    spawns at once and returns a :class:`Member`). Leaving the block waits until every
    member has ended, like a task group. ``await group.wait()`` does the same inside it;
    ``await group.cancel(grace=...)`` ends every member and returns their reports.

    **Cancellation:** ``cancel()``, an exception in the block, or a cancelled scope around
    it (``anyio.fail_after``, ``move_on_after``) terminate every running member
    *concurrently*: SIGTERM to each member's whole process group (grandchildren included),
    then each is waited for until it exits or ``grace`` seconds pass, whichever is first,
    then SIGKILL. So cancelling 20 members takes about one grace period, not 20. This runs
    shielded: no zombie, no orphan, whatever interrupted it.

    **Timeouts:** ``start(cmd, timeout=s)`` limits one member (its report says
    ``reason="timeout"``); ``ProcessGroup(timeout=s)`` limits the whole block and raises
    :class:`GroupTimeout` (a ``TimeoutError``) whose ``reports`` carry each member's partial
    output. With ``anyio.fail_after`` around the block instead, anyio raises its own
    ``TimeoutError`` and ``group.reports`` tells what happened to each member.

    **Errors:** a member that exits non-zero is not an error here: read ``returncode`` in
    its report. A command that cannot start raises :class:`SpawnError` from ``start()``.

    **Output:** each member's stdout and stderr are read as they arrive (no pipe fills up)
    and decoded as UTF-8 with replacement; they are in its report.

    ``timeline=`` records every member as a span, with its SIGTERM/SIGKILL events and a mark
    when the group is cancelled.
    """

    def __init__(self, *, grace: float = DEFAULT_GRACE, timeout: float | None = None,
                 timeline: Timeline | None = None):
        self.grace = check_grace(grace)
        self.timeout = check_seconds("timeout", timeout)
        self.timeline = timeline
        self.members: list[Member] = []
        self._tg: anyio.abc.TaskGroup | None = None
        self._cancelled = False
        self._deadline = math.inf
        self._cm: Any = None

    def __repr__(self) -> str:
        running = sum(m.running for m in self.members)
        return f"<ProcessGroup: {len(self.members)} members, {running} running>"

    def __len__(self) -> int:
        return len(self.members)

    @property
    def reports(self) -> list[ChildReport]:
        """The reports of the members that have ended, in start order."""
        return [m.report for m in self.members if m.report is not None]

    async def __aenter__(self) -> ProcessGroup:
        if self._cm is not None:
            raise RuntimeError("a ProcessGroup can be entered only once: create a new one")
        self._cm = self._lifetime()
        return await self._cm.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._cm.__aexit__(*exc_info)

    @asynccontextmanager
    async def _lifetime(self):  # type: ignore[no-untyped-def]
        if self.timeout is not None:
            self._deadline = anyio.current_time() + self.timeout
        try:
            with anyio.CancelScope(deadline=self._deadline) as scope:
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    yield self
        except BaseExceptionGroup as group:
            # Members never raise, so the only error is the block's own: raise it unwrapped.
            raise_lone_interrupt(group)
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        finally:
            self._tg = None
        if scope.cancelled_caught:
            raise GroupTimeout(self.timeout, [m.report for m in self.members])  # type: ignore[arg-type, misc]

    def start(self, cmd: Any, *, label: str | None = None, timeout: float | None = None,
              cwd: Any = None, env: Mapping[str, str] | None = None) -> Member:
        """Spawn ``cmd`` as a member of this group and return its :class:`Member`.

        stdin is empty; stdout and stderr are collected. ``timeout=`` limits this member
        only (it is terminated and its report says ``reason="timeout"``).
        """
        if self._tg is None:
            raise RuntimeError(
                "start() needs an open group: call it inside `async with ProcessGroup() as group:`")
        if self._cancelled:
            raise RuntimeError("this group was cancelled: start a new ProcessGroup for new work")
        timeout = check_seconds("timeout", timeout)
        child = spawn(cmd, stdin="devnull", cwd=cwd, env=env, timeline=self.timeline,
                      label=label)
        member = Member(child, label or format_command(child.args), timeout)
        member._grace = self.grace
        self.members.append(member)
        self._tg.start_soon(self._watch, member, name=f"ProcessGroup member {member.label}")
        return member

    async def wait(self) -> list[ChildReport]:
        """Wait until every member started so far has ended; their reports in start order."""
        return [await m.wait() for m in list(self.members)]

    async def cancel(self, *, grace: float | None = None) -> list[ChildReport]:
        """Terminate every running member concurrently; every member's report, in order.

        ``grace`` (default: the group's) is how long each member may take to exit after
        SIGTERM before it gets SIGKILL. Shielded: it completes even if the caller is
        cancelled meanwhile. New ``start()`` calls are refused afterwards.
        """
        if grace is not None:
            grace = check_grace(grace)
        self._cancelled = True
        if self.timeline is not None:
            self.timeline.mark("cancel group")
        for member in self.members:
            member._stop("cancelled", grace)
        with anyio.CancelScope(shield=True):
            return await self.wait()

    async def _watch(self, member: Member) -> None:
        child = member._child
        try:
            with member._scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(drain, child, child.stdout, member._out)
                    tg.start_soon(drain, child, child.stderr, member._err)
                    await child.wait()
        finally:
            with anyio.CancelScope(shield=True):
                await self._finish(member)

    async def _finish(self, member: Member) -> None:
        child = member._child
        try:
            if child.returncode is None:
                reason = self._why_stopped(member)
                if child.span is not None:
                    child.span.outcome = "timeout" if "timeout" in reason else "cancelled"
                ended = await child.terminate(member._grace)
                if ended.how == "exited":
                    reason = "finished"
            else:
                reason = "finished"
                ended = Termination(child.pid, child.returncode, "exited", 0.0)
            for fd, sink in ((child.stdout, member._out), (child.stderr, member._err)):
                if fd is not None:
                    sink.extend(read_available(fd))
        finally:
            child.close_fds()
        member.report = ChildReport(
            pid=child.pid, args=child.args, label=member.label, how=ended.how, reason=reason,
            returncode=ended.returncode, elapsed=ended.elapsed, duration=child.duration,
            stdout=_text(member._out),
            stderr=_text(member._err),
        )
        member._done.set()

    def _why_stopped(self, member: Member) -> str:
        now = anyio.current_time()
        if member._scope.cancel_called and member._reason == "cancelled":
            return "cancelled"
        if member._timeout is not None and now >= member._scope.deadline:
            return "timeout"
        if now >= self._deadline:
            return "group timeout"
        return "cancelled"
