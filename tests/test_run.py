"""run(): exit status, input and output, timeouts and cancellation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import anyio
import pytest
from helpers import (  # noqa: F401
    SLEEPER,
    FileReopener,
    eventually,
    interrupted,
    members_at_least,
    nothing_left_behind,
)

from asyncproc_kit import ProcessFailed, ProcessResult, ProcessTimeout, Timeline, run
from asyncproc_kit.testing import (
    CAT,
    EXIT,
    IGNORE_SIGTERM,
    PRINT_LINES,
    SLEEP,
    SPAWN_GRANDCHILDREN,
    python,
    session_members,
)

pytestmark = pytest.mark.anyio


# -- exit status ------------------------------------------------------------------------------


async def test_success_returns_result_shaped_like_completed_process() -> None:
    """A zero exit gives a ProcessResult with text output, pid and consistent times."""
    before = time.time()
    result = await run(PRINT_LINES(3))
    assert isinstance(result, ProcessResult)
    assert result.returncode == 0
    assert result.stdout == "line 0\nline 1\nline 2\n"
    assert result.stderr == ""
    assert result.args == PRINT_LINES(3)
    assert result.pid > 0
    assert before <= result.started <= result.ended <= time.time()
    assert 0 < result.duration < 10


async def test_nonzero_exit_raises_process_failed_with_stderr_tail() -> None:
    """check=True turns exit code 3 into ProcessFailed carrying the result and stderr."""
    with pytest.raises(ProcessFailed) as caught:
        await run(EXIT(3, "disk on fire\n"))
    error = caught.value
    assert isinstance(error, subprocess.CalledProcessError)
    assert error.returncode == 3
    assert error.result.stderr == "disk on fire\n"
    assert "exit code 3" in str(error)
    assert "disk on fire" in str(error)


async def test_check_false_returns_nonzero_result() -> None:
    """check=False hands back the result of a failed command instead of raising."""
    result = await run(EXIT(7, "oops"), check=False)
    assert result.returncode == 7
    assert result.stderr == "oops"
    with pytest.raises(ProcessFailed):
        result.check_returncode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT])
async def test_signal_death_is_negative_returncode(sig: signal.Signals) -> None:
    """A child killed by a signal reports -signal, and ProcessFailed names the signal."""
    cmd = python(f"import os, signal; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                 f"os.kill(os.getpid(), {int(sig)})")
    result = await run(cmd, check=False)
    assert result.returncode == -sig
    with pytest.raises(ProcessFailed, match=f"killed by {sig.name}"):
        await run(cmd)


# -- input and output -------------------------------------------------------------------------


async def test_stdin_is_closed_by_default() -> None:
    """Without input=, a child reading stdin sees end of file at once instead of hanging."""
    with anyio.fail_after(10):
        result = await run(python("import sys; print(repr(sys.stdin.buffer.read()))"))
    assert result.stdout == "b''\n"


async def test_input_and_large_output_do_not_deadlock() -> None:
    """10 MiB written to CAT comes back byte-exact while it is still being written."""
    data = os.urandom(10 * 1024 * 1024)
    with anyio.fail_after(30):
        result = await run(CAT, input=data, text=False)
    assert result.stdout == data
    assert result.stderr == b""


async def test_large_stdout_and_stderr_are_drained_together() -> None:
    """A child that fills both pipes alternately (4 MiB each) finishes and nothing is lost."""
    code = """
        import sys
        block = b"x" * 65536
        for i in range(64):
            sys.stdout.buffer.write(block)
            sys.stderr.buffer.write(block)
    """
    with anyio.fail_after(30):
        result = await run(python(code), text=False)
    assert len(result.stdout) == len(result.stderr) == 64 * 65536


async def test_text_input_is_encoded_and_output_decoded() -> None:
    """str input is encoded as UTF-8 and the output decoded back to the same str."""
    text = "größe ✓ 日本\n" * 1000
    assert (await run(CAT, input=text)).stdout == text


async def test_invalid_utf8_is_replaced_or_kept_exact_as_bytes() -> None:
    """Undecodable bytes become U+FFFD in text mode and stay exact with text=False."""
    raw = b"ok \xff\xfe end\n"
    assert (await run(CAT, input=raw)).stdout == "ok \ufffd\ufffd end\n"
    assert (await run(CAT, input=raw, text=False)).stdout == raw


async def test_cwd_and_env_reach_the_child(tmp_path) -> None:
    """cwd= sets the working directory and env= replaces the environment."""
    code = "import os; print(os.getcwd()); print(os.environ.get('KIT_TEST'))"
    result = await run(python(code), cwd=tmp_path, env={"KIT_TEST": "yes"})
    assert result.stdout.splitlines() == [str(tmp_path), "yes"]


async def test_path_and_bytes_arguments_are_accepted() -> None:
    """A command may mix str, bytes and path objects (what os.fspath accepts)."""
    from pathlib import Path

    code = "import sys; print(sys.argv[1:])"
    result = await run([Path(sys.executable), "-c", code, b"raw", Path("a/b")])
    assert result.stdout == "['raw', 'a/b']\n"


# -- timeout ----------------------------------------------------------------------------------


async def test_timeout_terminates_reaps_and_keeps_partial_output() -> None:
    """timeout= raises ProcessTimeout with what was printed; the child ended on SIGTERM."""
    tl = Timeline()
    code = """
        import sys, time
        print("started", flush=True)
        sys.stderr.write("warming up\\n"); sys.stderr.flush()
        time.sleep(60)
    """
    begun = time.monotonic()
    with pytest.raises(ProcessTimeout) as caught:
        await run(python(code), timeout=1.0, grace=2.0, timeline=tl)
    elapsed = time.monotonic() - begun
    error = caught.value
    assert isinstance(error, subprocess.TimeoutExpired)
    assert isinstance(error, TimeoutError)
    assert error.stdout == "started\n"
    assert error.stderr == "warming up\n"
    assert error.returncode == -signal.SIGTERM
    assert "timed out after 1 s" in str(error)
    assert 0.9 < elapsed < 1.0 + 1.5  # SIGTERM ends it at once: no waiting out the grace
    (span,) = tl.spans
    assert span.returncode == -signal.SIGTERM
    assert span.outcome == "timeout"
    assert session_members([span.pid]) == []


async def test_timeout_escalates_to_sigkill_after_grace() -> None:
    """A child ignoring SIGTERM is killed grace seconds after the timeout."""
    begun = time.monotonic()
    with pytest.raises(ProcessTimeout) as caught:
        await run(IGNORE_SIGTERM(60), timeout=1.0, grace=0.5)
    elapsed = time.monotonic() - begun
    assert caught.value.returncode == -signal.SIGKILL
    assert caught.value.stdout == "ready\n"
    assert 1.4 < elapsed < 1.5 + 1.5


async def test_timeout_kills_grandchildren() -> None:
    """After a timeout no process of the child's session survives, grandchildren included."""
    tl = Timeline()
    with pytest.raises(ProcessTimeout) as caught:
        await run(SPAWN_GRANDCHILDREN(2), timeout=1.5, timeline=tl)
    assert caught.value.stdout == "ready\n"  # the shell had started both background jobs
    assert session_members([tl.spans[0].pid]) == []


async def test_normal_exit_with_background_job_leaves_nothing() -> None:
    """A shell that exits at once leaving a background job: the job is ended and run returns."""
    tl = Timeline()
    begun = time.monotonic()
    with anyio.fail_after(10):
        result = await run(["sh", "-c", f"{SLEEPER} & echo done"], timeline=tl)
    assert result.stdout == "done\n"
    assert time.monotonic() - begun < 5  # not held open by the sleeper's copy of stdout
    assert session_members([tl.spans[0].pid]) == []


async def test_an_exited_grandchild_awaiting_its_reaper_does_not_delay_run() -> None:
    """A grandchild that is already a zombie (left for init to reap) is not waited for."""
    cmd = ["sh", "-c", f"{sys.executable} -c pass & echo done; exec sleep 0.5"]
    begun = time.monotonic()
    result = await run(cmd)
    assert result.stdout == "done\n"
    assert time.monotonic() - begun < 1.2  # waiting for the zombie would take >= 1.5 s


# -- cancellation -----------------------------------------------------------------------------


async def test_move_on_after_returns_within_grace_and_reaps() -> None:
    """Cancelling run() from an enclosing scope ends the child and returns promptly."""
    tl = Timeline()
    begun = time.monotonic()
    with anyio.move_on_after(0.5) as scope:
        await run(SLEEP(60), grace=1.0, timeline=tl)
    elapsed = time.monotonic() - begun
    assert scope.cancelled_caught
    assert elapsed < 0.5 + 1.0 + 0.5
    (span,) = tl.spans
    assert span.returncode == -signal.SIGTERM
    assert span.outcome == "cancelled"
    assert session_members([span.pid]) == []


async def test_move_on_after_escalates_for_a_stubborn_child() -> None:
    """A cancelled child ignoring SIGTERM is SIGKILLed after grace; the caller waits no more."""
    tl = Timeline()
    begun = time.monotonic()
    with anyio.move_on_after(1.0):
        await run(IGNORE_SIGTERM(60), grace=0.5, timeline=tl)
    elapsed = time.monotonic() - begun
    assert 1.0 + 0.45 < elapsed < 1.0 + 0.5 + 0.5
    assert tl.spans[0].returncode == -signal.SIGKILL


async def test_cancellation_kills_grandchildren() -> None:
    """Cancelling run() while grandchildren run leaves no member of the session alive."""
    tl = Timeline()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: run(SPAWN_GRANDCHILDREN(2), timeline=tl))
            await eventually(lambda: tl.spans and tl.spans[0].pid)
            pid = tl.spans[0].pid
            await members_at_least([pid], 3)  # the shell and both sleepers
            tg.cancel_scope.cancel()
    assert tl.spans[0].returncode is not None
    assert session_members([pid]) == []


async def test_twenty_groups_cancelled_together_leave_no_survivor() -> None:
    """20 concurrent runs with 2 grandchildren each, cancelled at once: 0 processes remain."""
    tl = Timeline()
    with anyio.fail_after(40):
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(lambda i=i: run(SPAWN_GRANDCHILDREN(2), timeline=tl, label=str(i)))
            await eventually(lambda: len([s for s in tl.spans if s.pid]) == 20)
            pids = [s.pid for s in tl.spans]
            await members_at_least(pids, 20 * 3)  # every shell and both its sleepers run
            begun = time.monotonic()
            tg.cancel_scope.cancel()
    assert time.monotonic() - begun < 2.0 + 1.0
    assert session_members(pids) == []
    assert all(s.returncode is not None for s in tl.spans)


# -- without pidfd (older kernels, other systems): a thread waits ------------------------------


@pytest.fixture
def without_pidfd(monkeypatch: pytest.MonkeyPatch) -> None:
    from asyncproc_kit import _exit, _process

    waitid = _exit.BY_NAME["waitid"]
    if not waitid.available():
        pytest.skip(f"os.waitid is missing here ({waitid.where} have it)")
    monkeypatch.setattr(_process, "EXIT_STRATEGY", waitid)


@pytest.mark.usefixtures("without_pidfd")
async def test_without_pidfd_run_timeout_and_cancellation_still_work() -> None:
    """The waiting-thread fallback reaps, times out and cancels like the pidfd path."""
    assert (await run(PRINT_LINES(2))).stdout == "line 0\nline 1\n"
    with pytest.raises(ProcessTimeout) as caught:
        await run(IGNORE_SIGTERM(60), timeout=0.5, grace=0.3)
    assert caught.value.returncode == -signal.SIGKILL
    begun = time.monotonic()
    with anyio.move_on_after(0.3):
        await run(SLEEP(60), grace=1.0)
    assert time.monotonic() - begun < 0.3 + 1.0 + 0.5


# -- descriptors ------------------------------------------------------------------------------

async def test_timeout_while_feeding_input_writes_nowhere_else(tmp_path) -> None:
    """A timeout that ends run() in the middle of a big input closes stdin only after the
    feeding task stopped: no byte reaches a file that reused the descriptor number."""
    files = FileReopener(tmp_path)
    discard = python("import sys\nwhile sys.stdin.buffer.read(1 << 16): pass")
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(files)
            with pytest.raises(ProcessTimeout):
                await run(discard, input=b"x" * (512 << 20), timeout=0.3, grace=0.5)
            await anyio.sleep(0.1)
            files.stop.set()
    assert files.written() == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the session needs /proc")
async def test_timeout_ends_a_job_control_grandchild_in_another_group() -> None:
    """A job-control shell (``set -m``) puts its background job in a new process group of
    the same session; a timeout ends it too."""
    tl = Timeline()
    shell = ["bash", "-c", f"set -m; {SLEEPER} & echo ready; wait"]
    try:
        with pytest.raises(ProcessTimeout):
            await run(shell, timeout=1.0, grace=1.0, timeline=tl)
        assert session_members([tl.spans[0].pid]) == []
    finally:
        for pid in session_members([tl.spans[0].pid]):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_during_run_is_a_plain_keyboard_interrupt(backend) -> None:
    """Ctrl-C while awaiting run() reaches the program as KeyboardInterrupt on both backends
    (trio used to wrap it in a BaseExceptionGroup); the child is ended."""
    code, out, children = interrupted("await run(SLEEP(60))", backend)
    assert (code, out) == (130, "KeyboardInterrupt")
    assert session_members(children) == []


async def test_crlf_output_becomes_newlines_in_text_mode_like_subprocess() -> None:
    """run() decodes \\r\\n as \\n in text mode (subprocess.run(text=True) does the same);
    bytes stay exact."""
    cmd = python(r"import sys; sys.stdout.buffer.write(b'a\r\nb\r\n'); "
                 r"sys.stderr.buffer.write(b'e\r\n')")
    result = await run(cmd)
    assert (result.stdout, result.stderr) == ("a\nb\n", "e\n")
    assert (await run(cmd, text=False)).stdout == b"a\r\nb\r\n"
