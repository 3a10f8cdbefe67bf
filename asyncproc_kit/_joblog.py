"""A :class:`Timeline` as a GNU parallel joblog, so runs can be compared with ``parallel``.

``parallel --joblog FILE`` writes one tab-separated line per finished job under a header::

    Seq  Host  Starttime       JobRuntime  Send  Receive  Exitval  Signal  Command
    1    :     1795896492.331       0.002     0        0        3       0  sh -c 'exit 3'

``timeline.joblog()`` writes the same columns for every process the timeline saw end, so
the same scripts (``sort -k4 -n`` for the slowest jobs, ``awk -F'\\t' '$7 != 0'`` for the
failures) work on both. Column by column, as parallel fills them:

* ``Seq``: the span's position on the timeline, from 1 (for ``map_limited``: the input
  order; for a pool: the submission order).
* ``Host``: ``:``, parallel's name for the local machine.
* ``Starttime``: Unix time of the start, 3 decimals. ``JobRuntime``: seconds, truncated to
  milliseconds and right-aligned in 10 characters, as parallel prints it.
* ``Send`` / ``Receive``: bytes written to the child's stdin / read from its stdout and
  stderr (parallel counts bytes sent to and from remote hosts, 0 locally).
* ``Exitval`` / ``Signal``: the exit code, or 0 and the signal number when a signal ended
  it; ``-1`` when the kit itself ended it (timeout, cancellation), as parallel does for jobs
  it kills. A command that could not start gets 127, the shell's "command not found".
* ``Command``: the arguments joined with shell quoting (``shlex.join``), newlines written as
  NUL like parallel does.

Processes that have not ended yet, and jobs that never left a queue, are not listed.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._timeline import Span, Timeline

HEADER = ("Seq", "Host", "Starttime", "JobRuntime", "Send", "Receive", "Exitval", "Signal",
          "Command")
KILLED_BY_US = ("timeout", "cancelled")


@dataclass(frozen=True)
class JoblogEntry:
    """One line of a joblog, parsed (see :func:`read_joblog`)."""

    seq: int
    host: str
    starttime: float
    runtime: float
    send: int
    receive: int
    exitval: int
    signal: int
    command: str


def joblog_line(seq: int, span: Span, epoch: float) -> str | None:
    """The joblog line for ``span`` (``None`` if it has not ended or never started)."""
    if span.outcome == "spawn-error":
        start = span.queued if span.queued is not None else 0.0
        exitval, sig, runtime = 127, 0, 0.0
    elif span.started is None or span.ended is None:
        return None
    else:
        start = span.started
        runtime = int((span.ended - span.started) * 1000) / 1000  # parallel truncates
        code = span.returncode if span.returncode is not None else 0
        sig = -code if code < 0 else 0
        exitval = code if code >= 0 else 0
        if span.outcome in KILLED_BY_US:
            exitval = -1
    command = shlex.join(span.args).replace("\n", "\0")
    return "\t".join((str(seq), ":", f"{epoch + start:.3f}", f"{runtime:10.3f}",
                      str(span.sent), str(span.received), str(exitval), str(sig), command))


def format_joblog(timeline: Timeline) -> str:
    """The whole joblog of ``timeline`` as text: the header, then one line per ended process."""
    lines = ["\t".join(HEADER)]
    for seq, span in enumerate(timeline.spans, start=1):
        line = joblog_line(seq, span, timeline.epoch)
        if line is not None:
            lines.append(line)
    return "\n".join(lines) + "\n"


def read_joblog(text: str) -> list[JoblogEntry]:
    """Parse a joblog written by ``parallel --joblog`` or by :meth:`Timeline.joblog`.

    **Errors:** ``ValueError`` naming the line when the header or a field is not what
    parallel writes.
    """
    lines = text.splitlines()
    if not lines or tuple(lines[0].split("\t")) != HEADER:
        raise ValueError("not a joblog: the first line must be the tab-separated header "
                         + " ".join(HEADER))
    entries = []
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        fields = line.split("\t", len(HEADER) - 1)
        try:
            seq, host, start, runtime, send, receive, exitval, sig, command = fields
            entries.append(JoblogEntry(int(seq), host, float(start), float(runtime), int(send),
                                       int(receive), int(exitval), int(sig), command))
        except ValueError:
            raise ValueError(f"joblog line {number} is malformed: {line!r}") from None
    return entries
