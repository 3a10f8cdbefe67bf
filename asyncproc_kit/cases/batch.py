"""Many files through one command, surviving failures and interruption (case study 1, notebook 09).

The seed's ``BatchProcessor`` hands every ``.avi`` file to ffmpeg, four at a time. This is
the same job done so that nothing is lost, whatever happens::

    from asyncproc_kit.cases.batch import process_files

    def transcode(clip, part):
        return ["ffmpeg", "-y", "-i", clip, "-c:v", "libx264", part]

    report = await process_files(Path("videos").glob("*.avi"), transcode,
                                 output_for=lambda p: Path("out") / f"{p.stem}.mp4",
                                 journal="out/journal.jsonl", workers=4)
    print(report)      # 19 ok, 1 failed, 0 timeout, 0 skipped, 0 halted (20 files)

**Atomic outputs.** The command writes to ``part``, a temporary name beside the output that
keeps its suffix (``out/.clip.part.mp4``: ffmpeg picks the format from it). Only after exit
0 is ``part`` renamed to the output with :func:`os.replace`, which is atomic on one file
system; after a failure, a timeout, a halt or a cancellation ``part`` is deleted. So an
output that exists is always complete, and no ``part`` file outlives the call.

**A journal keyed by identity, not position.** With ``journal=``, one JSON line is appended,
flushed and fsynced per finished item. An item is known by its input's resolved path, size
and ``mtime_ns``, its output path, and the command's arguments (the part path replaced by
``{part}``). A re-run skips an item whose last record is ``ok`` when its output still
exists; everything else (new, changed, failed, timed out, interrupted) runs again. GNU
parallel's ``--resume`` keys jobs by sequence number instead, so adding one input at the
front makes it skip the new file and re-run an old one.

**One failure never loses the rest** (``halt="never"``); ``halt="first"`` or ``halt="20%"``
stop early, terminating running commands (whole process groups) and marking them and the
unstarted items ``"halted"``. ``retries=N`` runs a failed or timed-out item up to N more
times; a missing program (:class:`~asyncproc_kit.SpawnError`) is never retried.

**Cancellation** (a cancel scope, a notebook interrupt): running commands are terminated,
their part files deleted, finished items stay in the journal, and the cancellation goes on;
the next run with the same journal runs exactly the unfinished items.

The scheduling is the kit's :class:`~asyncproc_kit.ProcessPool` (FIFO, at most ``workers``
children at any moment); this module adds only what a batch of files needs around it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISLNK
from typing import IO, Any

import anyio
import anyio.to_thread

from asyncproc_kit import (
    DEFAULT_GRACE,
    PoolCancelled,
    ProcessFailed,
    ProcessPool,
    ProcessResult,
    ProcessTimeout,
    Progress,
    SpawnError,
    Timeline,
    default_workers,
)

__all__ = [
    "PART_PLACEHOLDER",
    "STATUSES",
    "BatchReport",
    "FileResult",
    "JournalRecord",
    "journal_joblog",
    "part_path",
    "process_files",
    "read_journal",
]

STATUSES = ("ok", "failed", "timeout", "skipped", "halted")
"""Every status a :class:`FileResult` can have, in the order reports list them."""

PART_PLACEHOLDER = "{part}"
"""What the part path becomes in the journal's copy of a command (it differs run to run
only in name, so it must not change the item's identity)."""

JOURNAL_VERSION = 1
STDERR_TAIL_LINES = 5


def _default_output(path: Path) -> Path:
    return path.with_suffix(".mp4")


def part_path(output: str | os.PathLike[str]) -> Path:
    """The temporary name the command writes to: ``out/clip.mp4`` -> ``out/.clip.part.mp4``.

    Hidden (a leading dot), in the output's own folder (so the final rename stays on one
    file system and is atomic), and ending with the output's suffix (tools such as ffmpeg
    choose the container from it).
    """
    out = Path(output)
    return out.with_name(f".{out.stem}.part{out.suffix}")


# -- results ---------------------------------------------------------------------------------

@dataclass
class FileResult:
    """What happened to one input.

    ``status`` is one of :data:`STATUSES`; ``reason`` says why in one sentence;
    ``returncode`` is the last attempt's exit status (``None`` if nothing ran);
    ``attempts`` counts the runs (0 for skipped, halted before starting, or a missing
    input); ``duration`` is the seconds spent running, all attempts together;
    ``stderr_tail`` the last lines the command wrote to stderr.
    """

    input: Path
    output: Path
    status: str
    reason: str
    returncode: int | None = None
    attempts: int = 0
    duration: float = 0.0
    stderr_tail: str = ""

    def __str__(self) -> str:
        return f"{self.status:<8} {self.input.name} -> {self.output.name}: {self.reason}"


@dataclass
class BatchReport:
    """What :func:`process_files` returns: one :class:`FileResult` per input, in input order.

    ``counts`` maps every status to how many items have it; ``ok`` is True when nothing
    failed, timed out or was halted. Iterating the report iterates ``items``. ``timeline``
    holds every attempt that ran (plot it with ``plots.plot_timeline``; :meth:`joblog`
    exports it as GNU parallel's joblog).
    """

    items: list[FileResult]
    timeline: Timeline
    journal: Path | None = None
    halt_reason: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for item in self.items:
            counts[item.status] += 1
        return counts

    @property
    def ok(self) -> bool:
        return not any(item.status in ("failed", "timeout", "halted") for item in self.items)

    def with_status(self, *statuses: str) -> list[FileResult]:
        """The items that have one of ``statuses``, in input order."""
        return [item for item in self.items if item.status in statuses]

    def joblog(self, path: str | os.PathLike[str] | None = None) -> str:
        """This run's attempts as a GNU ``parallel --joblog`` (see ``Timeline.joblog``)."""
        return self.timeline.joblog(None if path is None else os.fspath(path))

    def __iter__(self) -> Iterator[FileResult]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __str__(self) -> str:
        counts = ", ".join(f"{n} {status}" for status, n in self.counts.items())
        return f"{counts} ({len(self.items)} files)"

    def __repr__(self) -> str:
        return f"<BatchReport {self}>"


# -- the journal -----------------------------------------------------------------------------

@dataclass(frozen=True)
class JournalRecord:
    """One line of a journal: a finished item, its identity and how it ended."""

    input: str
    size: int
    mtime_ns: int
    output: str
    argv: tuple[str, ...]
    status: str
    returncode: int | None
    attempts: int
    started: float
    duration: float

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.input, self.size, self.mtime_ns, self.output, self.argv)

    def to_json(self) -> str:
        return json.dumps({"v": JOURNAL_VERSION, "input": self.input, "size": self.size,
                           "mtime_ns": self.mtime_ns, "output": self.output,
                           "argv": list(self.argv), "status": self.status,
                           "returncode": self.returncode, "attempts": self.attempts,
                           "started": round(self.started, 6),
                           "duration": round(self.duration, 6)}, ensure_ascii=False)


_NUMBER = (int, float)


def _record(line: str) -> JournalRecord:
    """Parse one journal line; ``ValueError`` saying what is wrong with it.

    Flat checks on purpose: a resume of 10,000 items parses 10,000 of these.
    """
    data = json.loads(line)
    if type(data) is not dict or data.get("v") != JOURNAL_VERSION:
        raise ValueError(f"not a version-{JOURNAL_VERSION} journal record")
    try:
        source, size, mtime_ns, output = (data["input"], data["size"], data["mtime_ns"],
                                          data["output"])
        argv, status, code = data["argv"], data["status"], data["returncode"]
        attempts, started, duration = data["attempts"], data["started"], data["duration"]
    except KeyError as exc:
        raise ValueError(f"the field {exc.args[0]!r} is missing") from None
    if not (type(source) is str and type(output) is str and type(size) is int
            and type(mtime_ns) is int and type(argv) is list
            and all(type(a) is str for a in argv) and status in ("ok", "failed", "timeout")
            and (code is None or type(code) is int) and type(attempts) is int
            and type(started) in _NUMBER and type(duration) in _NUMBER
            and math.isfinite(started) and math.isfinite(duration)):
        raise ValueError("a field has the wrong type or value")
    return JournalRecord(source, size, mtime_ns, output, tuple(argv), status, code, attempts,
                         float(started), float(duration))


def read_journal(path: str | os.PathLike[str]) -> list[JournalRecord]:
    """Every record in the journal at ``path`` (oldest first; ``[]`` if there is none).

    A last line cut short (the process died while appending it) is ignored: that item simply
    runs again. Any other line that is not a record raises ``ValueError`` naming the line,
    so a wrong file passed as ``journal=`` is never appended to.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except UnicodeDecodeError:
        raise ValueError(f"journal {str(path)!r} is not UTF-8 text, so it is not a journal "
                         "written by process_files: pass another path") from None
    lines = text.split("\n")
    torn = lines.pop()  # "" when the file ends with a newline, else an unfinished line
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(_record(line))
        except ValueError as exc:
            raise ValueError(f"journal {str(path)!r} line {number} is not a process_files "
                             f"record ({exc}): pass another path, or delete the file to "
                             "start afresh") from None
    if torn.strip():
        try:
            records.append(_record(torn))  # complete but for the newline
        except ValueError:
            pass  # cut short by a crash: that item runs again
    return records


def journal_joblog(path: str | os.PathLike[str]) -> str:
    """The journal at ``path`` as a GNU ``parallel --joblog`` file (one line per record).

    ``Seq`` numbers the records in the order they finished; the command column shows the
    part path as ``{part}``. ``read_joblog`` from the kit parses the result.
    """
    import shlex

    lines = ["\t".join(("Seq", "Host", "Starttime", "JobRuntime", "Send", "Receive",
                        "Exitval", "Signal", "Command"))]
    for seq, record in enumerate(read_journal(path), start=1):
        code = record.returncode
        if record.status == "timeout":
            exitval, sig = -1, 0
        elif code is None:  # it could not start: the shell's "command not found"
            exitval, sig = 127, 0
        else:
            exitval, sig = (code, 0) if code >= 0 else (0, -code)
        runtime = int(record.duration * 1000) / 1000
        lines.append("\t".join((str(seq), ":", f"{record.started:.3f}", f"{runtime:10.3f}",
                                "0", "0", str(exitval), str(sig),
                                shlex.join(record.argv).replace("\n", "\0"))))
    return "\n".join(lines) + "\n"


def _drop_torn_line(path: Path) -> None:
    """Before appending: cut off a last line that a crash left unfinished (it is not a
    record, and our next record must not be glued to it); end a whole one with a newline."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    start = data.rfind(b"\n") + 1
    try:
        _record(data[start:].decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors too
        with open(path, "r+b") as file:
            file.truncate(start)
    else:
        with open(path, "ab") as file:
            file.write(b"\n")


class _JournalWriter:
    """Appends records durably without blocking the event loop (group commit).

    The write, flush and fsync run in a worker thread. Records that finish while one batch
    is being written go into the next batch, so a fast batch pays for far fewer fsyncs than
    records, yet :meth:`append` returns only once its own record is on disk.
    """

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        _drop_torn_line(path)
        self._file: IO[str] = open(path, "a", encoding="utf-8")  # closed by close()
        self._pending: list[str] = []
        self._next = anyio.Event()
        self._flushing = False
        self._error: BaseException | None = None

    def _write(self, lines: list[str]) -> None:
        self._file.write("".join(lines))
        self._file.flush()
        os.fsync(self._file.fileno())

    async def append(self, record: JournalRecord) -> None:
        """Write ``record`` and return once it is fsynced (call it shielded)."""
        if self._error is not None:
            raise OSError(f"the journal {str(self.path)!r} could not be written") \
                from self._error
        self._pending.append(record.to_json() + "\n")
        if self._flushing:
            done = self._next
            await done.wait()
            if self._error is not None:
                raise OSError(f"the journal {str(self.path)!r} could not be written") \
                    from self._error
            return
        self._flushing = True
        try:
            while self._pending:
                lines, self._pending = self._pending, []
                done, self._next = self._next, anyio.Event()
                try:
                    await anyio.to_thread.run_sync(self._write, lines)
                except BaseException as exc:
                    self._error = exc
                    raise
                finally:
                    done.set()
        finally:
            self._flushing = False
            if self._error is not None:
                self._next.set()

    def close(self) -> None:
        self._file.close()


# -- checking the arguments ------------------------------------------------------------------

def _check_halt(halt: Any) -> float | None:
    """``"never"`` -> None, ``"first"`` -> 0.0 (any failure), ``"20%"`` -> 0.2."""
    if halt == "never":
        return None
    if halt == "first":
        return 0.0
    if isinstance(halt, str) and halt.endswith("%"):
        try:
            share = float(halt[:-1]) / 100
        except ValueError:
            share = math.nan
        if 0 < share <= 1:
            return share
    raise ValueError(f"halt={halt!r} is not a halt policy: use 'never' (run everything), "
                     "'first' (stop at the first failure) or a share of all items such "
                     "as '20%' (stop once that many have failed)")


def _check_workers(workers: Any) -> int:
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"workers must be a whole number of commands at once, not "
                        f"{type(workers).__name__} {workers!r}")
    if workers < 1:
        raise ValueError(f"workers={workers} would never run anything: use at least 1 "
                         f"(or leave it out for {default_workers()})")
    return workers


def _check_retries(retries: Any) -> int:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a whole number of extra attempts (0 or more), "
                         f"not {retries!r}")
    return retries


def _check_timeout(timeout: Any) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
            or not timeout > 0 or math.isnan(timeout):
        raise ValueError(f"timeout must be seconds per attempt (a number above 0) or None, "
                         f"not {timeout!r}")
    return float(timeout)


def _argv(command: Callable[..., Any], source: Path, part: Path, shown: str) -> list[str]:
    """Call the learner's ``command(input, part)`` and check what it gives back
    (``shown`` is ``str(part)``)."""
    argv = command(source, part)
    if type(argv) is list and all(type(a) is str for a in argv) and argv:
        args = argv  # the common case, checked cheaply
    else:
        if isinstance(argv, str | bytes) or not isinstance(argv, Sequence) or not argv:
            raise TypeError(f"command({str(source)!r}, part) must return a non-empty list of "
                            f"arguments such as ['ffmpeg', '-i', input, part], not {argv!r}")
        try:
            args = [os.fspath(a) for a in argv]
        except TypeError:
            raise TypeError(f"command({str(source)!r}, part) returned {argv!r}: every "
                            "argument must be a str or a Path") from None
        if not all(isinstance(a, str) for a in args):
            raise TypeError(f"command({str(source)!r}, part) returned bytes in {argv!r}: "
                            "use str arguments")
    for arg in args:
        if shown in arg:
            return args
    raise ValueError(f"command({str(source)!r}, part) returned {args!r}, which never "
                     f"mentions the part path {shown!r}: write the output to part "
                     "(the kit renames it into place after exit 0, so a half-written "
                     "file is never taken for a finished one)")


# -- planning --------------------------------------------------------------------------------

@dataclass(slots=True)
class _Item:
    index: int
    input: Path
    output: Path
    part: Path
    argv: list[str]
    key: tuple[Any, ...] | None  # None: the input is missing
    result: FileResult | None = None
    attempts: int = 0
    duration: float = 0.0
    started: float | None = None
    label: str = ""


def _plan(inputs: Iterable[Any], command: Callable[..., Any],
          output_for: Callable[[Path], Any]) -> list[_Item]:
    """Check every input and build its command, before anything runs.

    Strings and ``os`` calls rather than ``Path.resolve()``: a resume of 10,000 items does
    nothing else, so one ``lstat`` per input (and one ``realpath`` per folder) is the budget.
    """
    if isinstance(inputs, str | bytes | os.PathLike):
        raise TypeError(f"inputs must be an iterable of paths, not one path {inputs!r}: "
                        "wrap it in a list, e.g. [path], or pass Path(folder).glob('*.avi')")
    real_dirs: dict[str, str] = {}

    def real(path: str) -> str:  # realpath, with the folder's part cached
        folder, _, name = path.rpartition("/")
        found = real_dirs.get(folder)
        if found is None:
            found = real_dirs[folder] = os.path.realpath(folder or "/")
        return f"{found}/{name}" if found != "/" else f"/{name}"

    absolute = os.path.abspath
    items: list[_Item] = []
    outputs: dict[str, Any] = {}
    for index, given in enumerate(inputs):
        if isinstance(given, Path):
            source = given
        elif isinstance(given, str | os.PathLike):
            source = Path(given)
        else:
            raise TypeError(f"input number {index} is {given!r}: inputs must be str or Path")
        output = output_for(source)
        if not isinstance(output, str | os.PathLike):
            raise TypeError(f"output_for({str(given)!r}) returned {output!r}: return a path")
        named = os.fspath(output)
        out = absolute(named)
        out_path = output if out == named and isinstance(output, Path) else Path(out)
        if out in outputs:
            raise ValueError(f"{str(outputs[out])!r} and {str(given)!r} would both write "
                             f"{out!r}: make output_for give each input its own path")
        outputs[out] = given
        stem, suffix = os.path.splitext(out_path.name)
        part = out_path.with_name(f".{stem}.part{suffix}")
        shown = str(part)
        argv = _argv(command, source, part, shown)
        where = absolute(os.fspath(source))
        try:
            stat = os.lstat(where)
            if S_ISLNK(stat.st_mode):
                resolved = os.path.realpath(where)
                stat = os.stat(where)
            else:
                resolved = real(where)
        except FileNotFoundError:
            stat, resolved = None, where
        if real(out) == resolved:
            raise ValueError(f"output_for({str(given)!r}) returned the input itself: "
                             "outputs must be new files (change the folder or the suffix)")
        if stat is None:
            items.append(_Item(index, source, out_path, part, argv, None))
            continue
        key = (resolved, stat.st_size, stat.st_mtime_ns, out,
               tuple([a.replace(shown, PART_PLACEHOLDER) for a in argv]))
        items.append(_Item(index, source, out_path, part, argv, key))
    labels: dict[str, int] = {}
    for item in items:
        name = item.input.name
        labels[name] = labels.get(name, 0) + 1
        item.label = name if labels[name] == 1 else f"{name} ({labels[name]})"
    return items


def _tail(text: str | bytes | None) -> str:
    if not text:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    # ffmpeg redraws its status line with "\r": each redraw counts as a line here
    lines = [line for line in text.replace("\r", "\n").split("\n") if line.strip()]
    return "\n".join(lines[-STDERR_TAIL_LINES:])


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


# -- progress --------------------------------------------------------------------------------

def _in_notebook() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


class _Lines:
    """Progress off a terminal: one plain line per finished item (no ``\\r`` redraws)."""

    def __init__(self, total: int, file: IO[str]):
        self.total = total
        self.file = file
        self.finished = 0

    def item(self, result: FileResult) -> None:
        self.finished += 1
        width = len(str(self.total))
        print(f"[{self.finished:>{width}}/{self.total}] {result.status:<7} {result.input.name}"
              f" ({result.duration:.2f} s)", file=self.file, flush=True)


def _progress(progress: Any, total: int) -> tuple[Progress | None, _Lines | None, bool]:
    """-> (the Progress to update, the line printer, whether we close the Progress)."""
    if progress is None or progress is False:
        return None, None, False
    if isinstance(progress, Progress):
        if progress.total is None:
            progress.add(total)
        return progress, None, False
    if progress is True:
        if _in_notebook() or sys.stderr.isatty():
            return Progress(total, description="files"), None, True
        return Progress(total, description="files", bar=False), _Lines(total, sys.stderr), True
    raise TypeError(f"progress must be True, False, None or a Progress, not {progress!r}")


# -- running ---------------------------------------------------------------------------------

async def process_files(
    inputs: Iterable[str | os.PathLike[str]],
    command: Callable[[Path, Path], Sequence[str | os.PathLike[str]]],
    *,
    output_for: Callable[[Path], str | os.PathLike[str]] = _default_output,
    journal: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 (per attempt, as in subprocess.run)
    retries: int = 0,
    halt: str = "never",
    progress: Progress | bool | None = None,
    timeline: Timeline | None = None,
    grace: float = DEFAULT_GRACE,
    on_result: Callable[[FileResult], Any] | None = None,
) -> BatchReport:
    """Run ``command(input, part)`` for every input; outputs appear whole or not at all.

    ``command`` returns the argument list for one input, writing its output to ``part``
    (see :func:`part_path`); ``output_for(input)`` names the final output (default: the
    input with the suffix ``.mp4``). Missing output folders are created. Returns a
    :class:`BatchReport` with one :class:`FileResult` per input, in input order.

    **Limits:** at most ``workers`` commands at once (default :func:`default_workers`),
    started in input order; ``timeout`` seconds per attempt (the process group is then
    terminated: SIGTERM, ``grace`` s, SIGKILL); ``retries`` more attempts for a failure or
    timeout, never for a program that cannot start.

    **Journal:** ``journal=path`` records each finished item (JSON Lines, fsynced) and makes
    a re-run skip the items already done (status ``"skipped"``, nothing spawned). See the
    module docstring for what identifies an item.

    **Halting:** ``halt="never"`` (default) runs everything; ``"first"`` stops at the first
    final failure; ``"N%"`` once N percent of all items have failed or timed out. Running
    commands are then terminated and they and the unstarted items are ``"halted"``.

    **Errors:** a missing input is a ``"failed"`` item (nothing is spawned for it). Bad
    arguments (``workers < 1``, a ``command`` that is not callable or whose list does not
    mention ``part``, an unknown ``halt``, two inputs with one output) raise ``TypeError``
    or ``ValueError`` before anything starts. A journal that is not one raises
    ``ValueError``.

    **Cancellation:** running commands' groups are terminated and their part files deleted;
    items that finished are in the journal; the cancellation propagates.

    **Output:** ``progress=True`` draws a bar in a notebook or terminal and prints one line
    per finished item elsewhere (a CI log); a :class:`~asyncproc_kit.Progress` of your own
    keeps the counts. ``timeline=`` records every attempt. ``on_result(result)`` is called
    with each :class:`FileResult` as soon as it is known (skipped items first); an exception
    it raises ends the batch (running commands terminated, part files deleted) and comes
    out of ``process_files`` in an ``ExceptionGroup``.
    """
    if not callable(command):
        raise TypeError(f"command must be a function (input, part) -> list of arguments, "
                        f"not {command!r}")
    if not callable(output_for):
        raise TypeError(f"output_for must be a function input -> output path, "
                        f"not {output_for!r}")
    workers = _check_workers(workers)
    retries = _check_retries(retries)
    timeout = _check_timeout(timeout)
    threshold = _check_halt(halt)
    if not isinstance(grace, int | float) or isinstance(grace, bool) or grace < 0:
        raise ValueError(f"grace must be seconds (0 or more), not {grace!r}")
    if on_result is not None and not callable(on_result):
        raise TypeError(f"on_result must be a function taking a FileResult, not {on_result!r}")
    if progress is not None and not isinstance(progress, bool | Progress):
        raise TypeError(f"progress must be True, False, None or a Progress, not {progress!r}")
    items = _plan(inputs, command, output_for)
    journal_path = None if journal is None else Path(journal)
    done: dict[tuple[Any, ...], JournalRecord] = {}
    if journal_path is not None:
        if journal_path.is_dir():
            raise ValueError(f"journal={str(journal_path)!r} is a folder: give a file path, "
                             "e.g. 'work/journal.jsonl'")
        for record in read_journal(journal_path):
            done[record.key] = record  # the last record of an item wins
    writer = _JournalWriter(journal_path) if journal_path is not None else None
    bar, lines, owned = _progress(progress, len(items))
    try:
        # made after the bar (a notebook widget takes a moment), so the timeline's origin
        # is when the work begins
        batch = _Batch(items, workers=workers, retries=retries, timeout=timeout,
                       grace=grace, threshold=threshold, halt=halt,
                       timeline=timeline if timeline is not None else Timeline())
        batch.bar, batch.lines, batch.on_result, batch.writer = bar, lines, on_result, writer
        await batch.run(done)
    finally:
        if writer is not None:
            writer.close()
        if owned and bar is not None:
            bar.close()
    return BatchReport([item.result for item in items],  # type: ignore[misc]
                       batch.timeline, journal_path, batch.halt_reason)


def _describe(returncode: int | None) -> str:
    if returncode is None:
        return "no exit status"
    if returncode < 0:
        import signal
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class _Batch:
    """One call of :func:`process_files`: the pool, one task per item, halting, cleanup."""

    def __init__(self, items: list[_Item], *, workers: int, retries: int,
                 timeout: float | None, grace: float, threshold: float | None, halt: str,
                 timeline: Timeline):
        self.items = items
        self.workers = workers
        self.retries = retries
        self.timeout = timeout
        self.grace = grace
        self.threshold = threshold
        self.halt = halt
        self.timeline = timeline
        self.bar: Progress | None = None
        self.lines: _Lines | None = None
        self.on_result: Callable[[FileResult], Any] | None = None
        self.writer: _JournalWriter | None = None
        self.failures = 0
        self.halt_reason: str | None = None
        self.pool: ProcessPool | None = None
        self._halting = False
        self._running_shown: set[int] = set()

    # -- bookkeeping -------------------------------------------------------------------------

    def _finish(self, item: _Item, status: str, reason: str,
                outcome: ProcessResult | BaseException | None = None, *,
                counted: bool = False) -> None:
        code = getattr(outcome, "returncode", None)
        item.result = FileResult(item.input, item.output, status, reason,
                                 code if isinstance(code, int) else None, item.attempts,
                                 item.duration, _tail(getattr(outcome, "stderr", None)))
        if self.bar is not None:
            self.bar.ended(status in ("ok", "skipped"), ran=item.index in self._running_shown)
        if self.lines is not None and status != "skipped":
            self.lines.item(item.result)
        if status in ("failed", "timeout") and not counted:
            self._count_failure(item)
        if self.on_result is not None:
            self.on_result(item.result)

    def _count_failure(self, item: _Item) -> None:
        self.failures += 1
        self._maybe_halt(item)

    def _maybe_halt(self, item: _Item) -> None:
        if self.threshold is None or self.halt_reason is not None:
            return
        total = len(self.items)
        if self.failures < max(1, math.ceil(self.threshold * total - 1e-9)):
            return
        if self.threshold == 0:
            self.halt_reason = f"{item.label} failed and halt='first'"
        else:
            self.halt_reason = (f"{self.failures} of {total} items failed, which reaches "
                                f"halt={self.halt!r}")

    def _count(self, item: _Item, span: Any, error: BaseException | None) -> None:
        """Add one settled attempt to the item (a job cancelled in the queue never ran)."""
        if isinstance(error, PoolCancelled) and not error.started:
            return
        item.attempts += 1
        if span.duration is not None:
            item.duration += span.duration
        if item.started is None:
            item.started = self.timeline.epoch + (span.started if span.started is not None
                                                  else self.timeline.now())

    async def _journal(self, item: _Item, status: str, returncode: int | None) -> None:
        if self.writer is None or item.key is None:
            return
        source, size, mtime_ns, output, argv = item.key
        await self.writer.append(JournalRecord(
            source, size, mtime_ns, output, argv, status, returncode, item.attempts,
            item.started if item.started is not None else time.time(), item.duration))

    # -- running -----------------------------------------------------------------------------

    async def run(self, done: dict[tuple[Any, ...], JournalRecord]) -> None:
        to_run = []
        skipped = 0
        for item in self.items:
            if item.key is None:
                self._finish(item, "failed", f"the input {str(item.input)!r} does not exist, "
                             "so nothing was run for it")
                continue
            record = done.get(item.key)
            # a stat per item, microseconds each: not worth a thread
            if record is not None and record.status == "ok" and \
                    os.path.exists(item.output):  # noqa: ASYNC240
                skipped += 1
                self._finish(item, "skipped", "the journal has it done with this input and "
                             "command, and the output is there")
                continue
            to_run.append(item)
        if self.lines is not None and skipped:
            print(f"skipped {skipped} of {len(self.items)} files: done in an earlier run "
                  "(journal)", file=self.lines.file, flush=True)
        if not to_run:
            return
        for item in to_run:
            item.output.parent.mkdir(parents=True, exist_ok=True)
            _unlink(item.part)  # left by a run that was killed outright (kill -9, power cut)
        # The pool runs the commands, in input order. With a halt policy ``slots`` feeds it
        # one item per free worker, so that after a halt nothing new starts (its queue
        # holds no backlog); without one, everything is queued at once (no hand-off at all).
        slots = anyio.Semaphore(self.workers) if self.threshold is not None else None
        try:
            async with ProcessPool(min(self.workers, len(to_run)), queue_size=None,
                                   timeline=self.timeline, grace=self.grace) as pool:
                self.pool = pool
                async with anyio.create_task_group() as tg:
                    for number, item in enumerate(to_run):
                        if slots is not None:
                            await slots.acquire()
                        if self.halt_reason is not None:
                            if slots is not None:
                                slots.release()
                            for rest in to_run[number:]:
                                self._finish(rest, "halted", "never started: the batch "
                                             f"halted ({self.halt_reason})")
                            break
                        job = await pool.submit(item.argv, timeout=self.timeout,
                                                label=item.label)
                        tg.start_soon(self._follow, item, job, slots)
        finally:
            # The pool has reaped every child by now, so nothing writes a part file any
            # more: delete whatever a failure, a halt or a cancellation left behind.
            for item in to_run:
                _unlink(item.part)

    async def _follow(self, item: _Item, job: Any, slot: anyio.Semaphore | None) -> None:
        """Wait for one item's attempts, free its slot, then rename its part into place
        (or record why not). The item holds its slot across its retries."""
        try:
            outcome = await self._attempts(item, job)
            status = self._status_of(item, outcome)
            if status in ("failed", "timeout"):
                self._count_failure(item)  # before the slot is free: a halt starts nothing
        finally:
            if slot is not None:
                slot.release()
        with anyio.CancelScope(shield=True):  # a finished item must reach the journal
            await self._settle(item, outcome, status)
        if self.halt_reason is not None and not self._halting and self.pool is not None:
            self._halting = True
            await self.pool.cancel()

    async def _attempts(self, item: _Item, job: Any) -> Any:
        """Await the job, re-submitting failures and timeouts while retries are left."""
        while True:
            if self.bar is not None and item.index not in self._running_shown:
                await job.wait_started()
                if job.state == "running":
                    self._running_shown.add(item.index)
                    self.bar.started()
            try:
                outcome: Any = await job
                error: BaseException | None = None
            except (PoolCancelled, SpawnError, ProcessFailed, ProcessTimeout) as exc:
                outcome = error = exc
            self._count(item, job.span, error)
            if not (isinstance(error, ProcessFailed | ProcessTimeout)
                    and item.attempts <= self.retries and self.halt_reason is None):
                return outcome
            _unlink(item.part)
            assert self.pool is not None
            job = await self.pool.submit(item.argv, timeout=self.timeout, priority=-1,
                                         label=f"{item.label} #{item.attempts + 1}")

    def _status_of(self, item: _Item, outcome: Any) -> str:
        if isinstance(outcome, PoolCancelled):
            return "halted"
        if isinstance(outcome, ProcessTimeout):
            return "timeout"
        if isinstance(outcome, ProcessResult) and item.part.exists():
            return "ok"
        return "failed"

    async def _settle(self, item: _Item, outcome: Any, status: str) -> None:
        tries = f" after {item.attempts} attempts" if item.attempts > 1 else ""
        if status == "ok":
            os.replace(item.part, item.output)
            await self._journal(item, "ok", outcome.returncode)
            self._finish(item, "ok", f"done{tries}; the output was renamed into place",
                         outcome)
            return
        _unlink(item.part)
        if status == "halted":
            when = "terminated while running" if outcome.started else "never started"
            reason = f"{when}: the batch halted ({self.halt_reason})"
        elif isinstance(outcome, SpawnError):
            reason = (f"the program could not start ({outcome.reason}); not retried, it "
                      "would fail the same way")
        elif status == "timeout":
            reason = (f"it ran past the {outcome.timeout:g} s timeout{tries} and was "
                      "terminated; its part file was deleted")
        elif isinstance(outcome, ProcessFailed):
            reason = (f"the command failed with {_describe(outcome.returncode)}{tries}; its "
                      "part file was deleted")
        else:
            reason = (f"the command exited 0 but wrote nothing to the part path "
                      f"{str(item.part)!r}: make it write its output there")
        if status != "halted":
            code = getattr(outcome, "returncode", None)
            await self._journal(item, status, code if isinstance(code, int) else None)
        self._finish(item, status, reason, outcome, counted=True)
