"""terminate() and the escalation every cleanup path uses: SIGTERM, grace, SIGKILL."""

from __future__ import annotations

import os
import signal
import sys
import time

import anyio
import pytest
from helpers import eventually, members_at_least, nothing_left_behind, zombie_children  # noqa: F401

from asyncproc_kit import Termination, Timeline, open_pipe, open_stream, run, terminate
from asyncproc_kit.testing import (
    IGNORE_SIGTERM,
    SLEEP,
    SPAWN_GRANDCHILDREN,
    python,
    session_members,
)

pytestmark = pytest.mark.anyio

# A grandchild that ignores SIGTERM while its parent (a shell) dies of it.
STUBBORN_GRANDCHILD = ["sh", "-c", (
    f"{sys.executable} -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print(\"ready\", flush=True); time.sleep(60)' & wait"
)]

# Prints ready, then sleeps; dies of SIGTERM like most programs.
READY_THEN_SLEEP = python("import time; print('ready', flush=True); time.sleep(60)")


async def _ready(stream) -> None:
    """Wait for the child's ``ready`` line (it has set up its signal handling by then)."""
    async for line in stream:
        assert line.text == "ready"
        return
    pytest.fail(f"the child ended without saying ready ({stream.returncode})")


async def test_child_ignoring_sigterm_is_killed_right_after_grace() -> None:
    """how == 'SIGKILL' and elapsed ~ grace for a child that ignores SIGTERM."""
    tl = Timeline()
    async with open_stream(IGNORE_SIGTERM(60), timeline=tl) as stream:
        await _ready(stream)
        ended = await terminate(stream, grace=0.5)
    assert isinstance(ended, Termination)
    assert ended.how == "SIGKILL"
    assert ended.returncode == -signal.SIGKILL
    assert 0.45 <= ended.elapsed < 0.5 + 0.75
    assert [name for _, name in tl.spans[0].events] == ["SIGTERM", "SIGKILL"]
    assert "SIGKILL" in str(ended)


async def test_child_exiting_on_sigterm_is_not_waited_for_the_whole_grace() -> None:
    """A child that dies of SIGTERM ends the escalation at once, not after grace."""
    async with open_stream(READY_THEN_SLEEP) as stream:
        await _ready(stream)
        begun = time.monotonic()
        ended = await terminate(stream, grace=5.0)
    assert time.monotonic() - begun < 1.0
    assert ended.how == "SIGTERM"
    assert ended.returncode == -signal.SIGTERM
    assert ended.elapsed < 1.0


async def test_terminating_an_exited_child_just_reaps_it() -> None:
    """A child that already exited is reported as 'exited' with its own exit code."""
    async with open_pipe(python("import sys; sys.exit(5)")) as pipe:
        assert await pipe.receive_line() is None
        await eventually(lambda: pipe.returncode is not None)
        ended = await terminate(pipe)
    assert (ended.how, ended.returncode, ended.elapsed) == ("exited", 5, 0.0)


async def test_terminate_ends_grandchildren() -> None:
    """terminate() signals the whole group: no member of the session survives it."""
    async with open_stream(SPAWN_GRANDCHILDREN(3)) as stream:
        await _ready(stream)
        await members_at_least([stream.pid], 4)
        ended = await terminate(stream, grace=2.0)
        assert session_members([stream.pid]) == []
    assert ended.how == "SIGTERM"


async def test_grandchild_ignoring_sigterm_dies_with_its_parent() -> None:
    """When the leader dies of SIGTERM, a grandchild ignoring SIGTERM is SIGKILLed too."""
    async with open_stream(STUBBORN_GRANDCHILD) as stream:
        await _ready(stream)
        ended = await terminate(stream, grace=5.0)
        assert session_members([stream.pid]) == []
    assert ended.how == "SIGTERM"
    assert ended.elapsed < 2.0  # the shell died at once; the grandchild did not hold us up


async def test_terminate_is_shielded_from_the_callers_cancellation() -> None:
    """A deadline that expires during terminate() does not cut the escalation short."""
    async with open_stream(IGNORE_SIGTERM(60)) as stream:
        await _ready(stream)
        begun = time.monotonic()
        with anyio.move_on_after(0.1):
            await terminate(stream, grace=0.6)
        assert time.monotonic() - begun >= 0.55
        assert stream.returncode == -signal.SIGKILL


async def test_leaving_open_stream_early_escalates_after_grace() -> None:
    """Leaving the block with a SIGTERM-ignoring child kills it after grace, not later."""
    begun = time.monotonic()
    async with open_stream(IGNORE_SIGTERM(60), grace=0.5) as stream:
        await _ready(stream)
        left = time.monotonic()
    assert 0.45 <= time.monotonic() - left < 0.5 + 0.75
    assert stream.returncode == -signal.SIGKILL
    assert time.monotonic() - begun < 10


async def test_terminate_rejects_foreign_objects_and_bad_grace() -> None:
    """terminate() takes only what the kit started, and grace must be >= 0."""
    with pytest.raises(TypeError, match="process the kit started"):
        await terminate(object())
    async with open_stream(SLEEP(60)) as stream:
        with pytest.raises(ValueError, match="grace"):
            await terminate(stream, grace=-1)
        with pytest.raises(TypeError, match="grace"):
            await terminate(stream, grace="1")  # type: ignore[arg-type]


async def test_no_zombie_after_many_kinds_of_ending() -> None:
    """After success, failure, timeout, cancellation and terminate() no child is a zombie."""
    await run(SLEEP(0))
    await run(python("import sys; sys.exit(1)"), check=False)
    with anyio.move_on_after(0.3):
        await run(SLEEP(60))
    with pytest.raises(TimeoutError):
        await run(SLEEP(60), timeout=0.3)
    async with open_stream(SLEEP(60)) as stream:
        await terminate(stream, grace=1)
    assert zombie_children() == []


# -- the whole session (Linux) ------------------------------------------------------------------

def _in_own_group(ignore_sigterm: bool = False) -> list[str]:
    """A child whose grandchild leaves the process group (``process_group=0``, as job
    control and Go's Setpgid do) but stays in the child's session; prints ready."""
    ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN); " if ignore_sigterm else ""
    grandchild = f"import signal, time; {ignore}time.sleep(60)"
    return python(f"""
        import os, subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-c", {grandchild!r}], process_group=0)
        while os.getpgid(p.pid) == os.getpgid(0):
            time.sleep(0.01)
        time.sleep(0.2)  # it has installed its signal handling by now
        print("ready", flush=True)
        p.wait()
    """)


def _kill_all(sessions: list[int]) -> None:
    for pid in session_members(sessions):  # only after a failure: leave nothing behind
        os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the session needs /proc")
@pytest.mark.parametrize("ignore_sigterm", [False, True])
async def test_terminate_ends_a_grandchild_in_another_process_group(ignore_sigterm) -> None:
    """A grandchild in its own process group but the child's session is ended too: SIGTERM
    with the group, SIGKILL once the child is gone if it ignored SIGTERM."""
    sessions: list[int] = []
    try:
        async with open_stream(_in_own_group(ignore_sigterm)) as stream:
            sessions.append(stream.pid)
            await _ready(stream)
            assert len(session_members([stream.pid])) == 2
            ended = await terminate(stream, grace=1.0)
            assert session_members([stream.pid]) == []
        assert ended.how == "SIGTERM"
    finally:
        _kill_all(sessions)


# -- when the program itself ends ----------------------------------------------------------------

# A program that starts a kit child, prints its pid, then waits to be ended from outside.
OWNER = """
import sys, time
import anyio
from asyncproc_kit import open_stream
from asyncproc_kit.testing import SLEEP

async def main():
    async with open_stream(SLEEP(60)) as stream:
        print(stream.pid, flush=True)
        {then}

anyio.run(main, backend=sys.argv[1])
"""


def _owner(then: str, backend: str):
    import subprocess

    return subprocess.Popen([sys.executable, "-c", OWNER.format(then=then), backend],
                            stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_program_ended_by_a_signal_takes_its_kit_children_along(backend, sig) -> None:
    """SIGTERM (kill, timeout) or SIGHUP (the terminal closed) ends the program as before,
    by that signal, and its kit children (in sessions of their own) end with it."""
    owner = _owner("await anyio.sleep(60)", backend)
    child = int(owner.stdout.readline())
    try:
        owner.send_signal(sig)
        assert owner.wait(timeout=30) == -sig
        deadline = time.monotonic() + 15
        while session_members([child]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert session_members([child]) == []
    finally:
        owner.kill()
        owner.wait()
        owner.stdout.close()
        _kill_all([child])


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_forked_child_exiting_does_not_kill_the_parents_kit_children(backend) -> None:
    """A child made with os.fork() inherits the registry of live kit children; when it exits
    normally its exit hook must not kill the parent's children."""
    owner = _owner("""import atexit, os
        pid = os.fork()
        if pid == 0:  # exit as a normal exit does (its atexit hooks run), without unwinding
            atexit._run_exitfuncs()  # the event loop it shares with the parent
            os._exit(0)
        os.waitpid(pid, 0)
        await anyio.sleep(0.5)
        print("alive" if stream.returncode is None and not stream._child.has_exited()
              else "killed", flush=True)""", backend)
    child = int(owner.stdout.readline())
    try:
        assert owner.stdout.readline().strip() == "alive"
        assert owner.wait(timeout=30) == 0
    finally:
        owner.kill()
        owner.wait()
        owner.stdout.close()
        _kill_all([child])


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


async def test_a_stopped_child_gets_sigcont_and_ends_by_sigterm() -> None:
    """A stopped child (SIGSTOP; the kernel drops a terminal's SIGTSTP for a session
    leader like ours) cannot run its SIGTERM handler until it is continued: terminate()
    sends SIGCONT after SIGTERM, so it ends politely, not by SIGKILL after the grace."""
    graceful = python("""
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
        print("ready", flush=True)
        time.sleep(60)
    """)
    async with open_stream(graceful) as stream:
        await _ready(stream)
        os.kill(stream.pid, signal.SIGSTOP)
        await eventually(lambda: _state(stream.pid) == "T")
        ended = await terminate(stream, grace=5.0)
    assert (ended.how, ended.returncode) == ("SIGTERM", 7)
    assert ended.elapsed < 4.0
