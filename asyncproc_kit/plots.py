"""Pictures of concurrency: a :class:`~asyncproc_kit.Timeline` as a Gantt chart, and more.

Record, then draw::

    from asyncproc_kit import Timeline, run, plots

    tl = Timeline()
    await run(["sleep", "0.2"], timeline=tl, label="nap")
    plots.plot_timeline(tl)      # returns a matplotlib Figure; a notebook shows it

Every function returns a :class:`PlotFigure`, a matplotlib ``Figure`` built with the object
API (never ``pyplot``): safe in widget callbacks that run on another thread, shown once as a
PNG when it is a cell's value (no ``%matplotlib`` needed), and never shown twice. Pass ``ax=``
to draw into an axes of your own figure instead; ``to_png(fig)`` gives the PNG bytes.
Needs matplotlib (the ``notebooks`` extra).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ._breaker_plot import plot_breaker as plot_breaker
from ._errors import format_command
from ._timeline import Span, Timeline

__all__ = [
    "OUTCOME_COLORS",
    "PlotFigure",
    "plot_breaker",
    "plot_sync_vs_async",
    "plot_timeline",
    "to_png",
]

OUTCOME_COLORS: dict[str, str] = {
    "ok": "#4c9a2a",
    "failed": "#d62728",
    "signal": "#9467bd",
    "timeout": "#ff7f0e",
    "cancelled": "#7f7f7f",
    "spawn-error": "#8c564b",
    "running": "#1f77b4",
}
"""Bar colour for each ``Span.outcome`` (``"running"``: not finished when drawn)."""

_OUTCOME_NAMES = {
    "ok": "exit 0",
    "failed": "exit code != 0",
    "signal": "killed by a signal",
    "timeout": "timed out",
    "cancelled": "cancelled",
    "spawn-error": "could not start",
    "running": "still running",
}

class PlotFigure(Figure):
    """A :class:`~matplotlib.figure.Figure` that a notebook shows as a PNG by itself.

    Returned by the functions here, so a plot appears as the value of a cell even when the
    notebook never ran ``%matplotlib inline`` (a plain Figure would show only its text).
    """

    def _repr_png_(self) -> bytes:
        return to_png(self)


def to_png(fig: Figure, *, dpi: int = 100) -> bytes:
    """Render ``fig`` to PNG bytes with Agg: no GUI, no pyplot, safe on any thread."""
    buffer = io.BytesIO()
    FigureCanvasAgg(fig)  # attach a canvas of our own
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


_SIGNAL_MARKERS = {"SIGTERM": "v", "SIGKILL": "X", "SIGINT": "s"}
_MAX_LABELS = 25  # more bars than this: label only every k-th one
_LABEL_CHARS = 28


def plot_timeline(timeline: Timeline, *, ax: Axes | None = None,
                  title: str | None = None) -> Figure:
    """Draw ``timeline`` as a Gantt chart: one horizontal bar per process, top to bottom.

    ``plot_timeline(tl)`` returns a new Figure sized for the number of processes;
    ``plot_timeline(tl, ax=my_axes)`` draws into ``my_axes`` and returns its figure.

    **Output:** the x axis is seconds since the timeline began. A bar spans start to end and
    its colour is the outcome (exit 0, non-zero exit, killed by a signal, timed out,
    cancelled, still running); a lighter bar before it is time spent queued (``Span.queued``);
    a small tick is the first output; markers on the bar are the signals the kit sent
    (▼ SIGTERM, ✕ SIGKILL); dashed vertical lines are :meth:`Timeline.mark` moments. The
    legend lists only what appears. With many processes the bars get thinner and only some
    labels are shown, so 100 processes stay readable.
    """
    spans = list(timeline.spans)
    if ax is None:
        fig = PlotFigure(figsize=(8, _height_for(len(spans))), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure  # type: ignore[assignment]
    now = timeline.now()
    bar_height = 0.5 if len(spans) <= 2 else 0.8 if len(spans) <= 30 else 0.9
    seen: dict[str, object] = {}
    for row, span in enumerate(spans):
        _draw_span(ax, row, span, now, bar_height, seen)
    for when, name in timeline.marks:
        ax.axvline(when, color="0.25", linestyle="--", linewidth=1, zorder=1)
        ax.annotate(name, (when, 1), xycoords=("data", "axes fraction"), xytext=(3, -3),
                    textcoords="offset points", ha="left", va="top", fontsize=8,
                    rotation=90, color="0.25", zorder=6,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
        seen.setdefault("mark", Line2D([], [], color="0.25", linestyle="--", label="mark"))
    _label_rows(ax, spans)
    ax.set_xlabel("seconds since the timeline began")
    ax.set_xlim(left=0, right=max(_latest(timeline, now) * 1.04, 0.01))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10]))
    ax.grid(axis="x", color="0.9", zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(title if title is not None else _default_title(timeline), fontsize=11)
    if seen:
        ax.legend(handles=[seen[key] for key in sorted(seen, key=_legend_order)],
                  loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False,
                  borderaxespad=0)
    return fig


def plot_sync_vs_async(sync_seconds: float, async_seconds: float, *,
                       count: int | None = None, ax: Axes | None = None,
                       title: str | None = None) -> Figure:
    """Two horizontal bars: the same work one after another, and all at once.

    ``plot_sync_vs_async(2.1, 0.25, count=10)`` labels each bar with its seconds and writes
    the speedup (``sync / async``) in the title. ``count`` (the number of processes) only
    adds to the title. Returns the Figure (``ax=`` draws into your axes instead).
    """
    for name, value in (("sync_seconds", sync_seconds), ("async_seconds", async_seconds)):
        if not value >= 0:
            raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
    if ax is None:
        fig = PlotFigure(figsize=(7, 2.2), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure  # type: ignore[assignment]
    names = ["one after another", "concurrently"]
    values = [sync_seconds, async_seconds]
    bars = ax.barh(names, values, color=["#9e9e9e", "#4c9a2a"], height=0.6, zorder=2)
    ax.bar_label(bars, labels=[f"{v:.2f} s" for v in values], padding=4, fontsize=10)
    ax.invert_yaxis()
    ax.set_xlim(0, max(values) * 1.2 or 1.0)
    ax.set_xlabel("seconds")
    ax.tick_params(axis="y", labelsize=10)
    ax.grid(axis="x", color="0.9", zorder=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title is None:
        what = f"{count} processes" if count is not None else "the same work"
        title = (f"{what}: {sync_seconds / async_seconds:.1f}x faster concurrently"
                 if async_seconds > 0 else what)
    ax.set_title(title, fontsize=11)
    return fig


def _draw_span(ax: Axes, row: int, span: Span, now: float, height: float,
               seen: dict[str, object]) -> None:
    outcome = span.outcome or "running"
    color = OUTCOME_COLORS.get(outcome, "#17becf")
    if span.queued is not None and (span.started is None or span.started - span.queued > 1e-3):
        until = span.started if span.started is not None else (span.ended or now)
        ax.barh(row, until - span.queued, left=span.queued, height=height * 0.5,
                color="0.6", alpha=0.5, zorder=2)  # the same grey as its legend entry
        seen.setdefault("queued", Patch(color="0.6", alpha=0.5, label="waiting to start"))
    if span.started is None:  # never ran: a marker where we know it failed
        when = span.ended if span.ended is not None else (span.queued or 0.0)
        ax.plot(when, row, marker="X", markersize=8, color=color, linestyle="", zorder=4)
        seen.setdefault(outcome, Line2D([], [], marker="X", color=color, linestyle="",
                                        label=_OUTCOME_NAMES.get(outcome, outcome)))
        return
    end = span.ended if span.ended is not None else now
    ax.barh(row, max(end - span.started, 0.0), left=span.started, height=height,
            color=color, zorder=3, hatch="//" if span.ended is None else None,
            edgecolor="white" if span.ended is None else color, linewidth=0)
    seen.setdefault(outcome, Patch(color=color, label=_OUTCOME_NAMES.get(outcome, outcome)))
    if span.first_output is not None:  # read (not written) time: may trail the reap a little
        first = min(max(span.first_output, span.started), end)
        ax.plot([first] * 2, [row - height / 2, row + height / 2],
                color="black", linewidth=1, alpha=0.6, zorder=4)
        seen.setdefault("first", Line2D([], [], color="black", alpha=0.6,
                                        label="first output"))
    for when, name in span.events:
        marker = _SIGNAL_MARKERS.get(name, "*")
        ax.plot(when, row, marker=marker, markersize=7, color="black",
                markeredgecolor="white", markeredgewidth=0.5, linestyle="", zorder=5)
        seen.setdefault(f"event {name}", Line2D([], [], marker=marker, color="black",
                                                linestyle="", label=name))


def _label_rows(ax: Axes, spans: Sequence[Span]) -> None:
    n = len(spans)
    step = max(1, -(-n // _MAX_LABELS))  # ceil(n / _MAX_LABELS)
    rows = list(range(0, n, step))
    ax.set_yticks(rows, [_row_label(spans[r]) for r in rows],
                  fontsize=9 if n <= 12 else 8)
    ax.set_ylim(n - 0.5 if n else 0.5, -0.5)  # first process at the top
    if step > 1:
        ax.set_ylabel(f"{n} processes (1 label in {step})", fontsize=9)
    ax.tick_params(axis="y", length=0 if n > 30 else 3)


def _legend_order(key: str) -> tuple[int, str]:
    """Outcomes in OUTCOME_COLORS order, then waiting, first output, signals, marks."""
    order = [*OUTCOME_COLORS, "queued", "first"]
    if key in order:
        return order.index(key), ""
    return (len(order), key) if key.startswith("event ") else (len(order) + 1, key)


def _row_label(span: Span) -> str:
    label = span.label
    if span.args and label == format_command(span.args):  # no label given: name the program
        label = " ".join([os.path.basename(span.args[0]), *span.args[1:]])
    return label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 1] + "…"


def _height_for(n: int) -> float:
    return min(6.0, max(2.0, 1.3 + 0.3 * n)) if n <= 30 else 6.0


def _latest(timeline: Timeline, now: float) -> float:
    times = [t for s in timeline.spans
             for t in (s.queued, s.started, s.ended if s.ended is not None else
                       (now if s.started is not None else None)) if t is not None]
    times += [t for t, _ in timeline.marks]
    return max(times, default=0.0)


def _default_title(timeline: Timeline) -> str:
    s = timeline.summary()
    if not s.processes:
        return "no processes yet"
    plural = "process" if s.processes == 1 else "processes"
    return (f"{s.processes} {plural}, {s.makespan:.2f} s from first start to last end, "
            f"at most {s.peak_concurrency} at once")
