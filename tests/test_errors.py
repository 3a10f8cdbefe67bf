"""Bad input, spawn errors, descriptor leaks and running out of descriptors."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import anyio
import pytest
from helpers import nothing_left_behind, open_fds  # noqa: F401

import asyncproc_kit
from asyncproc_kit import (
    ProcessError,
    ProcessFailed,
    ProcessTimeout,
    SpawnError,
    open_pipe,
    open_stream,
    run,
)
from asyncproc_kit._process import spawn
from asyncproc_kit.testing import CAT, EXIT, PRINT_LINES, SLEEP, python

pytestmark = pytest.mark.anyio


async def _start_with_each_api(cmd, **options) -> None:
    """Start ``cmd`` through run, open_stream and open_pipe; each must raise the same way."""
    raised = []
    for start in (_via_run, _via_stream, _via_pipe):
        try:
            await start(cmd, **options)
        except Exception as exc:  # compared below, then re-raised for the caller to check
            raised.append(exc)
        else:
            pytest.fail(f"{start.__name__} started {cmd!r}")
    assert len({type(e) for e in raised}) == 1, raised
    assert len({str(e) for e in raised}) == 1, raised
    raise raised[0]


async def _via_run(cmd, **options) -> None:
    await run(cmd, **options)


async def _via_stream(cmd, **options) -> None:
    async with open_stream(cmd, **options):
        pass


async def _via_pipe(cmd, **options) -> None:
    async with open_pipe(cmd, **options):
        pass


# -- commands that are not a list of arguments ------------------------------------------------


async def test_str_command_is_refused_with_the_list_form() -> None:
    """A str command raises TypeError showing the list to write and the shell alternative."""
    with pytest.raises(TypeError) as caught:
        await _start_with_each_api("sleep 100")
    message = str(caught.value)
    assert "not a string" in message
    assert "['sleep', '100']" in message
    assert "['sh', '-c', 'sleep 100']" in message


async def test_whole_command_line_as_one_argument_suggests_splitting() -> None:
    """["sleep 100"] raises SpawnError that suggests ['sleep', '100']."""
    with pytest.raises(SpawnError) as caught:
        await _start_with_each_api(["sleep 100"])
    message = str(caught.value)
    assert "['sleep 100']" in message
    assert "['sleep', '100']" in message
    assert caught.value.errno == errno.ENOENT


async def test_non_string_argument_is_named() -> None:
    """An int in the command raises TypeError naming its position and the fix."""
    with pytest.raises(TypeError) as caught:
        await _start_with_each_api(["sleep", 1])
    assert "argument 1" in str(caught.value)
    assert "str(1)" in str(caught.value)


@pytest.mark.parametrize(
    ("cmd", "error", "fact"),
    [([], ValueError, "empty"), (42, TypeError, "int"), (b"ls -l", TypeError, "not a string"),
     (["echo", "a\0b"], ValueError, "NUL")],
)
async def test_other_bad_commands(cmd, error, fact) -> None:
    """Empty, non-sequence, bytes-string and NUL-containing commands each get one fact."""
    with pytest.raises(error, match=fact):
        await _start_with_each_api(cmd)


# -- programs that cannot start ---------------------------------------------------------------


async def test_missing_program_names_it_and_the_fix() -> None:
    """A program not on PATH raises SpawnError naming it, with the OSError chained."""
    with pytest.raises(SpawnError) as caught:
        await _start_with_each_api(["no-such-program-4711", "arg"])
    error = caught.value
    assert isinstance(error, ProcessError)
    assert "'no-such-program-4711'" in str(error)
    assert "not on PATH" in str(error)
    assert "full path" in error.fix
    assert error.errno == errno.ENOENT
    assert isinstance(error.__cause__, FileNotFoundError)


async def test_missing_path_says_it_does_not_exist(tmp_path) -> None:
    """A path to nothing raises SpawnError saying that path does not exist."""
    missing = str(tmp_path / "nope")
    with pytest.raises(SpawnError, match="does not exist") as caught:
        await _start_with_each_api([missing])
    assert repr(missing) in str(caught.value)


async def test_directory_is_not_a_program(tmp_path) -> None:
    """A directory as the program raises SpawnError saying it is a directory."""
    with pytest.raises(SpawnError, match="is a directory"):
        await _start_with_each_api([str(tmp_path)])


async def test_non_executable_file_suggests_chmod(tmp_path) -> None:
    """A file without the execute bit raises SpawnError suggesting chmod +x."""
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    with pytest.raises(SpawnError) as caught:
        await _start_with_each_api([str(script)])
    assert "not executable" in str(caught.value)
    assert f"chmod +x {script}" in str(caught.value)
    assert caught.value.errno == errno.EACCES


async def test_bad_cwd_is_named(tmp_path) -> None:
    """A missing cwd, or a file as cwd, raises SpawnError naming the directory."""
    missing = tmp_path / "missing"
    with pytest.raises(SpawnError, match="does not exist") as caught:
        await _start_with_each_api(["true"], cwd=missing)
    assert repr(str(missing)) in str(caught.value)
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(SpawnError, match="is not a directory"):
        await _start_with_each_api(["true"], cwd=afile)


# -- bad options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "fact"),
    [({"timeout": -1}, ValueError, "timeout"), ({"timeout": "5"}, TypeError, "timeout"),
     ({"timeout": 0}, ValueError, "more than zero"), ({"grace": -0.5}, ValueError, "grace"),
     ({"input": 42}, TypeError, "input must be str or bytes"),
     ({"env": {"A": 1}}, TypeError, "env"), ({"env": ["A=1"]}, TypeError, "mapping")],
)
async def test_bad_run_options_name_the_culprit(options, error, fact) -> None:
    """Each invalid option of run() raises one clear fact before anything starts."""
    with pytest.raises(error, match=fact):
        await run(SLEEP(0), **options)


async def test_bad_stream_limit_is_refused_at_once() -> None:
    """open_stream(limit=0) raises ValueError before starting a process."""
    with pytest.raises(ValueError, match="limit"):
        open_stream(SLEEP(0), limit=0)


# -- descriptors ------------------------------------------------------------------------------


async def test_fd_set_unchanged_after_success_failure_timeout_and_spawn_errors(tmp_path) -> None:
    """Every way a run can end leaves exactly the descriptors that were open before."""
    await run(CAT, input="warm up")
    before = open_fds()
    await run(PRINT_LINES(1000))
    await run(CAT, input=os.urandom(300_000), text=False)
    with pytest.raises(ProcessFailed):
        await run(EXIT(1, "no"))
    with pytest.raises(ProcessTimeout):
        await run(SLEEP(60), timeout=0.2)
    with anyio.move_on_after(0.2):
        await run(CAT, input=b"x")  # CAT ends on EOF: this one finishes normally
        await run(SLEEP(60))
    for cmd in (["no-such-program-4711"], [str(tmp_path)], ["true"]):
        with pytest.raises(SpawnError):
            await run(cmd, cwd=tmp_path / "missing" if cmd == ["true"] else None)
    assert open_fds() == before


async def test_a_thousand_failed_spawns_leak_nothing(tmp_path) -> None:
    """1,000 spawns that fail in four different ways leave no descriptor behind."""
    script = tmp_path / "noexec"
    script.write_text("echo\n")
    script.chmod(0o644)
    with pytest.raises(SpawnError):
        await run(["no-such-program-4711"])
    before = open_fds()
    kinds = [(["no-such-program-4711"], None), ([str(script)], None),
             ([str(tmp_path)], None), (["true"], tmp_path / "missing")]
    for i in range(1000):
        cmd, cwd = kinds[i % 4]
        with pytest.raises(SpawnError):
            await run(cmd, cwd=cwd, input=b"data" if i % 8 < 4 else None)
    assert open_fds() == before


def test_spawn_with_a_bad_redirect_leaks_no_pipe() -> None:
    """An invalid redirect raises ValueError and closes the pipes already created."""
    before = open_fds()
    with pytest.raises(ValueError, match="stderr must be"):
        spawn(SLEEP(0), stdin="pipe", stdout="pipe", stderr="bogus")  # type: ignore[arg-type]
    assert open_fds() == before


KIT_ROOT = str(Path(asyncproc_kit.__file__).parent.parent)

EMFILE_PROBE = """
import json, os, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))  # soft and hard: the kit cannot raise it
import anyio
from asyncproc_kit import run
from asyncproc_kit.testing import SLEEP
FD_DIR = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"  # Linux, macOS

async def main():
    outcomes = []
    async def one():
        try:
            await run(SLEEP(1))
            outcomes.append(["ok", ""])
        except Exception as exc:
            outcomes.append([type(exc).__name__, str(exc)])
    before = len(os.listdir(FD_DIR))
    async with anyio.create_task_group() as tg:
        for _ in range(60):
            tg.start_soon(one)
    after = len(os.listdir(FD_DIR))
    print(json.dumps({"outcomes": outcomes, "fds": [before, after]}))

anyio.run(main, backend=sys.argv[1])
"""


async def test_running_out_of_descriptors_is_a_spawn_error_naming_the_limit(
        anyio_backend: str) -> None:
    """With a low hard fd limit, too many children give SpawnError naming the limit and fix."""
    with anyio.fail_after(40):
        result = await run([*python(EMFILE_PROBE), anyio_backend],
                           env={**os.environ, "PYTHONPATH": KIT_ROOT})
    report = json.loads(result.stdout)
    kinds = [kind for kind, _ in report["outcomes"]]
    assert len(kinds) == 60
    assert set(kinds) == {"ok", "SpawnError"}, set(kinds)  # never a bare OSError
    messages = {message for kind, message in report["outcomes"] if kind == "SpawnError"}
    for message in messages:
        assert "too many open files" in message
        assert "the limit is 64" in message
        assert "hard limit 64" in message
        assert "map_limited(..., limit=8)" in message  # run fewer at once: 64 // 8
        assert "higher hard limit" in message  # the soft limit is already the hard one
    assert report["fds"][0] == report["fds"][1]


def test_fd_limit_message_when_the_soft_limit_can_still_rise(monkeypatch) -> None:
    """Below the hard limit, the fix names the ulimit to use and a concurrency that fits."""
    import resource

    from asyncproc_kit._command import fd_limit_error

    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    error = fd_limit_error(["x"], OSError(errno.EMFILE, "Too many open files"))
    assert isinstance(error, SpawnError)
    assert "the limit is 1024, hard limit 4096" in str(error)
    assert "map_limited(..., limit=128)" in str(error)
    assert "ulimit -n 4096" in str(error)
    assert error.errno == errno.EMFILE


# -- causes named, fixes given -------------------------------------------------------------------


async def test_process_limit_names_ulimit_u_and_a_concurrency_that_fits(monkeypatch) -> None:
    """EAGAIN from fork (RLIMIT_NPROC, or a container's pids limit) names the limit, the
    ulimit to raise it and a concurrency that fits, not "Resource temporarily unavailable"."""
    import resource
    import subprocess

    def refuse(*args, **kwargs):
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    real = resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit", lambda which: (
        (200, 400) if which == resource.RLIMIT_NPROC else real(which)))
    with pytest.raises(SpawnError) as caught:
        await _start_with_each_api(["true"])
    message = str(caught.value)
    assert "too many processes" in message
    assert "200" in message
    assert "ulimit -u 400" in message
    assert "map_limited(..., limit=" in message
    assert caught.value.errno == errno.EAGAIN


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
async def test_missing_interpreter_names_the_shebang_line(tmp_path, line_end) -> None:
    """A script whose #! interpreter is missing (or whose #! line ends in a Windows \\r) is
    not reported as a missing script: the message names its #! line."""
    script = tmp_path / "tool"
    script.write_bytes(f"#!/no/such/interpreter{line_end}echo hi{line_end}".encode())
    script.chmod(0o755)
    with pytest.raises(SpawnError) as caught:
        await _start_with_each_api([str(script)])
    message = str(caught.value)
    assert "#!/no/such/interpreter" in message
    assert "does not exist" not in message.split("#!")[0]
    if line_end == "\r\n":
        crlf = tmp_path / "crlf.sh"
        crlf.write_bytes(b"#!/bin/sh\r\necho hi\r\n")
        crlf.chmod(0o755)
        with pytest.raises(SpawnError) as caught:
            await _start_with_each_api([str(crlf)])
        assert "\\r" in str(caught.value)
        assert "dos2unix" in str(caught.value)


async def test_argument_list_too_long_is_elided_and_states_the_limit() -> None:
    """30,000 long arguments: a short message ('… 29,990 more') stating the system limit."""
    cmd = ["true", *[f"argument-{i:05d}-" + "x" * 100 for i in range(29_999)]]
    with pytest.raises(SpawnError) as caught:
        await run(cmd)
    message = str(caught.value)
    assert len(message) < 2000
    assert "29,990 more" in message
    assert "too long" in message
    assert f"{os.sysconf('SC_ARG_MAX'):,}" in message
    assert caught.value.errno == errno.E2BIG


@pytest.mark.parametrize(
    ("options", "error", "fact"),
    [({"env": {"A": "x\0y"}}, ValueError, r"env\['A'\] contains a NUL"),
     ({"env": {"A\0": "x"}}, ValueError, "NUL"),
     ({"env": {"A=B": "x"}}, ValueError, r"'='"),
     ({"cwd": 5}, TypeError, "cwd must be a path"),
     ({"cwd": "/tmp\0x"}, ValueError, "cwd contains a NUL"),
     ({"encoding": "utf9"}, LookupError, "unknown encoding 'utf9'"),
     ({"errors": "nope"}, LookupError, "errors='nope'"),
     ({"grace": float("inf")}, ValueError, "grace must be finite")],
)
async def test_bad_options_name_the_culprit_in_every_api_before_starting(
        options, error, fact, tmp_path) -> None:
    """NUL in env, a non-path or NUL cwd, an unknown codec, an infinite grace: each raises
    one clear fact from run, open_stream and open_pipe, before anything starts."""
    started = tmp_path / "started"
    with pytest.raises(error, match=fact):
        await _start_with_each_api(python(f"open({str(started)!r}, 'w')"), **options)
    assert not started.exists()


@pytest.mark.parametrize(
    ("cmd", "error", "fact"),
    [([""], ValueError, "the program name is empty"),
     ({"echo", "hi"}, TypeError, "set"), ({"echo": "hi"}, TypeError, "dict")],
)
async def test_empty_program_name_and_unordered_commands_are_refused(cmd, error, fact) -> None:
    """[''] names the empty program; a set or dict (no order) is not a command."""
    with pytest.raises(error, match=fact):
        await _start_with_each_api(cmd)
