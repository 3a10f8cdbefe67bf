"""Shared checks for the kit's tests: open descriptors, zombies, and live children."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator

import anyio
import anyio.lowlevel
import pytest

from asyncproc_kit import _process
from asyncproc_kit.testing import session_members

# A grandchild that outlives its parent unless the whole group is ended. It is a separate
# python process (not a shell builtin), so it shows up in session_members().
SLEEPER = f"{sys.executable} -c 'import time; time.sleep(60)'"


FD_DIR = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"  # Linux, macOS


def open_fds() -> set[str]:
    """The descriptors this process has open right now (names in /proc/self/fd)."""
    return set(os.listdir(FD_DIR))


def zombie_children() -> list[int]:
    """Pids of this process's children that have exited but were never reaped."""
    if not os.path.isdir("/proc/self"):  # macOS: ask psutil
        import psutil

        return [p.pid for p in psutil.Process().children() if _is_zombie(p)]
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z" and int(fields[1]) == me:
            found.append(int(entry))
    return found


def _is_zombie(proc) -> bool:
    import psutil

    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def live_kit_children() -> list[int]:
    """Pids of children the kit started and has not reaped yet."""
    return sorted(_process._live)


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """After every test: it left no zombie child and no child the kit has not reaped."""
    zombies, live = set(zombie_children()), set(live_kit_children())
    yield
    assert set(zombie_children()) - zombies == set()
    assert set(live_kit_children()) - live == set()



async def eventually(predicate: Callable[[], object], *, within: float = 15.0) -> None:
    """Poll ``predicate`` until it is true; fail after ``within`` seconds."""
    with anyio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 (process state has no event to wait on)
            await anyio.sleep(0.02)


async def members_at_least(pids: list[int], count: int, *, within: float = 15.0) -> list[int]:
    """Poll until the sessions of ``pids`` hold at least ``count`` live processes; return them."""
    await eventually(lambda: len(session_members(pids)) >= count, within=within)
    return session_members(pids)


class FakeClock:
    """Seconds that move only when the test says so (``advance`` or setting ``now``)."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds



class FileReopener:
    """A task body that keeps opening, awaiting and closing files in ``folder``.

    Each ``open`` takes the lowest free descriptor number, so the moment the kit closes a
    pipe, one of these files gets its number: any byte written to the old number afterwards
    lands in a file, and ``written()`` counts it.
    """

    def __init__(self, folder) -> None:
        self.folder = folder
        self.stop = anyio.Event()

    async def __call__(self) -> None:
        n = 0
        while not self.stop.is_set():
            with open(self.folder / f"reopened{n % 4}", "ab") as file:  # noqa: ASYNC230
                await anyio.lowlevel.checkpoint()
                file.flush()
            n += 1

    def written(self) -> int:
        return sum(path.stat().st_size for path in self.folder.glob("reopened*"))


INTERRUPTED = """
import sys
import anyio
from asyncproc_kit import *
from asyncproc_kit.testing import SLEEP

async def main():
{body}

try:
    anyio.run(main, backend=sys.argv[1])
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.exit(130)
except BaseException as exc:
    print(repr(exc), flush=True)
    sys.exit(1)
"""


def interrupted(body: str, backend: str) -> tuple[int, str, list[int]]:
    """Run a program whose ``main()`` is ``body`` (indented by 4), press Ctrl-C (SIGINT)
    once it has a child, and return (its exit code, what it printed, the children it had).

    ``except KeyboardInterrupt`` around ``anyio.run`` must catch it, on both backends.
    """
    import subprocess
    import textwrap
    import time

    from asyncproc_kit.testing import descendants

    code = INTERRUPTED.format(body=textwrap.indent(textwrap.dedent(body), "    "))
    owner = subprocess.Popen([sys.executable, "-c", code, backend],
                             stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (children := descendants(owner.pid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # inside the await by now
        owner.send_signal(2)
        out, _ = owner.communicate(timeout=30)
        return owner.returncode, out.strip(), children
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.communicate()
