"""plots: Gantt charts of timelines and the sync-vs-async chart, drawn with Agg."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys

import anyio
import pytest
from helpers import FakeClock
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from asyncproc_kit import ProcessFailed, ProcessTimeout, SpawnError, Timeline, run
from asyncproc_kit.plots import (
    OUTCOME_COLORS,
    PlotFigure,
    plot_sync_vs_async,
    plot_timeline,
    to_png,
)
from asyncproc_kit.testing import EXIT, IGNORE_SIGTERM, SLEEP, python

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic(n: int) -> Timeline:
    """n processes of 0.2 s, 10 at a time, each queued from 0."""
    clock = FakeClock(0.0)
    tl = Timeline(clock)
    for i in range(n):
        span = tl.add(["sleep", "0.2"], f"job {i}", queued=True)
        span.started = (i // 10) * 0.2 + 0.001 * i
        span.first_output = span.started + 0.05
        span.ended = span.started + 0.2
        span.returncode, span.outcome = 0, "ok"
    clock.now = max((s.ended for s in tl.spans), default=0.0)
    return tl


def every_outcome() -> Timeline:
    clock = FakeClock(0.0)
    tl = Timeline(clock)
    times = {"ok": (0.0, 0.3), "failed": (0.0, 0.1), "signal": (0.05, 0.2),
             "timeout": (0.0, 0.5), "cancelled": (0.1, 0.4)}
    for outcome, (start, end) in times.items():
        span = tl.add(["prog", outcome], outcome)
        span.started, span.ended, span.outcome = start, end, outcome
    tl.spans[3].events += [(0.3, "SIGTERM"), (0.5, "SIGKILL")]
    tl.spans[4].events.append((0.4, "SIGTERM"))
    tl.add(["/missing/program"], "missing").outcome = "spawn-error"
    still = tl.add(["prog", "running"], "running", queued=True)
    still.started = 0.2
    tl.mark("limit raised", at=0.25)
    clock.now = 0.6
    return tl


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


def legend_labels(fig: Figure) -> list[str]:
    legend = fig.axes[0].get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def visible_tick_labels(fig: Figure):
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    return [t for t in fig.axes[0].get_yticklabels() if t.get_visible() and t.get_text()], renderer


@pytest.mark.parametrize("n", [1, 10, 100])
def test_timeline_renders_to_png_without_overlapping_labels(n: int) -> None:
    """1, 10 and 100 bars render; y labels never overlap and stay inside the figure."""
    tl = synthetic(n)
    fig = plot_timeline(tl)
    assert isinstance(fig, Figure)
    assert png_bytes(fig).startswith(PNG_MAGIC)
    labels, renderer = visible_tick_labels(fig)
    assert 1 <= len(labels) <= 25
    boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.y0)
    for lower, upper in itertools.pairwise(boxes):
        assert lower.y1 <= upper.y0 + 0.5, "tick labels overlap"
    figure_box = fig.bbox
    for box in boxes:
        assert box.x0 >= 0
        assert box.y0 >= 0
        assert box.y1 <= figure_box.y1
    width, height = fig.get_size_inches()
    assert 2.0 <= height <= 6.0
    assert width == 8
    bars = [p for p in fig.axes[0].patches if p.get_alpha() is None]
    assert len(bars) == n  # one solid bar per process (waiting bars are pale)


def test_many_bars_label_only_some_rows() -> None:
    """With 100 processes the axis says how many rows are labelled."""
    fig = plot_timeline(synthetic(100))
    labels, _ = visible_tick_labels(fig)
    assert [t.get_text() for t in labels][:3] == ["job 0", "job 4", "job 8"]
    assert fig.axes[0].get_ylabel() == "100 processes (1 label in 4)"


def test_first_process_is_at_the_top_and_time_is_in_seconds() -> None:
    """Rows read top to bottom in start order; the x axis starts at 0 seconds."""
    fig = plot_timeline(synthetic(3))
    ax = fig.axes[0]
    bottom, top = ax.get_ylim()
    assert bottom > top  # inverted: row 0 at the top
    assert ax.get_xlim()[0] == 0
    assert "seconds" in ax.get_xlabel()
    assert ax.get_title() == "3 processes, 0.20 s from first start to last end, at most 3 at once"


def test_every_outcome_has_its_colour_and_a_legend_entry() -> None:
    """Colours follow OUTCOME_COLORS; signals, marks and waiting appear in the legend."""
    tl = every_outcome()
    fig = plot_timeline(tl, title="all of them")
    assert png_bytes(fig).startswith(PNG_MAGIC)
    ax = fig.axes[0]
    assert ax.get_title() == "all of them"
    labels = legend_labels(fig)
    for expected in ("exit 0", "exit code != 0", "killed by a signal", "timed out", "cancelled",
                     "could not start", "still running", "waiting to start", "SIGTERM",
                     "SIGKILL", "mark", "first output"):
        if expected == "first output":
            assert expected not in labels  # none of these spans printed anything
        else:
            assert expected in labels
    assert len(labels) == len(set(labels))
    from matplotlib.colors import to_hex
    bar_colours = {to_hex(p.get_facecolor()) for p in ax.patches if p.get_alpha() is None}
    for outcome in ("ok", "failed", "signal", "timeout", "cancelled", "running"):
        assert OUTCOME_COLORS[outcome] in bar_colours
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["limit raised"]
    assert ax.get_xlim()[1] >= 0.6  # the running span is drawn up to "now"


def test_figures_show_themselves_as_png() -> None:
    """A returned figure is a PNG in a notebook, whatever the matplotlib backend."""
    fig = plot_timeline(synthetic(3))
    assert isinstance(fig, PlotFigure)
    png = fig._repr_png_()
    assert png.startswith(PNG_MAGIC)
    assert png == to_png(fig)
    assert isinstance(plot_sync_vs_async(1, 0.5), PlotFigure)
    from IPython.core.formatters import PNGFormatter

    assert PNGFormatter()(fig) == png  # what IPython does with a cell's value


def test_draws_into_a_given_axes() -> None:
    """ax= draws there and returns that axes' figure."""
    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert plot_timeline(synthetic(2), ax=right) is fig
    assert len(right.patches) >= 2
    assert len(left.patches) == 0


def test_empty_timeline_still_draws() -> None:
    """Nothing recorded yet is a plot that says so, not an error."""
    fig = plot_timeline(Timeline())
    assert fig.axes[0].get_title() == "no processes yet"
    assert png_bytes(fig).startswith(PNG_MAGIC)


def test_default_labels_name_the_program_not_its_path() -> None:
    """Unlabelled spans show the program's base name, shortened to fit."""
    tl = Timeline()
    span = tl.add([sys.executable, "-u", "-c", "import time; time.sleep(0.25)"])
    span.started, span.ended, span.outcome = 0.0, 0.3, "ok"
    labels, _ = visible_tick_labels(plot_timeline(tl))
    text = labels[0].get_text()
    assert text.startswith("python")
    assert "/" not in text.split()[0]
    assert len(text) <= 28


@pytest.mark.anyio
async def test_a_real_timeline_with_every_outcome_renders() -> None:
    """Timelines recorded by run() (ok, failed, signal, timeout+SIGKILL, cancelled, spawn error)."""
    tl = Timeline()

    async def expect(exc_type, cmd, label=None, **kwargs) -> None:
        with pytest.raises(exc_type):
            await run(cmd, timeline=tl, label=label, **kwargs)

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: run(python("print('hi')"), timeline=tl, label="ok"))
        tg.start_soon(expect, ProcessFailed, EXIT(2), "failed")
        tg.start_soon(expect, ProcessFailed,
                      python("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
        tg.start_soon(lambda: expect(ProcessTimeout, IGNORE_SIGTERM(30), "stubborn",
                                     timeout=0.5, grace=0.2))
        tg.start_soon(expect, SpawnError, ["/nonexistent/program"])

        async def cancelled() -> None:
            with anyio.move_on_after(0.3):
                await run(SLEEP(30), timeline=tl, label="cancelled")

        tg.start_soon(cancelled)
    tl.mark("done")
    outcomes = {s.outcome for s in tl.spans}
    assert outcomes == {"ok", "failed", "signal", "timeout", "cancelled", "spawn-error"}
    stubborn = next(s for s in tl.spans if s.label == "stubborn")
    assert [name for _, name in stubborn.events] == ["SIGTERM", "SIGKILL"]
    fig = plot_timeline(tl)
    assert png_bytes(fig).startswith(PNG_MAGIC)
    labels = legend_labels(fig)
    assert {"SIGTERM", "SIGKILL", "first output", "timed out", "could not start"} <= set(labels)


def test_sync_vs_async_chart() -> None:
    """Two labelled bars and the speedup in the title."""
    fig = plot_sync_vs_async(2.05, 0.23, count=10)
    ax = fig.axes[0]
    assert ax.get_title() == "10 processes: 8.9x faster concurrently"
    assert [round(p.get_width(), 2) for p in ax.patches] == [2.05, 0.23]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["one after another", "concurrently"]
    assert sorted(t.get_text() for t in ax.texts) == ["0.23 s", "2.05 s"]
    assert png_bytes(fig).startswith(PNG_MAGIC)
    assert plot_sync_vs_async(1, 1).axes[0].get_title() == "the same work: 1.0x faster concurrently"


def test_sync_vs_async_rejects_nonsense() -> None:
    """A negative or missing duration is a ValueError naming the argument."""
    with pytest.raises(ValueError, match="async_seconds must be a number of seconds >= 0"):
        plot_sync_vs_async(1.0, -0.5)
    with pytest.raises(ValueError, match="sync_seconds"):
        plot_sync_vs_async(float("nan"), 1.0)


def test_plots_never_touch_pyplot() -> None:
    """Drawing everything leaves pyplot unimported (its global state breaks in threads)."""
    code = """
import sys
from asyncproc_kit import Timeline, plots
tl = Timeline()
span = tl.add(["x"]); span.started, span.ended, span.outcome = 0.0, 1.0, "ok"
plots.plot_timeline(tl).savefig(__import__("io").BytesIO(), format="png")
plots.plot_sync_vs_async(2, 1)
assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
print("clean")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=50, check=False)
    assert done.stdout.strip() == "clean", done.stderr


def test_the_breaker_plot_is_part_of_plots() -> None:
    """plots is the one place to find every chart, the breaker history included."""
    from asyncproc_kit import _breaker_plot, plots

    assert plots.plot_breaker is _breaker_plot.plot_breaker
    assert sorted(plots.__all__) == plots.__all__
    for name in plots.__all__:
        assert getattr(plots, name) is not None
