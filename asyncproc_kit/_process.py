"""Starting a child in its own process group, waiting for it, and ending it politely.

This is the one place that creates, signals and reaps processes; ``run``, ``open_stream``,
``open_pipe`` and the pool all stand on :func:`spawn` and :class:`Child`.

Why not ``anyio.open_process``? Three guarantees it cannot give:

* **The whole group dies.** Each child leads a new session, so ``sh -c "a & b"`` and
  everything it starts share one process group, which we signal as a unit.
* **No reused group id is ever signalled.** We learn that the child exited *without reaping
  it* (:mod:`._exit`: a pidfd on Linux, kqueue on macOS, ``waitid(WNOWAIT)`` elsewhere). While
  it is an unreaped zombie its pid, and so its group id, cannot be given to another process;
  we signal the group, then reap.
* **Identical on asyncio and trio**, because the waiting and the pipe I/O use only anyio's
  ``wait_readable``/``wait_writable`` on raw file descriptors.
"""

from __future__ import annotations

import asyncio
import atexit
import errno
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import anyio.lowlevel

from . import _exit, _log
from ._command import (
    check_command,
    check_cwd,
    check_env,
    check_grace,
    fd_limit_error,
    raise_fd_limit,
    spawn_error,
)
from ._errors import describe_returncode, format_command
from ._timeline import Span, Timeline, outcome_of

DEFAULT_GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL. Long enough for a well-behaved program to flush and
exit, short enough that a notebook cell never seems to hang."""

REAP_TIMEOUT = 5.0
"""After SIGKILL, how long to wait for the kernel to let the child go before warning."""

LEFTOVER_TIMEOUT = 1.0
"""After the reap, how long to wait for killed leftovers of the group to finish dying."""

CHUNK = 65536
MAX_CHUNK = 1 << 20  # readers of a fast child grow their reads up to this
EXIT_STRATEGY = _exit.choose()  # how we learn of exits: pidfd, kqueue, waitid, waitid-ctypes
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
_live: dict[int, Child] = {}  # pid -> running child, so interpreter exit can end them

Redirect = Literal["pipe", "devnull", "stdout"]


@dataclass(frozen=True)
class Termination:
    """How a child ended when it was asked to stop.

    ``how`` is ``"exited"`` (it had already ended, no signal sent), ``"SIGTERM"`` (it ended
    within the grace period) or ``"SIGKILL"`` (it had to be killed); ``elapsed`` is the seconds
    from the first signal to the reap.
    """

    pid: int
    returncode: int
    how: str
    elapsed: float

    def __str__(self) -> str:
        if self.how == "exited":
            return f"pid {self.pid} had already exited ({describe_returncode(self.returncode)})"
        return (f"pid {self.pid} ended after {self.how} in {self.elapsed:.2f} s "
                f"({describe_returncode(self.returncode)})")


class Child:
    """A running child process that the kit owns (what ``spawn`` returns).

    ``pgid`` is the process group id while the child is unreaped, ``None`` after; only then
    is signalling the group safe, so every signal goes through :meth:`signal_group`.
    """

    def __init__(self, popen: subprocess.Popen[bytes], args: list[Any], exit_watch: _exit.ExitWatch,
                 fds: dict[str, int | None], span: Span | None, timeline: Timeline | None,
                 started: float, started_at: float):
        self.args = args
        self.pid: int = popen.pid
        self.pgid: int | None = popen.pid  # the child called setsid(): it leads its own group
        self.returncode: int | None = None
        self.started = started_at  # time.time() at spawn
        self.started_monotonic = started
        self.ended: float | None = None
        self.ended_monotonic: float | None = None
        self.stdin: int | None = fds.get("stdin")
        self.stdout: int | None = fds.get("stdout")
        self.stderr: int | None = fds.get("stderr")
        self.span = span
        self.timeline = timeline
        self._popen = popen
        self._exit = exit_watch  # tells us the child exited, without reaping it
        self._wait_lock = anyio.Lock()
        self._leftover_group: int | None = None  # killed with the leader, maybe still dying
        _live[self.pid] = self
        _log.started(self)

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else describe_returncode(self.returncode)
        return f"<Child pid={self.pid} {format_command(self.args)} {state}>"

    @property
    def duration(self) -> float:
        """Seconds from spawn to reap (so far, while it runs), on a monotonic clock."""
        return (self.ended_monotonic or time.monotonic()) - self.started_monotonic

    # -- waiting -----------------------------------------------------------------------------

    async def wait(self) -> int:
        """Wait until the child exits, reap it, and return its return code."""
        while self.returncode is None:
            async with self._wait_lock:
                if self.returncode is None:
                    await self._wait_exited()
                    self._reap()
        if self._leftover_group is not None:
            await _leftovers_gone(self._leftover_group)
            self._leftover_group = None
        return self.returncode

    def has_exited(self) -> bool:
        """True once the child has exited (reaped or not); never blocks, never reaps."""
        return self.returncode is not None or self._exit.exited()

    async def _wait_exited(self) -> None:
        await self._exit.wait()

    def _reap(self) -> None:
        # The leader has exited but is not reaped yet, so the group id is still ours: anything
        # it left behind in its group (background jobs, grandchildren) is an orphan-to-be.
        self.signal_group(signal.SIGKILL, record=False)
        self._leftover_group = self.pgid
        try:
            self.returncode = self._popen.wait()
        except ChildProcessError:  # somebody else reaped it: we cannot know its status
            self.returncode = self._popen.returncode if self._popen.returncode is not None else 0
        self.pgid = None
        self.ended = time.time()
        self.ended_monotonic = time.monotonic()
        _live.pop(self.pid, None)
        _log.reaped(self)
        self._exit.close()
        if self.span is not None and self.timeline is not None:
            self.span.ended = self.timeline.now()
            self.span.returncode = self.returncode
            if self.span.outcome is None:
                self.span.outcome = outcome_of(self.returncode)

    # -- signals -----------------------------------------------------------------------------

    def signal_group(self, sig: int, *, record: bool = True) -> bool:
        """Send ``sig`` to the child's whole process group; False if it is already reaped."""
        if self.pgid is None:
            return False
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        _log.signalled(self, sig, routine=not record)
        if record and self.span is not None and self.timeline is not None:
            self.timeline.event(self.span, signal.Signals(sig).name)
        return True

    async def terminate(self, grace: float = DEFAULT_GRACE) -> Termination:
        """SIGTERM the group, wait until exit or ``grace`` (whichever is first), then SIGKILL.

        SIGCONT follows the SIGTERM, as systemd does: a stopped child (SIGSTOP, Ctrl-Z)
        cannot run its SIGTERM handler until it is continued.

        Shielded from cancellation: once started, it finishes, so nothing is left running.
        """
        with anyio.CancelScope(shield=True):
            if self.has_exited():
                return Termination(self.pid, await self.wait(), "exited", 0.0)
            begun = time.monotonic()
            how = "SIGTERM"
            self.signal_group(signal.SIGTERM)
            self.signal_group(signal.SIGCONT, record=False)  # a stopped child cannot exit
            await _signal_session(self.pid, begun, signal.SIGTERM, signal.SIGCONT)
            with anyio.move_on_after(grace):
                await self.wait()
            if self.returncode is None:
                how = "SIGKILL"
                killed = time.monotonic()
                self.signal_group(signal.SIGKILL)
                await _signal_session(self.pid, killed, signal.SIGKILL)
                with anyio.move_on_after(REAP_TIMEOUT):
                    await self.wait()
            await _session_gone(self.pid, begun)  # what left the group dies with the session
            if self.returncode is None:
                warnings.warn(
                    f"pid {self.pid} ({format_command(self.args)}) survived SIGKILL for "
                    f"{REAP_TIMEOUT:g} s (stuck in the kernel, e.g. on a dead network mount); "
                    "it is still running", RuntimeWarning, stacklevel=2)
                return Termination(self.pid, -signal.SIGKILL, how, time.monotonic() - begun)
            await self.wait()  # reaped just as grace ran out: still see the leftovers die
            return Termination(self.pid, self.returncode, how, time.monotonic() - begun)

    async def aclose(self, grace: float = DEFAULT_GRACE) -> None:
        """Terminate the child if it still runs, then close every pipe. Always completes."""
        with anyio.CancelScope(shield=True):
            try:
                if self.returncode is None:
                    await self.terminate(grace)
                else:
                    await self.wait()  # let killed leftovers of the group finish dying
            finally:
                self.close_fds()

    def close_fds(self) -> None:
        for name in ("stdin", "stdout", "stderr"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                close_fd(fd)

    def close_stdin(self) -> None:
        if self.stdin is not None:
            fd, self.stdin = self.stdin, None
            close_fd(fd)

    def note_output(self, nbytes: int) -> None:
        if self.span is not None and self.timeline is not None:
            if self.span.first_output is None:
                self.span.first_output = self.timeline.now()
            self.span.received += nbytes


async def _leftovers_gone(pgid: int) -> None:
    """Wait (bounded) until no live process is left in group ``pgid``.

    SIGKILL is delivered at once but a process takes a moment to die, so right after the
    leader's reap its killed grandchildren may still be running. Only signal 0 is sent here:
    the leader is reaped, so the group id could in principle be reused; probing is harmless.
    """
    since = time.monotonic()  # every member was killed before this moment
    deadline = since + LEFTOVER_TIMEOUT
    members: list[int] | None = None
    delay = 0.002
    while True:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return  # the group is empty
        if time.monotonic() >= deadline:
            return
        await anyio.sleep(delay)  # children reaped at the same moment share one scan
        delay = min(delay * 2, 0.02)
        if members is None:
            members = _group_members(pgid, since)
        if members is not None:  # with /proc: zombies (left for init to reap) do not count
            members = [pid for pid in members if _alive_in_group(pid, pgid)]
            if not members:
                return


_Scan = tuple[dict[int, list[int]], dict[int, list[tuple[int, int]]]]
_scanned: tuple[float, _Scan | None] = (float("-inf"), None)


def _scan(since: float) -> _Scan | None:
    """Every live (non-zombie) process by group and by session; None without /proc.

    One scan of /proc serves every child waiting at that moment (ending 200 children at once
    must not mean 200 scans), but only a scan begun after ``since``: an older one may
    predate what we look for.
    """
    global _scanned
    scanned_at, found = _scanned
    if scanned_at < since:
        scanned_at = time.monotonic()
        try:
            entries = os.listdir("/proc")
        except OSError:
            found = None
        else:
            groups: dict[int, list[int]] = {}
            sessions: dict[int, list[tuple[int, int]]] = {}
            for entry in entries:
                if entry.isdigit() and (ids := _live_ids_of(int(entry))) is not None:
                    groups.setdefault(ids[0], []).append(int(entry))
                    sessions.setdefault(ids[1], []).append((int(entry), ids[0]))
            found = (groups, sessions)
        _scanned = (scanned_at, found)
    return found


def _group_members(pgid: int, since: float) -> list[int] | None:
    """The live (non-zombie) pids in group ``pgid``; None without /proc."""
    found = _scan(since)
    return None if found is None else found[0].get(pgid, [])


def _alive_in_group(pid: int, pgid: int) -> bool:
    return _live_group_of(pid) == pgid


def _live_group_of(pid: int) -> int | None:
    """The process group of ``pid`` if it is alive and not a zombie, else None."""
    ids = _live_ids_of(pid)
    return None if ids is None else ids[0]


def _live_ids_of(pid: int) -> tuple[int, int] | None:
    """(process group, session) of ``pid`` if it is alive and not a zombie, else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    state, _ppid, group, session = stat[stat.rindex(b")") + 2:].split(maxsplit=4)[:4]
    return None if state == b"Z" else (int(group), int(session))


def _session_strays(sid: int, since: float) -> list[int]:
    """Live members of session ``sid`` outside its leader's group ``sid`` (Linux, /proc).

    A child's grandchild can leave the child's process group (job control, ``setpgid``,
    ``Popen(process_group=0)``) but not its session, short of calling ``setsid()`` itself.
    The session id cannot be given to a new process while any member still uses it.
    """
    found = _scan(since)
    if found is None:
        return []
    return [pid for pid, group in found[1].get(sid, []) if group != sid]


def _signal_stray(pid: int, sid: int, sig: int) -> None:
    """Send ``sig`` to ``pid`` only if it is still in session ``sid``.

    The pid is pinned with a pidfd before it is checked, so a pid that died and was reused
    between the scan and the signal is never hit.
    """
    pidfd = None
    try:
        if hasattr(os, "pidfd_open"):  # pins the pid (hidden in the waitid test run)
            pidfd = os.pidfd_open(pid)
        ids = _live_ids_of(pid)
        if ids is None or ids[1] != sid:
            return
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)
    except OSError:  # gone already, or not ours to signal
        pass
    finally:
        if pidfd is not None:
            os.close(pidfd)


async def _signal_session(sid: int, since: float, *sigs: int) -> list[int]:
    """Send ``sigs`` to the members of session ``sid`` outside its leader's group; return
    them. The checkpoint first lets every child being ended at this moment signal its own
    group, so that one scan serves them all."""
    await anyio.lowlevel.checkpoint()
    strays = _session_strays(sid, since)
    for pid in strays:
        for sig in sigs:
            _signal_stray(pid, sid, sig)
    return strays


async def _session_gone(sid: int, since: float) -> None:
    """SIGKILL what is left of session ``sid`` outside the (already killed) leader's group
    and wait, bounded, until it has died. ``since`` is when the termination began: the scan
    made for its SIGTERM serves here too (every child ended at once shares it)."""
    deadline = time.monotonic() + LEFTOVER_TIMEOUT
    delay = 0.002
    strays = await _signal_session(sid, since, signal.SIGKILL)
    while strays := [pid for pid in strays if (ids := _live_ids_of(pid)) and ids[1] == sid]:
        if time.monotonic() >= deadline:
            return
        for pid in strays:
            _signal_stray(pid, sid, signal.SIGKILL)
        await anyio.sleep(delay)
        delay = min(delay * 2, 0.02)


async def exit_task_group(tg: Any, exc_type: Any, exc: BaseException | None,
                          tb: Any) -> bool | None:
    """Leave a task group that encloses the caller's ``async with`` block.

    The block's own exception comes out as raised, not wrapped in an ``ExceptionGroup``, so
    ``except ValueError:`` around ``async with open_stream(...)`` works as a learner expects.
    """
    try:
        return await tg.__aexit__(exc_type, exc, tb)
    except BaseExceptionGroup as group:
        if exc is not None and len(group.exceptions) == 1 and group.exceptions[0] is exc:
            return False  # re-raises the block's exception unchanged
        raise_lone_interrupt(group)
        raise


@contextmanager
def interrupts_unwrapped() -> Iterator[None]:
    """Around a task group the kit owns: Ctrl-C comes out as a plain ``KeyboardInterrupt``.

    trio delivers Ctrl-C to the main task, and a task group wraps what its body raises in a
    ``BaseExceptionGroup``; asyncio raises ``KeyboardInterrupt`` as it is. Unwrapped, ``except
    KeyboardInterrupt:`` works the same on both backends.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        raise_lone_interrupt(group)
        raise


def raise_lone_interrupt(group: BaseExceptionGroup) -> None:
    """Raise the ``KeyboardInterrupt`` if it is all that ``group`` holds (nested or not)."""
    interrupts, rest = group.split(KeyboardInterrupt)
    if interrupts is not None and rest is None:
        while isinstance(interrupts, BaseExceptionGroup):
            interrupts = interrupts.exceptions[0]
        raise interrupts from None


def next_read_size(fd: int, size: int, got: int) -> int:
    """How much to read next from a child's pipe, given that the last read of ``size`` got
    ``got`` bytes.

    A full read means a fast writer: double the reads (up to 1 MiB) and, the first time,
    enlarge the pipe itself (Linux), so the child blocks less and we wake up less often. A
    short read means it trickles: back to 64 KiB. Only chatty children get big pipes, which
    count against the user's pipe budget.
    """
    if got < size:
        return CHUNK
    if size == CHUNK and _F_SETPIPE_SZ is not None:
        try:
            fcntl.fcntl(fd, _F_SETPIPE_SZ, MAX_CHUNK)
        except OSError:  # over the per-user budget: keep the 64 KiB pipe
            pass
    return min(size * 2, MAX_CHUNK)


_signal_wakeup: tuple[socket.socket, socket.socket] | None = None


def _wake_kernel_on_signals() -> None:
    """Make Kernel → Interrupt reach a cell that is awaiting a child (Jupyter kernels only).

    ipykernel's asyncio loop sleeps in ``epoll`` while a cell awaits; SIGINT may be taken by
    another thread, and then Python runs the interrupt handler only when something else
    wakes the loop, which for a cell awaiting ``sleep 60`` is a minute later. A wake-up fd
    (``signal.set_wakeup_fd``) registered with the loop wakes it at once, so the interrupt
    arrives as cancellation and the kit terminates the children. Done once, only inside a
    kernel, on its main thread, and only when nobody has set a wake-up fd already.
    """
    global _signal_wakeup
    if _signal_wakeup is not None or threading.current_thread() is not threading.main_thread():
        return
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or getattr(shell, "kernel", None) is None:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not on asyncio (trio sets its own wake-up fd)
        return
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    if previous != -1:  # the loop already wakes on signals: leave it as it was
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()
        _signal_wakeup = (reader, writer)  # closed; remembered so we do not try again
        return
    loop.add_reader(reader.fileno(), _drain_wakeup, reader)
    _signal_wakeup = (reader, writer)


def _drain_wakeup(reader: socket.socket) -> None:
    try:
        while reader.recv(4096):
            pass
    except OSError:  # empty (BlockingIOError) or closed
        pass


def close_fd(fd: int) -> None:
    anyio.notify_closing(fd)
    os.close(fd)


def spawn(cmd: Any, *, stdin: Redirect = "devnull", stdout: Redirect = "pipe",
          stderr: Redirect = "pipe", cwd: Any = None, env: Mapping[str, str] | None = None,
          timeline: Timeline | None = None, label: str | None = None,
          span: Span | None = None) -> Child:
    """Start ``cmd`` in a new session with non-blocking pipes; raise SpawnError on failure.

    Synchronous on purpose: ``fork``/``exec`` takes about a millisecond and does not block on
    anything the event loop waits for.
    """
    args = check_command(cmd)
    env = check_env(env)
    cwd = check_cwd(args, cwd)
    raise_fd_limit()
    _wake_kernel_on_signals()
    _end_children_with_us()
    if timeline is not None and span is None:
        span = timeline.add(args, label)
    ours: dict[str, int | None] = {}
    theirs: dict[str, Any] = {}
    try:
        for name, how in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr)):
            if how == "pipe":
                r, w = os.pipe()
                ours[name], theirs[name] = (w, r) if name == "stdin" else (r, w)
            elif how == "devnull":
                theirs[name] = subprocess.DEVNULL
            elif how == "stdout" and name == "stderr":
                theirs[name] = subprocess.STDOUT
            else:
                raise ValueError(f"{name} must be 'pipe' or 'devnull', not {how!r}")
        started = time.monotonic()
        started_at = time.time()
        popen = subprocess.Popen(args, stdin=theirs["stdin"], stdout=theirs["stdout"],
                                 stderr=theirs["stderr"], cwd=cwd, env=env,
                                 start_new_session=True, close_fds=True)
    except BaseException as exc:  # a bad redirect too: close the pipes made so far
        for fd in (*ours.values(), *theirs.values()):
            if isinstance(fd, int) and fd >= 0:
                os.close(fd)
        if span is not None:
            span.outcome = "spawn-error"
        if not isinstance(exc, OSError):
            raise
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            raise fd_limit_error(args, exc) from exc
        raise spawn_error(args, exc, env) from exc
    for fd in theirs.values():
        if isinstance(fd, int) and fd >= 0:
            os.close(fd)
    for fd in ours.values():
        os.set_blocking(fd, False)  # type: ignore[arg-type]
    try:
        exit_watch = _exit.watch(popen.pid, EXIT_STRATEGY)
    except BaseException:  # cannot watch it, so it must not run: unreaped, its group is ours
        os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()
        for fd in ours.values():
            os.close(fd)  # type: ignore[arg-type]
        raise
    if span is not None and timeline is not None:
        span.started = timeline.now()
        span.pid = popen.pid
    return Child(popen, args, exit_watch, ours, span, timeline, started, started_at)


async def read_chunk(fd: int, size: int = CHUNK) -> bytes:
    """The next bytes from a non-blocking pipe, ``b""`` at end of file.

    The checkpoint comes *before* the read, so a cancellation never discards data read.
    """
    await anyio.lowlevel.checkpoint()
    while True:
        try:
            return os.read(fd, size)
        except BlockingIOError:
            await anyio.wait_readable(fd)


def read_available(fd: int) -> list[bytes]:
    """Whatever is already in the pipe, without waiting (used after a child was ended)."""
    chunks = []
    while True:
        try:
            data = os.read(fd, CHUNK)
        except (BlockingIOError, OSError):
            break
        if not data:
            break
        chunks.append(data)
    return chunks


class PipeClosed(BrokenPipeError):
    """The kit closed a child's stdin while a task was still writing to it."""


async def write_all(child: Child, data: bytes | bytearray | memoryview) -> None:
    """Write every byte to the child's stdin; ``BrokenPipeError`` if its reader went away.

    The descriptor is looked up again after every ``await``: while this task slept, another
    one may have closed stdin (leaving the ``open_pipe`` block does), and its *number* may
    already belong to a file opened since. Writing to the old number would put the data in
    that file; instead the write stops with :class:`PipeClosed`, naming the command.
    """
    view = memoryview(data).cast("B")
    fd = child.stdin
    while view:
        await anyio.lowlevel.checkpoint()
        if fd is None or child.stdin != fd:
            raise _closed_while_sending(child, len(data) - len(view), len(data))
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            try:
                await anyio.wait_writable(fd)
            except anyio.ClosedResourceError:  # close_fd() woke us: the fd is gone
                raise _closed_while_sending(child, len(data) - len(view), len(data)) from None
            continue
        view = view[written:]


def _closed_while_sending(child: Child, sent: int, total: int) -> PipeClosed:
    return PipeClosed(
        errno.EPIPE,
        f"the pipe to {format_command(child.args)} was closed while sending ({sent:,} of "
        f"{total:,} bytes written): the block that owns the child ended (it is being "
        "terminated); finish sending before leaving it, or call pipe.wait() first")


def child_of(process: Any) -> Child:
    if isinstance(process, Child):
        return process
    child = getattr(process, "_child", None)
    if isinstance(child, Child):
        return child
    if child is None and getattr(process, "state", None) == "queued":  # a pool's Job
        raise RuntimeError(
            f"{format_command(process.args)} has not started: it is still queued in the "
            "pool, so there is no process to terminate yet; await job.wait_started() "
            "first, or pool.cancel() to drop every queued job")
    raise TypeError(
        "terminate() takes a process the kit started (what open_stream() or open_pipe() "
        f"gives you, or a pool job's child), not {type(process).__name__}"
    )


async def terminate(process: Any, *, grace: float = DEFAULT_GRACE) -> Termination:
    """End a process the kit started, politely, then firmly; never leave anything behind.

    Call it as ``await terminate(stream)`` with what :func:`open_stream` or :func:`open_pipe`
    gave you.

    **Escalation:** SIGTERM goes to the child's whole process group (grandchildren included);
    then we wait until the child exits *or* ``grace`` seconds pass, whichever comes first (the
    original tutorial always slept the full 5 s); then SIGKILL to the group, and a bounded wait
    for the reap. The result says which step ended it and how long it took.

    **Cancellation:** runs shielded, so a cancelled caller cannot leave a half-killed child.

    **The whole session:** SIGCONT follows the SIGTERM (a stopped child could not handle
    it). On Linux, members of the child's session that left its process group (job
    control, ``setpgid``) are signalled too, found in ``/proc``.

    **Out of reach** (see ``docs/guarantees.md``): a grandchild that calls ``setsid()``
    itself is in neither the group nor the session, so nothing links it to the child;
    without ``/proc`` only the group is ended; and if *your* program is killed by SIGKILL,
    no code runs to end its children (SIGTERM and SIGHUP are handled where you have not set
    a handler of your own).

    **Errors:** ``TypeError`` for an object the kit did not start; ``RuntimeError`` for a
    pool job that is still queued (it has no process yet); ``ValueError`` for a negative or
    infinite grace. A child that had already exited is simply reaped (``how == "exited"``).
    """
    grace = check_grace(grace)
    return await child_of(process).terminate(grace)


@atexit.register
def _kill_survivors() -> None:
    """At interpreter exit, no child the kit started outlives us (their groups get SIGKILL,
    and on Linux whatever of their sessions left the group)."""
    since = time.monotonic()
    for child in list(_live.values()):
        if child.signal_group(signal.SIGKILL, record=False):
            for pid in _session_strays(child.pid, since):
                _signal_stray(pid, child.pid, signal.SIGKILL)


def _forget_children() -> None:
    """In a child made by ``os.fork()``: the parent's children are not ours to kill."""
    _live.clear()


os.register_at_fork(after_in_child=_forget_children)

_FATAL_SIGNALS = ("SIGHUP", "SIGTERM")
"""Signals whose default action ends the program: a closed terminal, ``kill``, ``timeout``.
(SIGINT raises KeyboardInterrupt, which unwinds through the kit's cleanup and atexit.)"""
_fatal_handled = False


def _end_children_with_us() -> None:
    """Make a program that dies of SIGHUP or SIGTERM take its kit children along.

    Plain ``subprocess`` children share the program's process group and so die with it
    when the terminal hangs up; kit children lead sessions of their own and would keep
    running. Only where the handler is still the default (so no program's own handling
    changes) do we install one that kills the live children's groups, restores the default
    and sends the signal again: the program still ends by that signal. Main thread only,
    once, at the first spawn.
    """
    global _fatal_handled
    if _fatal_handled or threading.current_thread() is not threading.main_thread():
        return
    _fatal_handled = True
    for name in _FATAL_SIGNALS:
        sig = getattr(signal, name, None)
        try:
            if sig is not None and signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _die_with_children)
        except (OSError, ValueError):  # not allowed here: atexit still covers normal exits
            pass


def _die_with_children(signum: int, frame: Any) -> None:
    _kill_survivors()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
