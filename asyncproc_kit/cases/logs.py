"""Many processes, one tagged stream, nothing lost: a log aggregator (case study 3, notebook 11).

::

    from asyncproc_kit.cases.logs import aggregate

    async with aggregate({"web": cmd1, "worker": cmd2}) as logs:
        async for line in logs:                 # LogLine(name, source, seq, time, text, split)
            print(logs.format(line))            # "[web] ...", coloured in a terminal
    print(logs.summary["web"])                  # lines, bytes, dropped, return code

Each child is read with :func:`~asyncproc_kit.open_stream`, so everything it promises holds
per child: exact order within a source, the last line delivered without a newline, over-long
lines split (``split=True``) instead of dropped, undecodable bytes replaced, and the whole
process group ended when you leave. On top of that the aggregator adds what one stream cannot:

* **One bounded buffer of lines** shared by every child, with a policy for a consumer that is
  slower than the producers: ``overflow="block"`` (the default) makes them wait, so nothing is
  lost; ``overflow="drop_oldest"`` keeps memory bounded at ``buffer`` lines and drops the
  oldest, and every drop is counted in the summary and leaves a gap in ``seq`` (or, after
  the last line you got from a source, a shortfall against the summary's count).
* **A sequence number per (name, source)**, counted from 0 when the line is read, so a gap is
  proof of a drop and no gap is proof of none.
* **PYTHONUNBUFFERED=1** for the children, because a Python child writing to a pipe
  block-buffers: its lines would arrive only when it exits (``stdbuf -oL`` does not change
  that; it only affects C stdio).
* A summary per name, colour per name in a terminal (ANSI, off when ``NO_COLOR`` is set or the
  output is not a terminal) and in a notebook (HTML), and a small command line::

      python -m asyncproc_kit.cases.logs web="python -m http.server" worker="python w.py"
"""

from __future__ import annotations

import argparse
import errno
import html
import operator
import os
import shlex
import shutil
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple

import anyio
import anyio.lowlevel

from .. import DEFAULT_GRACE, OutputStream, ProcessError, Timeline, open_stream, terminate
from .._command import check_command, check_cwd, check_env, spawn_error
from .._errors import describe_returncode
from .._process import exit_task_group

__all__ = ["LogAggregator", "LogLine", "LogSummary", "LogView", "aggregate", "main",
           "use_color"]

OVERFLOW = ("block", "drop_oldest")
SOURCES = ("stdout", "stderr")


class LogLine(NamedTuple):
    """One line from one child.

    ``name`` is the key it was given in ``aggregate({...})``; ``source`` is ``"stdout"`` or
    ``"stderr"``; ``seq`` counts the lines of that (name, source) from 0 (a gap means lines
    were dropped); ``time`` is seconds since the aggregator started, when the line was read;
    ``text`` has no newline; ``split`` is True for a piece of an over-long line that the next
    piece of the same source continues.
    """

    name: str
    source: str
    seq: int
    time: float
    text: str
    split: bool = False


@dataclass(frozen=True)
class LogSummary:
    """What happened to one child: ``logs.summary[name]``.

    ``stdout_lines``/``stderr_lines`` were delivered to you; ``stdout_dropped``/
    ``stderr_dropped`` (together ``dropped``) were dropped by ``overflow="drop_oldest"``;
    ``unread`` were still buffered when you left the block early; ``bytes`` were read from
    its pipes. Delivered + dropped + unread is every line it wrote. ``returncode`` is
    ``None`` while it runs, negative for a signal (as in ``subprocess``).
    """

    name: str
    pid: int | None
    returncode: int | None
    stdout_lines: int
    stderr_lines: int
    bytes: int
    stdout_dropped: int = 0
    stderr_dropped: int = 0
    unread: int = 0

    @property
    def dropped(self) -> int:
        return self.stdout_dropped + self.stderr_dropped

    def __str__(self) -> str:
        status = "running" if self.returncode is None else describe_returncode(self.returncode)
        extra = f", {self.unread} unread" if self.unread else ""
        return (f"{self.name}: {self.stdout_lines} stdout + {self.stderr_lines} stderr lines, "
                f"{self.bytes} bytes, {self.dropped} dropped{extra}, {status}")


_make = tuple.__new__


class LogAggregator:
    """What :func:`aggregate` returns: an async context manager you iterate for lines.

    Not started until ``async with``; every child has ended (and been reaped) when the
    ``async for`` loop finishes or the block is left.
    """

    def __init__(self, streams: dict[str, OutputStream], *, buffer: int, overflow: str,
                 timeline: Timeline, grace: float) -> None:
        self.names = list(streams)
        self.colors = {name: i % len(_PALETTE) for i, name in enumerate(self.names)}
        self.overflow = overflow
        self.buffer = buffer
        self._streams = streams
        self._timeline = timeline
        self._grace = grace
        self._batches: deque[_Batch] = deque()
        self._count = 0  # lines held: those in _batches plus the slice you are iterating
        self.peak = 0  # the most lines ever held (at most ``buffer``)
        self._low = buffer // 2  # blocked producers resume once the buffer is down to this
        self._slice = max(1, buffer // 4)  # lines handed to the iterator at a time
        self._hand: Iterator[LogLine] = iter(())  # the slice being iterated
        self._hand_left: Iterator[int] = iter(())  # its seq numbers not yet taken
        self._hand_size = 0
        self._hand_key = ("", "")
        self._readable = anyio.Event()
        self._writable = anyio.Event()
        self._want_space = False
        self._running = 0
        self._entered = False
        self._closed = False
        self._origin = 0.0
        self._seq = {name: dict.fromkeys(SOURCES, 0) for name in streams}
        self._dropped = {name: dict.fromkeys(SOURCES, 0) for name in streams}
        self._unread = {name: dict.fromkeys(SOURCES, 0) for name in streams}
        self._returncodes: dict[str, int | None] = dict.fromkeys(streams)
        self._stopped: set[str] = set()
        self._exit_log: list[tuple[str, int]] = []  # (name, returncode) in the order they end
        self._exited = anyio.Event()
        self._tg: Any = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> LogAggregator:
        if self._entered:
            raise RuntimeError("an aggregator runs once: call aggregate(...) again")
        self._entered = True
        self._origin = time.monotonic()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            for name, stream in self._streams.items():
                await self._tg.start(self._pump, name, stream)  # spawns, or raises SpawnError
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool | None:
        self._tg.cancel_scope.cancel()  # leaving, early or not: every child's group ends
        try:
            return await exit_task_group(self._tg, exc_type, exc, tb)
        finally:
            self._close_buffer()

    def _close_buffer(self) -> None:
        self._closed = True
        for (name, source), held in self._held().items():
            self._unread[name][source] += held
        self._batches.clear()
        self._hand = self._hand_left = iter(())
        self._count = self._hand_size = 0

    def _held(self) -> dict[tuple[str, str], int]:
        """Lines not yet given to you, per (name, source)."""
        held = {(name, source): 0 for name in self.names for source in SOURCES}
        for batch in self._batches:
            held[batch.name, batch.source] += len(batch.lines) - batch.start
        if self._hand_size:
            held[self._hand_key] += operator.length_hint(self._hand_left)
        return held

    async def _pump(self, name: str, stream: OutputStream, *, task_status) -> None:
        """Read one child's batches into the shared buffer, numbering its lines."""
        self._running += 1
        try:
            async with stream:
                task_status.started()
                seq = self._seq[name]
                origin = self._origin
                async for source, _, lines, split in stream.batches():
                    first = seq[source]
                    seq[source] = first + len(lines)
                    batch = _Batch(name, source, first, time.monotonic() - origin, lines, split)
                    await self._put(batch)
        finally:
            self._returncodes[name] = stream.returncode
            self._running -= 1
            self._readable.set()
            if stream.returncode is not None:
                self._exit_log.append((name, stream.returncode))
            self._exited.set()

    # -- the buffer ---------------------------------------------------------------------------
    # Lines stay plain strings in the batches they were read in; a LogLine is made only when
    # you iterate to it (in C, a slice at a time), so dropped lines cost almost nothing.

    async def _put(self, batch: _Batch) -> None:
        if self.overflow == "drop_oldest":
            self._batches.append(batch)
            self._count += len(batch.lines)
            if self._count > self.buffer:
                self._drop(self._count - self.buffer)
            self.peak = max(self.peak, self._count)
            self._readable.set()
            return
        while batch is not None:
            space = self.buffer - self._count
            if space <= 0:
                if not self._want_space:
                    self._want_space = True
                    self._writable = anyio.Event()
                await self._writable.wait()
                continue
            batch, rest = batch.cut(space)
            self._batches.append(batch)
            self._count += len(batch.lines)
            self.peak = max(self.peak, self._count)
            self._readable.set()
            batch = rest

    def _drop(self, excess: int) -> None:
        # Only whole batches and the front one's head: the slice you iterate is not touched,
        # and it is at most buffer // 4 lines, so there is always enough to drop.
        while excess:
            front = self._batches[0]
            k = min(len(front.lines) - front.start, excess)
            self._dropped[front.name][front.source] += k
            self._count -= k
            excess -= k
            front.start += k
            if front.start == len(front.lines):
                self._batches.popleft()
            elif front.start > 64 and 2 * front.start > len(front.lines):
                front.trim()  # a huge read: do not keep its dropped part alive

    # -- reading ------------------------------------------------------------------------------

    def __aiter__(self) -> LogAggregator:
        return self

    async def __anext__(self) -> LogLine:
        line = next(self._hand, None)
        if line is not None:
            return line
        return await self._next_slice()

    async def _next_slice(self) -> LogLine:
        if not self._entered or self._closed:
            raise RuntimeError("iterate inside 'async with aggregate(...) as logs:'")
        self._count -= self._hand_size  # the slice just finished leaves the buffer
        self._hand_size = 0
        if self._want_space and self._count <= self._low:
            self._want_space = False
            self._writable.set()
        await anyio.lowlevel.checkpoint()  # once per slice: cancellable, and fair
        while not self._batches:
            if not self._running:
                raise StopAsyncIteration
            self._readable = anyio.Event()
            await self._readable.wait()
        front = self._batches[0]
        start = front.start
        end = min(len(front.lines), start + self._slice)
        front.start = end
        if end == len(front.lines):
            self._batches.popleft()
        self._hand_size = end - start
        self._hand_key = (front.name, front.source)
        self._hand_left = numbers = iter(range(front.seq + start, front.seq + end))
        texts = front.lines[start:end]
        flags = repeat(False) if front.split is None else front.split[start:end]
        self._hand = map(_make, repeat(LogLine), zip(
            repeat(front.name), repeat(front.source), numbers, repeat(front.at), texts, flags))
        return next(self._hand)

    def _idle(self) -> bool:
        """Nothing left to hand out right now (cheap: the command line flushes then)."""
        return not self._batches and not operator.length_hint(self._hand_left)

    @property
    def buffered(self) -> int:
        """Lines waiting for you right now."""
        return sum(self._held().values())

    def exits(self) -> _Exits:
        """Iterate ``(name, returncode)`` as the children end, in the order they end; the
        loop finishes when every child has ended (each new iteration starts from the first)."""
        return _Exits(self)

    async def terminate(self, *names: str) -> None:
        """End the named children (all if none named) now, each with SIGTERM, then SIGKILL
        after ``grace``. Their remaining output is still delivered; the loop then ends."""
        unknown = [n for n in names if n not in self._streams]
        if unknown:
            raise KeyError(f"no child called {unknown[0]!r}; the names are {self.names}")
        chosen = names or tuple(self.names)
        async with anyio.create_task_group() as tg:
            for name in chosen:
                stream = self._streams[name]
                if stream.pid is not None and self._returncodes[name] is None:
                    self._stopped.add(name)
                    tg.start_soon(lambda s=stream: terminate(s, grace=self._grace))

    @property
    def stopped(self) -> set[str]:
        """Names of the children that :meth:`terminate` ended (not ended on their own)."""
        return set(self._stopped)

    # -- facts --------------------------------------------------------------------------------

    @property
    def summary(self) -> dict[str, LogSummary]:
        """Per name: lines delivered per source, bytes read, lines dropped, return code."""
        held = self._held()
        spans = {span.pid: span for span in self._timeline.spans}
        out = {}
        for name, stream in self._streams.items():
            seq, dropped, unread = self._seq[name], self._dropped[name], self._unread[name]
            delivered = {s: seq[s] - dropped[s] - held[name, s] - unread[s] for s in SOURCES}
            span = spans.get(stream.pid)
            out[name] = LogSummary(
                name=name, pid=stream.pid, returncode=self._returncodes[name],
                stdout_lines=delivered["stdout"], stderr_lines=delivered["stderr"],
                bytes=span.received if span is not None else 0,
                stdout_dropped=dropped["stdout"], stderr_dropped=dropped["stderr"],
                unread=sum(unread.values()))
        return out

    # -- showing ------------------------------------------------------------------------------

    def format(self, line: LogLine, *, color: bool = False) -> str:
        """``[web] text`` (``[web:err]`` for stderr), padded so the texts line up; with
        ``color=True`` the tag is in the name's ANSI colour (stderr tags in bold red)."""
        return format_line(line, width=max(map(len, self.names)), color=color,
                           index=self.colors.get(line.name, 0))

    def view(self, lines: Iterable[LogLine]) -> LogView:
        """The lines as a :class:`LogView`: HTML with this aggregator's colours in a notebook."""
        return LogView(lines, names=self.names)


class _Batch:
    """Lines from one read of one (name, source); ``start`` is the first not yet taken."""

    __slots__ = ("at", "lines", "name", "seq", "source", "split", "start")

    def __init__(self, name: str, source: str, seq: int, at: float, lines: list[str],
                 split: list[bool] | None) -> None:
        self.name, self.source, self.seq, self.at = name, source, seq, at
        self.lines, self.split, self.start = lines, split, 0

    def cut(self, size: int) -> tuple[_Batch, _Batch | None]:
        """The first ``size`` lines and the rest (None if nothing is left)."""
        if len(self.lines) <= size:
            return self, None
        split = self.split
        head = _Batch(self.name, self.source, self.seq, self.at, self.lines[:size],
                      None if split is None else split[:size])
        rest = _Batch(self.name, self.source, self.seq + size, self.at, self.lines[size:],
                      None if split is None else split[size:])
        return head, rest

    def trim(self) -> None:
        """Forget the lines before ``start`` (dropped), keeping seq numbers right."""
        start = self.start
        del self.lines[:start]
        if self.split is not None:
            del self.split[:start]
        self.seq += start
        self.start = 0


class _Exits:
    def __init__(self, logs: LogAggregator) -> None:
        self._logs = logs
        self._seen = 0

    def __aiter__(self) -> _Exits:
        return self

    async def __anext__(self) -> tuple[str, int]:
        logs = self._logs
        while self._seen == len(logs._exit_log):
            if not logs._running or logs._closed:
                raise StopAsyncIteration
            if logs._exited.is_set():
                logs._exited = anyio.Event()
            await logs._exited.wait()
        self._seen += 1
        return logs._exit_log[self._seen - 1]


def aggregate(
    commands: Mapping[str, Sequence[Any]],
    *,
    buffer: int = 1024,
    overflow: str = "block",
    unbuffered: bool = True,
    limit: int = 65536,
    env: Mapping[str, str] | None = None,
    cwd: Any = None,
    grace: float = DEFAULT_GRACE,
    timeline: Timeline | None = None,
) -> LogAggregator:
    """Run several commands at once and read all their output as one stream of lines.

    ::

        async with aggregate({"web": cmd1, "worker": cmd2}, buffer=1024) as logs:
            async for line in logs:
                print(f"[{line.name}] {line.text}")
        print(logs.summary["web"].returncode)

    **Output:** :class:`LogLine` items ``(name, source, seq, time, text, split)``. Within one
    (name, source) the order is exactly the child's and ``seq`` counts 0, 1, 2, ...; between
    children, lines come in the order they were read. Lines longer than ``limit`` characters
    (64 Ki, as in ``open_stream``) arrive in pieces marked ``split=True``; the last line is
    delivered without a newline; undecodable bytes become U+FFFD.

    **Slow consumers:** at most ``buffer`` lines wait for you. ``overflow="block"`` (default)
    then pauses the reading, so the children block on their full pipes: nothing is lost.
    ``overflow="drop_oldest"`` keeps reading and drops the oldest buffered lines: memory stays
    bounded, the children never wait, and every drop is counted (``summary[name].dropped``)
    and shows as a gap in ``seq`` (lines dropped after the last one you got from a source show
    against the summary: ``stdout_lines + stdout_dropped`` is every stdout line written).
    With ``"block"`` the lines held are ``buffer`` plus what each child's reader has queued
    (``open_stream`` keeps up to 16 reads per child).

    **Environment:** children get ``PYTHONUNBUFFERED=1`` (added to ``env``, or to this
    process's environment), so Python children's lines arrive while they run. With
    ``unbuffered=False`` nothing is added.

    **Exit status:** a non-zero exit does not raise; it is ``summary[name].returncode``.

    **Cancellation:** leaving the block, normally, by ``break``, by an exception or by
    cancellation, terminates every child's process group (SIGTERM, then SIGKILL after
    ``grace`` s).

    **Errors:** bad arguments raise here, before anything starts: ``TypeError``/``ValueError``
    naming the argument, ``SpawnError`` for a program that is not there or a missing ``cwd``.
    """
    if not isinstance(commands, Mapping):
        raise TypeError("commands must be a dict of name -> command, e.g. "
                        "{'web': ['python', '-m', 'http.server']}, not "
                        f"{type(commands).__name__}")
    if not commands:
        raise ValueError("commands is empty: give at least one name -> command")
    _check_int("buffer", buffer)
    if overflow not in OVERFLOW:
        raise ValueError(f"overflow must be 'block' (nothing lost) or 'drop_oldest' (bounded "
                         f"memory), not {overflow!r}")
    if not isinstance(unbuffered, bool):
        raise TypeError(f"unbuffered must be True or False, not {unbuffered!r}")
    _check_int("limit", limit)
    checked = check_env(env)
    if unbuffered:
        checked = {**(os.environ if checked is None else checked), "PYTHONUNBUFFERED": "1"}
    timeline = Timeline() if timeline is None else timeline
    streams: dict[str, OutputStream] = {}
    for name, cmd in commands.items():
        if not isinstance(name, str) or not name or not name.isprintable():
            raise ValueError(f"a name must be a non-empty printable str, not {name!r}")
        try:
            args = check_command(cmd)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"commands[{name!r}]: {exc}") from None
        check_cwd(args, cwd)
        _check_program(args, checked, cwd)
        streams[name] = open_stream(args, limit=limit, env=checked, cwd=cwd, grace=grace,
                                    timeline=timeline, label=name)
    return LogAggregator(streams, buffer=buffer, overflow=overflow, timeline=timeline,
                         grace=grace)


def _check_int(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int (lines/characters), not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{what} must be at least 1, not {value}")


def _check_program(args: list, env: Mapping[str, str] | None, cwd: Any) -> None:
    """Find a missing program now, so that nothing starts (``spawn`` would find it later)."""
    program = os.fsdecode(args[0])
    if "/" in program:
        where = program if cwd is None else os.path.join(os.fspath(cwd), program)
        found = os.path.exists(where)
    else:
        found = shutil.which(program, path=(env or os.environ).get("PATH", os.defpath))
    if not found:
        missing = FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        raise spawn_error(args, missing, env) from None


# -- colour ---------------------------------------------------------------------------------

# (ANSI code, HTML colour) pairs, readable on light and dark backgrounds.
_PALETTE = [("36", "#0e7490"), ("35", "#a21caf"), ("33", "#a16207"), ("32", "#15803d"),
            ("34", "#1d4ed8"), ("96", "#0891b2"), ("95", "#c026d3"), ("93", "#ca8a04")]
_ERR_HTML = "#b91c1c"


def use_color(stream: Any = None, environ: Mapping[str, str] | None = None) -> bool:
    """Colour for ``stream`` (default stdout)? Never when ``NO_COLOR`` is set and not empty
    (no-color.org); always when ``FORCE_COLOR`` is; otherwise only for a terminal."""
    environ = os.environ if environ is None else environ
    if environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR"):
        return True
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def format_line(line: LogLine, *, width: int = 0, color: bool = False, index: int = 0) -> str:
    """One line as ``[name] text`` (``[name:err]`` for stderr; a split piece ends in ``…``)."""
    tag = line.name if line.source == "stdout" else f"{line.name}:err"
    pad = " " * max(1, width + 5 - len(tag))  # texts line up after the longest "[name:err]"
    text = f"{line.text}…" if line.split else line.text
    if not color:
        return f"[{tag}]{pad}{text}"
    code = _PALETTE[index % len(_PALETTE)][0]
    shown = (f"\x1b[{code}m[{line.name}\x1b[0m\x1b[1;31m:err\x1b[0m\x1b[{code}m]\x1b[0m"
             if line.source == "stderr" else f"\x1b[{code}m[{tag}]\x1b[0m")
    return f"{shown}{pad}{text}"


class LogView(list):
    """A list of :class:`LogLine` that a notebook shows as coloured HTML (``_repr_html_``).

    Colours follow ``names`` (default: the order in which names first appear); stderr tags are
    red. Text is escaped, so a child's output cannot inject markup.
    """

    def __init__(self, lines: Iterable[LogLine] = (), names: Sequence[str] | None = None):
        super().__init__(lines)
        order = list(names) if names is not None else []
        for line in self:
            if line.name not in order:
                order.append(line.name)
        self.names = order

    def __repr__(self) -> str:
        width = max(map(len, self.names), default=0)
        return "\n".join(format_line(line, width=width) for line in self)

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        width = max(map(len, self.names), default=0) + 5
        rows = []
        for line in self:
            colour = _PALETTE[self.names.index(line.name) % len(_PALETTE)][1]
            tag = f'<span style="color:{colour};font-weight:bold">[{html.escape(line.name)}'
            if line.source == "stderr":
                tag += f'<span style="color:{_ERR_HTML}">:err</span>'
            tag += "]</span>"
            visible = len(line.name) + (4 if line.source == "stderr" else 0)
            pad = " " * max(1, width - visible)
            text = html.escape(line.text) + ("…" if line.split else "")
            style = f' style="color:{_ERR_HTML}"' if line.source == "stderr" else ""
            rows.append(f"{tag}{pad}<span{style}>{text}</span>")
        body = "\n".join(rows)
        return f'<pre style="font-family:monospace;line-height:1.3;margin:0">{body}</pre>'


# -- command line -----------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m asyncproc_kit.cases.logs",
        description="Run commands at once and show their output as one tagged stream. "
                    "Commands are split like a shell would split them (shlex), but no shell "
                    "runs them.",
        epilog='example: python -m asyncproc_kit.cases.logs web="python -m http.server" '
               'worker="python worker.py" --kill-others-on-fail')
    parser.add_argument("commands", nargs="+", metavar="NAME=COMMAND")
    parser.add_argument("--kill-others", action="store_true",
                        help="when one command exits, stop the others")
    parser.add_argument("--kill-others-on-fail", action="store_true",
                        help="when one command fails, stop the others")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour the tags (auto: a terminal and NO_COLOR unset)")
    parser.add_argument("--buffer", type=int, default=1024, help="lines held for the display")
    parser.add_argument("--overflow", choices=OVERFLOW, default="block")
    args = parser.parse_args(argv)
    parsed: dict[str, list[str]] = {}
    for item in args.commands:
        name, sep, command = item.partition("=")
        if not sep or not name or not command.strip():
            parser.error(f"{item!r}: write NAME=COMMAND, e.g. web='python -m http.server'")
        if name in parsed:
            parser.error(f"the name {name!r} is given twice")
        try:
            parsed[name] = shlex.split(command)
        except ValueError as exc:
            parser.error(f"{name}: cannot split {command!r}: {exc}")
    args.parsed = parsed
    return args


def exit_status(returncode: int) -> int:
    """A child's return code as a process exit status (a signal N becomes 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


async def _main(args: argparse.Namespace, out: Any) -> int:
    color = {"always": True, "never": False}.get(args.color)
    color = use_color(out) if color is None else color
    failure: int | None = None
    async with aggregate(args.parsed, buffer=args.buffer, overflow=args.overflow) as logs:

        async def watch() -> None:
            nonlocal failure
            async for name, returncode in logs.exits():
                if name in logs.stopped:
                    continue  # we stopped it: not a failure of its own
                if returncode != 0 and failure is None:
                    failure = exit_status(returncode)
                if args.kill_others or (args.kill_others_on_fail and returncode != 0):
                    await logs.terminate()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            async for line in logs:
                out.write(logs.format(line, color=color) + "\n")
                if logs._idle():
                    out.flush()
    out.flush()
    for summary in logs.summary.values():
        print(summary, file=sys.stderr)
    return failure or 0


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``python -m asyncproc_kit.cases.logs NAME=COMMAND ...``.

    Exit status: 0 if every command succeeded, else the status of the first that failed on its
    own (one ended by ``--kill-others`` does not count); 130 after Ctrl-C.
    """
    args = _parse_args(argv)
    try:
        return anyio.run(_main, args, sys.stdout)
    except KeyboardInterrupt:
        return 130
    except ProcessError as exc:  # a program that is not there: said before anything starts
        print(f"error: {exc}", file=sys.stderr)
        return 127
    except (TypeError, ValueError) as exc:  # e.g. --buffer 0
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
