"""Exit detection (asyncproc_kit._exit): every strategy sees an exit without reaping.

Each strategy that can run on this machine is tried on real children; the others are
skipped with the platform that runs them (kqueue runs in the macOS CI jobs). The whole kit
suite also runs with pidfd and os.waitid hidden (``make test``, see tests/conftest.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest
from helpers import eventually, nothing_left_behind  # noqa: F401

import asyncproc_kit
from asyncproc_kit import ProcessTimeout, Timeline, _exit, _process, open_pipe, run, terminate
from asyncproc_kit.testing import IGNORE_SIGTERM, SPAWN_GRANDCHILDREN, python, session_members

KIT_ROOT = str(Path(asyncproc_kit.__file__).parent.parent)
WAIT_FOR_EOF = [sys.executable, "-c", "import sys; sys.stdin.read()"]


@pytest.fixture(params=[s.name for s in _exit.STRATEGIES])
def strategy(request: pytest.FixtureRequest) -> _exit.Strategy:
    chosen = _exit.BY_NAME[request.param]
    if not chosen.available():
        pytest.skip(f"{chosen.name} runs on {chosen.where}, not here")
    return chosen


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A child (leading its own session) that runs until its stdin is closed."""
    proc = subprocess.Popen(WAIT_FOR_EOF, stdin=subprocess.PIPE, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait()


def is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def end(proc: subprocess.Popen[bytes]) -> None:
    proc.stdin.close()  # type: ignore[union-attr]  # end of input: the child exits 0


# -- each strategy on a bare child ------------------------------------------------------------


@pytest.mark.anyio
async def test_sees_the_exit_and_leaves_the_zombie(strategy, child) -> None:
    """Not exited while it runs; after it exits, wait() returns and the zombie is still ours,
    so its group id cannot have been reused; the reap then gives the real status."""
    watch = _exit.watch(child.pid, strategy)
    try:
        assert watch.strategy == strategy.name
        assert not watch.exited()
        end(child)
        with anyio.fail_after(15):
            await watch.wait()
        assert watch.exited()
        assert watch.exited()  # asking again reaps nothing either
        assert is_zombie(child.pid)
        os.killpg(child.pid, 0)  # the group id still names our (zombie) leader's group
    finally:
        watch.close()
    assert child.wait() == 0


@pytest.mark.anyio
async def test_a_cancelled_wait_can_be_waited_again(strategy, child) -> None:
    """Cancelling wait() leaves the child running and the watch usable."""
    watch = _exit.watch(child.pid, strategy)
    try:
        with anyio.move_on_after(0.2) as scope:
            await watch.wait()
        assert scope.cancelled_caught
        assert not watch.exited()
        assert not is_zombie(child.pid)
        child.send_signal(signal.SIGKILL)
        with anyio.fail_after(15):
            await watch.wait()
        assert is_zombie(child.pid)
    finally:
        watch.close()
    assert child.wait() == -signal.SIGKILL


@pytest.mark.anyio
async def test_a_child_that_exited_before_the_watch_began(strategy, child) -> None:
    """A child already a zombie when the watch starts (kqueue: ESRCH) counts as exited."""
    end(child)
    await eventually(lambda: is_zombie(child.pid))
    watch = _exit.watch(child.pid, strategy)
    try:
        assert watch.exited()
        with anyio.fail_after(15):
            await watch.wait()
        assert is_zombie(child.pid)
    finally:
        watch.close()


# -- each strategy under the whole kit --------------------------------------------------------


@pytest.fixture
def kit_strategy(strategy, monkeypatch: pytest.MonkeyPatch) -> _exit.Strategy:
    monkeypatch.setattr(_process, "EXIT_STRATEGY", strategy)
    return strategy


@pytest.fixture
def killpg_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, bool]]:
    """Every os.killpg the kit makes: (group, signal, was the leader still our unreaped
    child at that moment)."""
    calls: list[tuple[int, int, bool]] = []
    real = os.killpg

    def recording(pgid: int, sig: int) -> None:
        try:
            _exit.peek(pgid)
            unreaped = True
        except ChildProcessError:
            unreaped = False
        calls.append((pgid, sig, unreaped))
        real(pgid, sig)

    monkeypatch.setattr(_process.os, "killpg", recording)
    return calls


@pytest.mark.anyio
async def test_the_kit_on_each_strategy(kit_strategy, killpg_calls) -> None:
    """run, a timeout that must kill grandchildren, a conversation, and SIGKILL escalation;
    no group is ever signalled (other than probed with signal 0) once its leader is reaped."""
    assert (await run(python("print('hi')"))).stdout == "hi\n"
    timeline = Timeline()
    with pytest.raises(ProcessTimeout):
        await run(SPAWN_GRANDCHILDREN(2, 60), timeout=0.5, grace=1, timeline=timeline)
    assert session_members([timeline.spans[0].pid]) == []
    async with open_pipe(IGNORE_SIGTERM(60)) as pipe:
        assert await pipe.receive_line() == "ready"
        assert not pipe._child.has_exited()
        ended = await terminate(pipe, grace=0.2)
        assert (ended.how, ended.returncode) == ("SIGKILL", -signal.SIGKILL)
    signalled = [(pgid, sig) for pgid, sig, unreaped in killpg_calls if sig and not unreaped]
    assert signalled == []
    assert {sig for _pgid, sig, _ in killpg_calls} >= {signal.SIGTERM, signal.SIGKILL}


# -- choosing ---------------------------------------------------------------------------------


def test_the_first_available_strategy_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_exit.ENV_VAR, raising=False)
    assert _exit.choose().name == _exit.available()[0]
    assert set(_exit.available()) <= set(_exit.BY_NAME)


def test_without_pidfd_and_waitid_another_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    """What macOS with Python 3.11 or 3.12 has: kqueue there, libc's waitid on Linux."""
    monkeypatch.delenv(_exit.ENV_VAR, raising=False)
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    monkeypatch.delattr(os, "waitid", raising=False)
    expected = "kqueue" if _exit.BY_NAME["kqueue"].available() else "waitid-ctypes"
    assert _exit.choose().name == expected


def test_a_forced_strategy_is_used_or_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    here = _exit.available()
    monkeypatch.setenv(_exit.ENV_VAR, here[-1])
    assert _exit.choose().name == here[-1]
    monkeypatch.setenv(_exit.ENV_VAR, "epoll")
    with pytest.raises(ValueError, match="'epoll' is not an exit strategy; use one of pidfd"):
        _exit.choose()
    missing = [name for name in _exit.BY_NAME if name not in here]
    if missing:
        monkeypatch.setenv(_exit.ENV_VAR, missing[0])
        with pytest.raises(ValueError, match=f"{missing[0]}' cannot run here .* only"):
            _exit.choose()


def test_a_descriptor_that_cannot_be_opened_falls_back_to_waitid(child) -> None:
    """pidfd_open failing (ENOSYS on an old kernel, EMFILE) must not lose the child."""
    def refuse(pid: int) -> _exit.ExitWatch:
        raise OSError(24, "Too many open files")

    broken = _exit.Strategy("broken", "nowhere", lambda: True, refuse)
    watch = _exit.watch(child.pid, broken)
    assert watch.strategy in ("waitid", "waitid-ctypes")
    assert not watch.exited()


# -- libc's waitid through ctypes -------------------------------------------------------------


needs_ctypes = pytest.mark.skipif(not _exit.BY_NAME["waitid-ctypes"].available(),
                                  reason="waitid-ctypes runs on Linux and macOS")


@needs_ctypes
@pytest.mark.skipif(not hasattr(os, "WNOWAIT"), reason="os has no waitid constants here")
def test_the_layout_constants_match_the_system() -> None:
    layout = _exit.LAYOUTS[sys.platform]
    assert (layout.P_PID, layout.WEXITED, layout.WNOHANG, layout.WNOWAIT) == (
        os.P_PID, os.WEXITED, os.WNOHANG, os.WNOWAIT)


@needs_ctypes
def test_a_wrong_siginfo_layout_is_caught_not_trusted(child, monkeypatch) -> None:
    """The pid read back must be the pid asked for: a wrong offset is an error that says
    what to do, never a silent "exited"."""
    end(child)
    assert _exit.ctypes_waitid(child.pid, True)
    wrong = _exit.LAYOUTS[sys.platform]
    monkeypatch.setitem(_exit.LAYOUTS, sys.platform, _exit.SiginfoLayout(
        wrong.P_PID, wrong.WEXITED, wrong.WNOHANG, wrong.WNOWAIT, wrong.si_pid_offset + 4))
    with pytest.raises(RuntimeError, match=r"siginfo_t layout assumed .* is wrong"):
        _exit.ctypes_waitid(child.pid, False)


@needs_ctypes
def test_ctypes_waitid_on_a_pid_that_is_not_our_child() -> None:
    with pytest.raises(ChildProcessError, match="not a child"):
        _exit.ctypes_waitid(os.getpid(), False)


# -- macOS with Python 3.11, simulated: no pidfd_open, no waitid ------------------------------

WITHOUT_PIDFD_AND_WAITID = """
import os, sys
del os.pidfd_open, os.waitid
import anyio
from asyncproc_kit import ProcessTimeout, Timeline, _process, open_stream, run
from asyncproc_kit.exercises._env import _spawn_and_reap
from asyncproc_kit.testing import PRINT_LINES, SPAWN_GRANDCHILDREN, session_members

async def main():
    assert (await run(["echo", "hi"])).stdout == "hi\\n"
    async with open_stream(PRINT_LINES(3)) as stream:
        lines = [line.text async for line in stream]
    assert lines == ["line 0", "line 1", "line 2"], lines
    timeline = Timeline()
    try:
        await run(SPAWN_GRANDCHILDREN(2, 60), timeout=0.5, grace=1, timeline=timeline)
    except ProcessTimeout:
        assert session_members([timeline.spans[0].pid]) == [], "grandchildren survived"
    else:
        raise AssertionError("no timeout")
    check = await _spawn_and_reap()
    assert check.ok, check
    print(sys.argv[1], _process.EXIT_STRATEGY.name, "ok")

anyio.run(main, backend=sys.argv[1])
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_python_without_pidfd_and_waitid_runs_everything(backend: str) -> None:
    """Reproduces the macOS 3.11/3.12 failure (AttributeError: os.waitid) on Linux."""
    env = {k: v for k, v in os.environ.items() if k != _exit.ENV_VAR}
    env["PYTHONPATH"] = KIT_ROOT
    done = subprocess.run([sys.executable, "-c", WITHOUT_PIDFD_AND_WAITID, backend], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    expected = "kqueue" if _exit.BY_NAME["kqueue"].available() else "waitid-ctypes"
    assert done.stdout == f"{backend} {expected} ok\n"
