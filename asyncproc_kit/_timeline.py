"""Recording what each child process did, and when, so concurrency can be *seen*.

Pass the same ``Timeline`` to any helper that takes ``timeline=``; each process gets a
:class:`Span` with its times in seconds since the timeline was created::

    tl = Timeline()
    await run(["sleep", "0.2"], timeline=tl, label="nap")
    tl.spans[0].duration        # ~0.2
    plots.plot_timeline(tl)     # a Gantt chart

A timeline belongs to one event loop (it is not thread-safe, and needs no locking there).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ._errors import format_command


@dataclass
class Span:
    """One process on a :class:`Timeline`. Times are seconds since the timeline's origin."""

    label: str
    args: list[str]
    queued: float | None = None
    started: float | None = None
    first_output: float | None = None
    ended: float | None = None
    pid: int | None = None
    returncode: int | None = None
    outcome: str | None = None  # "ok", "failed", "signal", "timeout", "cancelled", "spawn-error"
    events: list[tuple[float, str]] = field(default_factory=list)
    sent: int = 0  # bytes written to stdin
    received: int = 0  # bytes read from stdout and stderr

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    @property
    def waited(self) -> float | None:
        """How long it sat in a queue before it started (``None`` if it never queued)."""
        if self.queued is None or self.started is None:
            return None
        return self.started - self.queued


class Timeline:
    """An append-only record of :class:`Span` objects, one per process."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self.origin = clock()
        self.epoch = time.time()  # wall-clock time of the origin, for exports
        self.spans: list[Span] = []
        self.marks: list[tuple[float, str]] = []  # (time, name): moments not tied to a process

    def now(self) -> float:
        """Seconds since this timeline was created."""
        return self._clock() - self.origin

    def add(self, args: Sequence[object], label: str | None = None, *,
            queued: bool = False) -> Span:
        span = Span(label=label or format_command(args), args=[str(a) for a in args])
        if queued:
            span.queued = self.now()
        self.spans.append(span)
        return span

    def event(self, span: Span, name: str) -> None:
        span.events.append((self.now(), name))

    def mark(self, name: str, at: float | None = None) -> float:
        """Note a moment that belongs to no single process (``"limit raised"``, ``"retry"``).

        ``at`` is seconds since the origin (default: now). Marks are drawn as vertical lines
        by :func:`asyncproc_kit.plots.plot_timeline`. Returns the time recorded.
        """
        when = self.now() if at is None else float(at)
        self.marks.append((when, str(name)))
        return when

    def summary(self) -> TimelineSummary:
        """Counts and totals for the spans so far: what a plot title or a report needs."""
        outcomes: dict[str, int] = {}
        for s in self.spans:
            key = s.outcome or ("running" if s.started is not None else "not started")
            outcomes[key] = outcomes.get(key, 0) + 1
        durations = sorted(d for s in self.spans if (d := s.duration) is not None)
        return TimelineSummary(processes=len(self.spans), outcomes=outcomes,
                               makespan=self.makespan, busy=sum(durations),
                               peak_concurrency=self.peak_concurrency(),
                               failures=sum(n for k, n in outcomes.items() if k in FAILURES),
                               p50=_percentile(durations, 50), p95=_percentile(durations, 95),
                               bytes_out=sum(s.received for s in self.spans),
                               bytes_in=sum(s.sent for s in self.spans))

    def peak_concurrency(self) -> int:
        """The largest number of processes that were running at the same moment."""
        edges = []
        for s in self.spans:
            if s.started is not None:
                edges.append((s.started, 1))
                edges.append((s.ended if s.ended is not None else float("inf"), -1))
        peak = running = 0
        for _, step in sorted(edges):  # at equal times the end (-1) sorts before the start
            running += step
            peak = max(peak, running)
        return peak

    @property
    def makespan(self) -> float:
        """Seconds from the first start to the last end."""
        done = [s for s in self.spans if s.started is not None and s.ended is not None]
        if not done:
            return 0.0
        return max(s.ended for s in done) - min(s.started for s in done)  # type: ignore[type-var]

    def joblog(self, path: str | None = None) -> str:
        """The timeline as a GNU ``parallel --joblog`` file (tab-separated); also written to
        ``path`` when given. Columns and conventions: see ``asyncproc_kit._joblog``."""
        from ._joblog import format_joblog

        text = format_joblog(self)
        if path is not None:
            with open(path, "w", encoding="utf-8") as file:
                file.write(text)
        return text

    def __len__(self) -> int:
        return len(self.spans)

    def __repr__(self) -> str:
        return (f"<Timeline: {len(self.spans)} processes, "
                f"peak concurrency {self.peak_concurrency()}>")


@dataclass(frozen=True)
class TimelineSummary:
    """What :meth:`Timeline.summary` returns.

    ``busy`` is the sum of every finished process's duration and ``makespan`` the time from
    the first start to the last end, so ``average_concurrency`` (``busy / makespan``) is how
    many were running at an average moment. ``busy`` is *not* a fair estimate of running
    them one after another: started together, processes compete for the CPU and each takes
    longer than it would alone (time one alone for that, as the timing explorer does).

    The metrics a dashboard wants: ``failures`` (processes that failed, were killed by a
    signal, timed out or could not start), ``p50`` and ``p95`` (the median and 95th
    percentile duration of finished processes, nearest-rank; ``None`` before any finished),
    ``bytes_out`` (read from their stdout and stderr) and ``bytes_in`` (written to stdin).
    :meth:`metrics` puts them in a few lines.
    """

    processes: int
    outcomes: dict[str, int]
    makespan: float
    busy: float
    peak_concurrency: int
    failures: int = 0
    p50: float | None = None
    p95: float | None = None
    bytes_out: int = 0
    bytes_in: int = 0

    @property
    def average_concurrency(self) -> float:
        return self.busy / self.makespan if self.makespan > 0 else 0.0

    def __str__(self) -> str:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes.items()))
        return (f"{self.processes} processes ({counts or 'none'}): {self.makespan:.2f} s "
                f"from first start to last end, {self.busy:.2f} s busy in total, "
                f"peak concurrency {self.peak_concurrency}")

    def metrics(self) -> str:
        """Count, failures, p50/p95 duration and bytes, one fact per line."""
        counts = ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes.items()))
        if self.p50 is None or self.p95 is None:
            durations = "no process finished yet"
        else:
            durations = f"p50 {self.p50:.2f} s, p95 {self.p95:.2f} s"
        return (f"processes: {self.processes} ({counts or 'none'})\n"
                f"failures:  {self.failures}\n"
                f"duration:  {durations}\n"
                f"bytes:     {self.bytes_out} out (stdout + stderr), {self.bytes_in} in (stdin)")


FAILURES = frozenset({"failed", "signal", "timeout", "spawn-error"})
"""The outcomes that count as failures in :attr:`TimelineSummary.failures` (a cancelled
process was stopped on purpose and is not one)."""


def _percentile(ordered: list[float], percent: float) -> float | None:
    """Nearest-rank percentile of an ascending list: a value that really occurred."""
    if not ordered:
        return None
    rank = math.ceil(percent / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def outcome_of(returncode: int) -> str:
    if returncode == 0:
        return "ok"
    return "signal" if returncode < 0 else "failed"
