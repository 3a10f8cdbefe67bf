"""How we learn that a child exited, *without reaping it*.

The kit signals a child's whole process group, and a group id is safe to signal only while
its leader is an unreaped zombie at worst: until we reap it, the kernel cannot give that pid
(and so that group id) to anyone else. So the kit first *watches* for the exit, then sends
the group a last SIGKILL for any leftovers, and only then reaps. Each operating system offers
a different way to watch; each is a named strategy here:

``pidfd``
    Linux 5.3+ (Python 3.9+): ``os.pidfd_open(pid)`` gives a descriptor that becomes
    readable when the process exits. The event loop waits on it like on a pipe.
``kqueue``
    macOS and the BSDs: a kqueue with an ``EVFILT_PROC``/``NOTE_EXIT`` filter on the pid;
    the kqueue's own descriptor becomes readable when the process exits.
``waitid``
    ``os.waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT)``, asked on a short backoff (every
    50 ms at most), says whether the child has exited and leaves the zombie in place (Linux
    and the BSDs; macOS only from Python 3.13).
``waitid-ctypes``
    The same system call through ``ctypes``, for Pythons that do not expose it (macOS with
    Python 3.11 and 3.12). It reads ``siginfo_t`` by hand, so it knows each platform's
    layout and constants (Linux and macOS) and checks the pid it reads back.

The first one that works here is used (in that order); if a per-child descriptor cannot be
opened (an old kernel, or out of descriptors), that child falls back to waitid.
``ASYNCPROC_KIT_EXIT_STRATEGY=<name>`` in the environment forces one strategy: ``make test``
runs the kit's core a second time on ``waitid-ctypes`` that way.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import anyio

ENV_VAR = "ASYNCPROC_KIT_EXIT_STRATEGY"


class ExitWatch(Protocol):
    """One child's exit, watched: ``await wait()`` and ``exited()`` never reap it."""

    strategy: str

    async def wait(self) -> None:
        """Return once the child has exited (it stays an unreaped zombie)."""

    def exited(self) -> bool:
        """True once the child has exited (or is no longer ours); never blocks."""

    def close(self) -> None:
        """Release what the watch holds (a descriptor); call it after the reap."""


# -- pidfd (Linux) ----------------------------------------------------------------------------

class _PidfdWatch:
    strategy = "pidfd"

    def __init__(self, pid: int) -> None:
        self.fd: int | None = os.pidfd_open(pid)

    def exited(self) -> bool:
        if self.fd is None:
            return True
        poller = select.poll()  # not select(): descriptors above 1023 are common here
        poller.register(self.fd, select.POLLIN)
        return bool(poller.poll(0))

    async def wait(self) -> None:
        while self.fd is not None and not self.exited():
            await anyio.wait_readable(self.fd)

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            anyio.notify_closing(fd)
            os.close(fd)


# -- kqueue (macOS, BSD) ----------------------------------------------------------------------

class _KqueueWatch:
    strategy = "kqueue"

    def __init__(self, pid: int) -> None:
        self.kq: select.kqueue | None = select.kqueue()
        self._exited = False
        note_exit = getattr(select, "KQ_NOTE_EXIT", 0x80000000)
        event = select.kevent(pid, filter=select.KQ_FILTER_PROC,
                              flags=select.KQ_EV_ADD | select.KQ_EV_ONESHOT, fflags=note_exit)
        try:
            self.kq.control([event], 0, 0)
        except ProcessLookupError:  # already a zombie, or exiting: the kernel lets it go
            self._exited = True
        except BaseException:
            self.close()
            raise

    def exited(self) -> bool:
        if not self._exited and self.kq is not None:
            self._exited = bool(self.kq.control(None, 1, 0))  # the one-shot exit event
        return self._exited or self.kq is None

    async def wait(self) -> None:
        while not self.exited():
            assert self.kq is not None
            await anyio.wait_readable(self.kq.fileno())

    def close(self) -> None:
        if self.kq is not None:
            kq, self.kq = self.kq, None
            anyio.notify_closing(kq.fileno())
            kq.close()


# -- waitid, polled (os.waitid, or libc's through ctypes) ------------------------------------

POLL_FIRST = 0.001  # seconds: a short child is seen almost at once
POLL_MAX = 0.05  # a long one costs one cheap system call per child every 50 ms


class _WaitidWatch:
    """Ask ``waitid(WNOHANG | WNOWAIT)`` on a backoff, from the event loop: no thread, no
    descriptor.

    Why not block in ``waitid`` in a thread per child? Every exit of *any* child wakes every
    thread blocked in ``waitid`` (one wait queue per parent), so 200 children ending together
    cost 40 000 wake-ups, and cancelling them took twice as long as with a pidfd. Polling is
    bounded: the exit is seen at most 50 ms late.

    ``peek(pid, block)`` is True once ``pid`` has exited; it raises ChildProcessError when
    ``pid`` is not (or no longer) our child, which counts as exited.
    """

    def __init__(self, pid: int, strategy: str, peek: Callable[[int, bool], bool]) -> None:
        self.pid = pid
        self.strategy = strategy
        self._peek = peek
        self._exited = False

    def exited(self) -> bool:
        if not self._exited:
            try:
                self._exited = self._peek(self.pid, False)
            except ChildProcessError:
                self._exited = True
        return self._exited

    async def wait(self) -> None:
        delay = POLL_FIRST
        while not self.exited():
            await anyio.sleep(delay)
            delay = min(delay * 2, POLL_MAX)

    def close(self) -> None:
        pass


def _os_waitid(pid: int, block: bool) -> bool:
    options = os.WEXITED | os.WNOWAIT | (0 if block else os.WNOHANG)
    return os.waitid(os.P_PID, pid, options) is not None


@dataclass(frozen=True)
class SiginfoLayout:
    """What ``waitid`` needs on one platform: its constants, and where ``siginfo_t`` keeps
    ``si_pid`` (``si_signo`` is the first int everywhere)."""

    P_PID: int
    WEXITED: int
    WNOHANG: int
    WNOWAIT: int
    si_pid_offset: int


def _union_offset() -> int:
    # Linux: three ints (si_signo, si_errno, si_code), then a union that holds pointers, so
    # it starts at 16 on 64-bit machines and at 12 on 32-bit ones.
    align = ctypes.alignment(ctypes.c_void_p)
    return (3 * ctypes.sizeof(ctypes.c_int) + align - 1) // align * align


LAYOUTS = {
    # <bits/waitflags.h>, <bits/types/siginfo_t.h>
    "linux": SiginfoLayout(P_PID=1, WEXITED=4, WNOHANG=1, WNOWAIT=0x01000000,
                           si_pid_offset=_union_offset()),
    # <sys/wait.h>, <sys/signal.h>: struct __siginfo { int si_signo, si_errno, si_code;
    # pid_t si_pid; ... }
    "darwin": SiginfoLayout(P_PID=1, WEXITED=4, WNOHANG=1, WNOWAIT=0x20, si_pid_offset=12),
}
SIGINFO_SIZE = 256  # larger than siginfo_t on every platform (Linux 128, macOS 104 bytes)

_libc_waitid = None


def _libc() -> Callable[..., int] | None:
    global _libc_waitid
    if _libc_waitid is None:
        try:
            function = ctypes.CDLL(None, use_errno=True).waitid
        except (OSError, AttributeError):
            return None
        function.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_void_p, ctypes.c_int]
        function.restype = ctypes.c_int
        _libc_waitid = function
    return _libc_waitid


def ctypes_waitid(pid: int, block: bool) -> bool:
    """libc ``waitid(P_PID, pid, WEXITED | WNOWAIT [| WNOHANG])``: has ``pid`` exited?"""
    layout = LAYOUTS[sys.platform]
    waitid = _libc()
    assert waitid is not None
    options = layout.WEXITED | layout.WNOWAIT | (0 if block else layout.WNOHANG)
    info = ctypes.create_string_buffer(SIGINFO_SIZE)  # zeroed: si_pid stays 0 if none exited
    while waitid(layout.P_PID, pid, info, options) != 0:  # the GIL is released meanwhile
        code = ctypes.get_errno()
        if code == errno.EINTR:
            continue
        if code == errno.ECHILD:
            raise ChildProcessError(code, f"pid {pid} is not a child of this process")
        raise OSError(code, f"waitid(pid {pid}): {os.strerror(code)}")
    signo = int.from_bytes(info.raw[0:4], sys.byteorder, signed=True)
    got = int.from_bytes(info.raw[layout.si_pid_offset:layout.si_pid_offset + 4],
                         sys.byteorder, signed=True)
    if got == 0 and signo == 0 and not block:
        return False  # WNOHANG: still running
    if got != pid or signo != signal.SIGCHLD:
        raise RuntimeError(
            f"waitid for pid {pid} returned si_signo={signo} and si_pid={got}: the siginfo_t "
            f"layout assumed for {sys.platform} is wrong; set {ENV_VAR}=waitid to use "
            "os.waitid instead (Python 3.13+ on macOS)")
    return True


# -- choosing ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Strategy:
    """A named way to watch exits: where it runs, and how to watch one pid with it."""

    name: str
    where: str
    available: Callable[[], bool]
    watch: Callable[[int], ExitWatch]


def _has_kqueue() -> bool:
    return hasattr(select, "kqueue") and hasattr(select, "KQ_FILTER_PROC")


STRATEGIES = (
    Strategy("pidfd", "Linux 5.3+", lambda: hasattr(os, "pidfd_open"), _PidfdWatch),
    Strategy("kqueue", "macOS, FreeBSD and the other BSDs", _has_kqueue, _KqueueWatch),
    Strategy("waitid", "Linux and the BSDs; macOS from Python 3.13",
             lambda: hasattr(os, "waitid") and hasattr(os, "WNOWAIT"),
             lambda pid: _WaitidWatch(pid, "waitid", _os_waitid)),
    Strategy("waitid-ctypes", "Linux and macOS, any Python",
             lambda: sys.platform in LAYOUTS and _libc() is not None,
             lambda pid: _WaitidWatch(pid, "waitid-ctypes", ctypes_waitid)),
)
BY_NAME = {strategy.name: strategy for strategy in STRATEGIES}


def available() -> list[str]:
    """The names of the strategies that can run here, best first."""
    return [s.name for s in STRATEGIES if s.available()]


def choose(forced: str | None = None) -> Strategy:
    """The strategy to use: ``forced`` (or ``$ASYNCPROC_KIT_EXIT_STRATEGY``) if given, else
    the first available one. A name that is unknown or cannot run here is a clear error."""
    name = forced if forced is not None else os.environ.get(ENV_VAR, "").strip()
    here = available()
    if not name:
        if not here:
            raise RuntimeError(
                f"cannot watch child processes on {sys.platform}: none of "
                f"{', '.join(BY_NAME)} works here (the kit supports Linux and macOS)")
        return BY_NAME[here[0]]
    if name not in BY_NAME:
        raise ValueError(f"{ENV_VAR}={name!r} is not an exit strategy; use one of "
                         f"{', '.join(BY_NAME)}, or unset it")
    if name not in here:
        raise ValueError(f"{ENV_VAR}={name!r} cannot run here ({BY_NAME[name].where} only); "
                         f"this system has {', '.join(here) or 'none'}; or unset it")
    return BY_NAME[name]


def watch(pid: int, strategy: Strategy) -> ExitWatch:
    """Start watching ``pid`` (a child just spawned) with ``strategy``, falling back to
    waitid if its descriptor cannot be opened. Never raises for a live child."""
    try:
        return strategy.watch(pid)
    except OSError:  # old kernel (ENOSYS) or out of descriptors: waitid needs none
        for fallback in (BY_NAME["waitid"], BY_NAME["waitid-ctypes"]):
            if fallback.available():
                return fallback.watch(pid)
        raise


def peek(pid: int) -> bool:
    """Has ``pid``, a child of ours, exited without being reaped? Never blocks, never reaps;
    ChildProcessError if it is not (or no longer) our child. Uses ``waitid`` (or its ctypes
    twin), which can look at a pid without holding anything open for it."""
    if BY_NAME["waitid"].available():
        return _os_waitid(pid, False)
    if BY_NAME["waitid-ctypes"].available():
        return ctypes_waitid(pid, False)
    raise RuntimeError(f"no waitid on {sys.platform}: cannot look at pid {pid} without "
                       "reaping it")
