"""``run``: start a command, feed it, collect its output and exit status."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from ._command import check_encoding, check_grace, check_seconds
from ._errors import ProcessFailed, ProcessTimeout
from ._process import (
    CHUNK,
    DEFAULT_GRACE,
    Child,
    interrupts_unwrapped,
    next_read_size,
    read_available,
    read_chunk,
    spawn,
    write_all,
)
from ._timeline import Timeline


@dataclass(frozen=True)
class ProcessResult:
    """What a finished command left behind; shaped like :class:`subprocess.CompletedProcess`.

    ``returncode`` is negative when a signal ended the process (``-9`` is SIGKILL).
    ``started`` and ``ended`` are wall-clock times (``time.time()``); ``duration`` is
    measured with a monotonic clock, in seconds.
    """

    args: list[Any]
    returncode: int
    stdout: str | bytes
    stderr: str | bytes
    pid: int
    started: float
    ended: float
    duration: float

    def check_returncode(self) -> None:
        """Raise :class:`ProcessFailed` if the return code is not zero."""
        if self.returncode:
            raise ProcessFailed(self)

    def __repr__(self) -> str:
        return (f"ProcessResult(args={self.args!r}, returncode={self.returncode}, "
                f"stdout={_short(self.stdout)}, stderr={_short(self.stderr)})")


def _short(value: str | bytes, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 5]}...{text[-1]}"


def decode(data: bytes, text: bool, encoding: str, errors: str) -> str | bytes:
    """Bytes as they are, or text in which ``\r\n`` line ends read ``\n`` (as in
    ``subprocess.run(text=True)``)."""
    return data.decode(encoding, errors).replace("\r\n", "\n") if text else data


def check_input(input: Any, encoding: str) -> bytes | None:
    if input is None:
        return None
    if isinstance(input, str):
        return input.encode(encoding)
    if isinstance(input, bytes | bytearray | memoryview):
        return bytes(input)
    raise TypeError(f"input must be str or bytes, not {type(input).__name__}")


async def run(
    cmd: Any,
    *,
    input: str | bytes | None = None,
    timeout: float | None = None,
    grace: float = DEFAULT_GRACE,
    check: bool = True,
    cwd: Any = None,
    env: Mapping[str, str] | None = None,
    text: bool = True,
    encoding: str = "utf-8",
    errors: str = "replace",
    timeline: Timeline | None = None,
    label: str | None = None,
) -> ProcessResult:
    """Run a command to completion and return its :class:`ProcessResult`.

    ``await run(["echo", "hi"])`` is the async twin of ``subprocess.run(["echo", "hi"],
    capture_output=True, text=True, check=True)``. The command is a list of arguments; a
    string raises ``TypeError`` (no shell is ever started for you: write ``["sh", "-c",
    "..."]`` if you want one).

    **Input:** stdin is closed (empty) unless ``input`` (str or bytes) is given; it is written
    while the output is read, so no size of input or output can deadlock.

    **Output:** stdout and stderr are captured separately and decoded as UTF-8, with
    undecodable bytes replaced and ``\r\n`` line ends read as ``\n``, as
    ``subprocess.run(text=True)`` does (``text=False`` gives the exact bytes). Nothing is
    printed.

    **Errors:** ``check=True`` (the default, as in trio, because a failure you did not look
    at is a bug) raises :class:`ProcessFailed` on a non-zero exit, with the end of stderr in
    the message and the whole result in ``.result``. A missing or non-executable program, or
    a bad ``cwd``, raises :class:`SpawnError` naming the command and the fix.

    **Timeout:** ``timeout`` mirrors ``subprocess.run``: when it passes, the process group is
    terminated (SIGTERM, then SIGKILL after ``grace`` s) and :class:`ProcessTimeout` is raised
    carrying the output printed so far. Prefer ``anyio.fail_after`` around several calls
    when the deadline belongs to the caller.

    **Cancellation:** if the surrounding scope is cancelled (``move_on_after``, a task group,
    a notebook interrupt), the child's whole group is terminated the same way, shielded,
    before the cancellation continues. No zombie, no orphan.

    **Out of reach** (see ``docs/guarantees.md``): a grandchild that calls ``setsid()``
    itself leaves the child's session and cannot be told apart from your other processes;
    on systems without ``/proc`` only the process group is ended, not the whole session;
    a parent killed by SIGKILL runs no cleanup, so its children keep running.

    ``timeline=`` records the process (label, start, first output, signals, end) for plots.
    """
    timeout = check_seconds("timeout", timeout)
    grace = check_grace(grace)
    check_encoding(encoding, errors)
    data = check_input(input, encoding)
    child = spawn(cmd, stdin="devnull" if data is None else "pipe", cwd=cwd, env=env,
                  timeline=timeline, label=label)
    return await complete(child, input=data, timeout=timeout, grace=grace, check=check,
                          text=text, encoding=encoding, errors=errors)


async def complete(child: Child, *, input: bytes | None, timeout: float | None, grace: float,
                   check: bool, text: bool, encoding: str, errors: str) -> ProcessResult:
    """Feed, drain and reap a child that :func:`spawn` just started, exactly as :func:`run`
    does (run is spawn + complete; the pool spawns itself to hand the child out early).
    Arguments are already checked; ``input`` is bytes."""
    out: list[bytes] = []
    err: list[bytes] = []
    try:
        with anyio.move_on_after(timeout if timeout is not None else float("inf")) as scope, \
                interrupts_unwrapped():
            async with anyio.create_task_group() as tg:
                tg.start_soon(drain, child, child.stdout, out)
                tg.start_soon(drain, child, child.stderr, err)
                if input is not None:
                    tg.start_soon(feed, child, input)
                await child.wait()
        if scope.cancelled_caught:
            assert timeout is not None
            ended = await child.terminate(grace)
            if child.span is not None:
                child.span.outcome = "timeout"
            out.extend(read_available(child.stdout))  # type: ignore[arg-type]
            err.extend(read_available(child.stderr))  # type: ignore[arg-type]
            raise ProcessTimeout(child.args, timeout,
                                 decode(b"".join(out), text, encoding, errors),
                                 decode(b"".join(err), text, encoding, errors),
                                 ended.returncode)
    except BaseException:
        if child.span is not None and child.span.outcome is None and child.returncode is None:
            child.span.outcome = "cancelled"
        raise
    finally:
        await child.aclose(grace)
    result = ProcessResult(
        args=child.args, returncode=child.returncode, pid=child.pid,  # type: ignore[arg-type]
        stdout=decode(b"".join(out), text, encoding, errors),
        stderr=decode(b"".join(err), text, encoding, errors),
        started=child.started, ended=child.ended or time.time(), duration=child.duration,
    )
    if check and result.returncode:
        raise ProcessFailed(result)
    return result


async def drain(child: Child, fd: int | None, sink: list[bytes]) -> None:
    """Read ``fd`` to end of file into ``sink`` (a list of chunks)."""
    if fd is None:
        return
    size = CHUNK
    while chunk := await read_chunk(fd, size):
        size = next_read_size(fd, size, len(chunk))
        sink.append(chunk)
        child.note_output(len(chunk))


async def feed(child: Child, data: bytes) -> None:
    """Write ``data`` to the child's stdin and close it; a child that stops reading is fine."""
    try:
        if child.stdin is not None:
            await write_all(child, data)
            if child.span is not None:
                child.span.sent += len(data)
    except BrokenPipeError:
        pass  # it exited or closed stdin without reading everything, as subprocess allows
    finally:
        child.close_stdin()



