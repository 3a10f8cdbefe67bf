"""``open_pipe``: a conversation with a child, writing and reading independently."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ._command import check_encoding, check_grace
from ._errors import format_command
from ._process import (
    DEFAULT_GRACE,
    Child,
    PipeClosed,
    exit_task_group,
    read_chunk,
    spawn,
    write_all,
)
from ._timeline import Timeline


class Pipe:
    """What ``open_pipe`` gives you: ``send``, ``receive_line``/``receive``, ``close_input``,
    ``wait``. Output is read in the background into memory as soon as the child writes it,
    so a child that answers while it reads can never block on a full pipe."""

    def __init__(self, cmd: Any, *, encoding: str, errors: str, grace: float, cwd: Any,
                 env: Mapping[str, str] | None, timeline: Timeline | None, label: str | None):
        self._cmd = cmd
        self._encoding = encoding
        self._errors = errors
        self._grace = grace
        self._cwd = cwd
        self._env = env
        self._timeline = timeline
        self._label = label
        self._child: Child | None = None
        self._tg: TaskGroup | None = None
        self._out = bytearray()
        self._scanned = 0
        self._out_eof = False
        self._err = bytearray()
        self._err_eof = False
        self._arrived: anyio.Event | None = None
        self._drained = anyio.Event()
        self._send_lock = anyio.Lock()
        self._receive_lock = anyio.Lock()

    async def __aenter__(self) -> Pipe:
        self._child = spawn(self._cmd, stdin="pipe", cwd=self._cwd, env=self._env,
                            timeline=self._timeline, label=self._label)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._read_stdout)
        self._tg.start_soon(self._read_stderr)
        self._tg.start_soon(self._child.wait)
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool | None:
        assert self._tg is not None
        assert self._child is not None
        self._child.close_stdin()
        self._tg.cancel_scope.cancel()
        try:
            return await exit_task_group(self._tg, exc_type, exc, tb)
        finally:
            await self._child.aclose(self._grace)

    async def _read_stdout(self) -> None:
        child = self._child
        assert child is not None
        assert child.stdout is not None
        try:
            while chunk := await read_chunk(child.stdout):
                child.note_output(len(chunk))
                self._out += chunk
                self._wake()
        finally:
            self._out_eof = True
            self._wake()
            if self._err_eof:
                self._drained.set()

    async def _read_stderr(self) -> None:
        child = self._child
        assert child is not None
        assert child.stderr is not None
        try:
            while chunk := await read_chunk(child.stderr):
                child.note_output(len(chunk))
                self._err += chunk
        finally:
            self._err_eof = True
            if self._out_eof:
                self._drained.set()

    def _wake(self) -> None:
        if self._arrived is not None:
            self._arrived.set()
            self._arrived = None

    async def _more(self) -> None:
        self._arrived = anyio.Event()
        await self._arrived.wait()

    def _running(self) -> Child:
        if self._child is None:
            raise RuntimeError("use the pipe inside 'async with open_pipe(...) as pipe:'")
        return self._child

    # -- writing ------------------------------------------------------------------------------

    async def send(self, data: str | bytes) -> None:
        """Write all of ``data`` (str is encoded) to the child's stdin.

        Raises ``BrokenPipeError`` naming the command if it has closed its input or exited,
        or if the ``async with`` block is left while this send is still writing (the send
        stops at once: not one more byte goes anywhere), and ``RuntimeError`` after
        :meth:`close_input`.
        """
        child = self._running()
        if isinstance(data, str):
            data = data.encode(self._encoding)
        elif not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"send() takes str or bytes, not {type(data).__name__}")
        async with self._send_lock:
            if child.stdin is None:
                raise RuntimeError(f"the input of {format_command(child.args)} is already "
                                   "closed (close_input() or wait() was called)")
            try:
                await write_all(child, data)
            except PipeClosed:
                raise
            except BrokenPipeError:
                raise BrokenPipeError(
                    f"{format_command(child.args)} is no longer reading its input "
                    "(it closed stdin or exited); check pipe.returncode and stderr") from None
            if child.span is not None:
                child.span.sent += len(data)

    async def close_input(self) -> None:
        """Close stdin, so the child sees end of file (like pressing Ctrl-D)."""
        child = self._running()
        async with self._send_lock:
            child.close_stdin()

    # -- reading ------------------------------------------------------------------------------

    async def receive_line(self) -> str | None:
        """The next line of stdout without its newline (``\n`` or ``\r\n``), or ``None`` once
        output has ended."""
        self._running()
        async with self._receive_lock:
            while True:
                end = self._out.find(b"\n", self._scanned)
                if end >= 0:
                    cr = end > 0 and self._out[end - 1] == 13  # a \r\n line end
                    line = bytes(self._out[:end - 1 if cr else end])
                    del self._out[:end + 1]
                    self._scanned = 0
                    return line.decode(self._encoding, self._errors)
                if self._out_eof:
                    if not self._out:
                        return None
                    line = bytes(self._out)
                    self._out.clear()
                    return line.decode(self._encoding, self._errors)
                self._scanned = len(self._out)
                await self._more()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes`` of stdout as soon as any is there; ``b""`` once it has ended."""
        self._running()
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
        async with self._receive_lock:
            while not self._out and not self._out_eof:
                await self._more()
            data = bytes(self._out[:max_bytes])
            del self._out[:max_bytes]
            self._scanned = 0
            return data

    async def wait(self) -> int:
        """Close stdin, wait for the child to exit and its output to end; return the exit code.

        Unread stdout stays available to ``receive_line``/``receive`` afterwards.
        """
        child = self._running()
        await self.close_input()
        code = await child.wait()
        await self._drained.wait()  # the pipes end right after the group is gone
        return code

    # -- facts --------------------------------------------------------------------------------

    @property
    def stderr(self) -> str:
        """Everything the child has written to stderr so far."""
        return self._err.decode(self._encoding, self._errors).replace("\r\n", "\n")

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    @property
    def returncode(self) -> int | None:
        return self._child.returncode if self._child else None


def open_pipe(
    cmd: Any,
    *,
    encoding: str = "utf-8",
    errors: str = "replace",
    grace: float = DEFAULT_GRACE,
    cwd: Any = None,
    env: Mapping[str, str] | None = None,
    timeline: Timeline | None = None,
    label: str | None = None,
) -> Pipe:
    """Start a command with stdin and stdout connected to you, for a conversation.

    ::

        async with open_pipe(["python3", "-u", "-c", UPPER]) as pipe:
            await pipe.send("hello\\n")
            print(await pipe.receive_line())   # HELLO
            code = await pipe.wait()           # closes stdin, waits for exit

    **Input:** ``send`` writes str (encoded) or bytes; ``close_input`` sends end of file.

    **Output:** stdout is read in the background as soon as the child writes, so writing
    and reading proceed independently: sending 10 MiB through ``cat`` before reading a byte
    does not deadlock (the answer waits in memory). ``receive_line`` returns lines,
    ``receive`` raw bytes; both return ``None``/``b""`` at the end. stderr is collected in
    ``pipe.stderr``.

    **Cancellation:** leaving the block closes stdin and, if the child still runs,
    terminates its process group (SIGTERM, SIGKILL after ``grace`` s). Call ``await
    pipe.wait()`` first to let it finish on its own.

    **Errors:** as :func:`run`; ``send`` raises ``BrokenPipeError`` naming the command when
    the child no longer reads.
    """
    grace = check_grace(grace)
    check_encoding(encoding, errors)
    return Pipe(cmd, encoding=encoding, errors=errors, grace=grace, cwd=cwd, env=env,
                timeline=timeline, label=label)
