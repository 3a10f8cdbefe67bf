"""``open_stream``: the lines of stdout and stderr as they arrive, tagged by source."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from itertools import repeat
from typing import Any, NamedTuple

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._command import check_encoding, check_grace
from ._lines import LineSplitter
from ._process import (
    CHUNK,
    DEFAULT_GRACE,
    Child,
    exit_task_group,
    next_read_size,
    read_chunk,
    spawn,
)
from ._run import check_input, feed
from ._timeline import Timeline


class OutputLine(NamedTuple):
    """One line of a child's output.

    ``source`` is ``"stdout"`` or ``"stderr"``; ``text`` has no trailing newline (``bytes``
    with ``text=False``); ``time`` is seconds since the process started, when the line was
    read; ``split`` is True for a piece of a line longer than the limit (the next piece from
    the same source continues it).
    """

    source: str
    text: str | bytes
    time: float
    split: bool = False


class LineBatch(NamedTuple):
    """The lines from one read of one pipe, as plain strings (bytes with ``text=False``).

    What ``stream.batches()`` yields: ``source`` and ``time`` as in :class:`OutputLine`;
    ``lines`` without newlines; ``split`` is ``None`` when every line is whole, else one flag
    per line, True for a piece of an over-long line that the next piece continues.
    Skipping one object per line is what makes batches fast.
    """

    source: str
    time: float
    lines: list
    split: list[bool] | None = None


_make = tuple.__new__

_Batch = tuple[str, float, list, "list[bool] | None"]


class OutputStream:
    """What ``open_stream`` gives you: iterate it for lines, or ``.batches()`` for lists.

    After the iteration ends, ``returncode`` holds the exit status (negative: a signal).
    """

    def __init__(self, cmd: Any, *, input: bytes | None, limit: int, text: bool,
                 encoding: str, errors: str, merge_stderr: bool, grace: float, cwd: Any,
                 env: Mapping[str, str] | None, timeline: Timeline | None, label: str | None):
        self._cmd = cmd
        self._input = input
        self._options = dict(limit=limit, text=text, encoding=encoding, errors=errors)
        LineSplitter(**self._options)  # validate limit now, in the caller's frame
        self._merge = merge_stderr
        self._grace = grace
        self._cwd = cwd
        self._env = env
        self._timeline = timeline
        self._label = label
        self._child: Child | None = None
        self._tg: TaskGroup | None = None
        self._receive: MemoryObjectReceiveStream[_Batch] | None = None
        self._current: Any = iter(())
        self._finished = False
        self.unread_lines = 0

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> OutputStream:
        child = spawn(self._cmd, stdin="devnull" if self._input is None else "pipe",
                      stderr="stdout" if self._merge else "pipe", cwd=self._cwd,
                      env=self._env, timeline=self._timeline, label=self._label)
        self._child = child
        send, self._receive = anyio.create_memory_object_stream[_Batch](16)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            with send:
                self._tg.start_soon(self._read, "stdout", child.stdout, send.clone())
                if child.stderr is not None:
                    self._tg.start_soon(self._read, "stderr", child.stderr, send.clone())
            if self._input is not None:
                self._tg.start_soon(feed, child, self._input)
            self._tg.start_soon(child.wait)  # reaps promptly, so leftovers cannot hold a pipe
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool | None:
        assert self._tg is not None
        assert self._child is not None
        self._tg.cancel_scope.cancel()  # stop reading: we are leaving, early or not
        try:
            return await exit_task_group(self._tg, exc_type, exc, tb)
        finally:
            if self._receive is not None:
                self._receive.close()
            await self._child.aclose(self._grace)

    async def _read(self, source: str, fd: int, send: MemoryObjectSendStream[_Batch]) -> None:
        child = self._child
        assert child is not None
        splitter = LineSplitter(**self._options)
        start = child.started_monotonic
        size = CHUNK
        with send:
            while chunk := await read_chunk(fd, size):
                size = next_read_size(fd, size, len(chunk))
                child.note_output(len(chunk))
                lines, flags = splitter.feed(chunk)
                if lines:
                    await send.send((source, time.monotonic() - start, lines, flags))
            lines, flags = splitter.finish()
            if lines:
                await send.send((source, time.monotonic() - start, lines, flags))

    # -- reading ------------------------------------------------------------------------------

    async def _receive_batch(self) -> LineBatch:
        """The next read's lines as a :class:`LineBatch`; StopAsyncIteration after the exit."""
        if self._receive is None:
            raise RuntimeError("use the stream inside 'async with open_stream(...) as stream:'")
        try:
            return _make(LineBatch, await self._receive.receive())
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._finished = True
            if self._child is not None:
                await self._child.wait()
            raise StopAsyncIteration from None

    async def _next_lines(self) -> Iterator[OutputLine]:
        # Lazy: per-line iteration builds each OutputLine as it is asked for (in C), so it
        # stays hot in the cache and is freed early, instead of a whole read's worth at once.
        source, at, lines, flags = await self._receive_batch()
        if flags is None:
            return map(_make, repeat(OutputLine),
                       zip(repeat(source), lines, repeat(at), repeat(False)))
        pairs = zip(lines, flags, strict=True)
        return iter([OutputLine(source, line, at, flag) for line, flag in pairs])

    def __aiter__(self) -> OutputStream:
        return self

    async def __anext__(self) -> OutputLine:
        line = next(self._current, None)
        if line is None:
            self._current = await self._next_lines()
            line = next(self._current)
        return line

    def batches(self) -> _Batches:
        """Iterate lists of lines, one list per read from the pipe (much less overhead)."""
        return _Batches(self)

    async def wait(self) -> int:
        """Wait for the exit status. Output not iterated yet is read and discarded (counted
        in ``unread_lines``), so a child that prints a lot cannot block waiting for you."""
        pending = list(self._current)
        self.unread_lines += len(pending)
        self._current = iter(())
        if not self._finished:
            try:
                while True:
                    self.unread_lines += len((await self._receive_batch()).lines)
            except StopAsyncIteration:
                pass
        return await self._child.wait() if self._child else 0

    # -- facts --------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    @property
    def args(self) -> list[Any] | None:
        return self._child.args if self._child else None

    @property
    def returncode(self) -> int | None:
        """The exit status once the child has been reaped (after the loop), else None."""
        return self._child.returncode if self._child else None


class _Batches:
    def __init__(self, stream: OutputStream) -> None:
        self._stream = stream

    def __aiter__(self) -> _Batches:
        return self

    async def __anext__(self) -> LineBatch:
        stream = self._stream
        rest = list(stream._current)  # lines of a read that per-line iteration left half done
        stream._current = iter(())
        if rest:
            split = [line.split for line in rest]
            return LineBatch(rest[0].source, rest[0].time, [line.text for line in rest],
                             split if any(split) else None)
        return await stream._receive_batch()


def open_stream(
    cmd: Any,
    *,
    input: str | bytes | None = None,
    limit: int = 65536,
    merge_stderr: bool = False,
    text: bool = True,
    encoding: str = "utf-8",
    errors: str = "replace",
    grace: float = DEFAULT_GRACE,
    cwd: Any = None,
    env: Mapping[str, str] | None = None,
    timeline: Timeline | None = None,
    label: str | None = None,
) -> OutputStream:
    """Start a command and iterate its output lines while it runs.

    ::

        async with open_stream(["ping", "-c", "3", "127.0.0.1"]) as stream:
            async for line in stream:
                print(line.source, line.time, line.text)
        print(stream.returncode)

    **Output:** each item is an :class:`OutputLine` ``(source, text, time, split)`` for
    stdout and stderr as they arrive. Within one source the order is exactly the child's;
    between the two, lines come in the order they were read. The last line is delivered even
    without a newline. A line longer than ``limit`` characters arrives in pieces marked
    ``split=True`` (never dropped, never a crash). Text is UTF-8 with undecodable bytes
    replaced by U+FFFD (``text=False`` gives bytes). ``merge_stderr=True`` sends stderr into
    stdout, like ``2>&1``. For speed, ``async for batch in stream.batches()`` gives a
    :class:`LineBatch` per read: one source and time, and a list of plain strings.

    **Exit status:** after the loop ends, ``stream.returncode`` is set (a non-zero exit does
    not raise: you saw the output and decide). ``await stream.wait()`` waits without
    iterating (the unread output is read and thrown away, so the child cannot block).

    **Cancellation:** leaving the ``async with`` block, normally, by ``break``, by an
    exception or by cancellation, terminates the child's process group if it still runs
    (SIGTERM, then SIGKILL after ``grace`` s). It is an async context manager, not an async
    generator, because a generator that owns tasks cannot clean up reliably when abandoned.

    **Errors:** as :func:`run`: ``SpawnError`` for a missing program or bad cwd,
    ``TypeError`` for a string command.
    """
    grace = check_grace(grace)
    check_encoding(encoding, errors)
    return OutputStream(cmd, input=check_input(input, encoding), limit=limit, text=text,
                        encoding=encoding, errors=errors, merge_stderr=merge_stderr,
                        grace=grace, cwd=cwd, env=env, timeline=timeline, label=label)
