"""Interactive explorers for the workbook (ipywidgets): move a slider, press Run, see why.

In a notebook, the last line of a cell::

    from asyncproc_kit import widgets
    widgets.timing_explorer()

shows the controls and runs once straight away, so the first plot is there without a click.

How they are built (and why): controls, a Run button and one ``Output``. The button's callback
does the async work on a private event loop in a worker thread (a widget callback may run on
a thread other than the kernel's, and must never wait on the kernel's loop), draws a
:class:`matplotlib.figure.Figure` with the object API (never ``pyplot``, whose global state
breaks off the main thread) and puts it in the ``Output`` as a PNG. Needs the ``notebooks``
extra.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import anyio.from_thread
import ipywidgets as w
from IPython.display import Image
from matplotlib.figure import Figure

from ._run import run
from ._text import plural
from ._timeline import Timeline
from ._timer import stopwatch, timed
from .plots import plot_timeline, to_png
from .testing import SLEEP

__all__ = ["PoolExplorer", "TimingExplorer", "figure_png", "pool_explorer", "timing_explorer"]


def figure_png(fig: Figure, *, dpi: int = 100) -> Image:
    """``fig`` rendered to PNG as an IPython ``Image``, ready for ``Output.append_display_data``.

    Rendering here (with Agg, on whatever thread calls it) means the notebook stores a real
    image whichever matplotlib backend the kernel selected.
    """
    return Image(data=to_png(fig, dpi=dpi), format="png")


class _Explorer(w.VBox):
    """Sliders, a Run button and one Output. A run happens on a private event loop in a
    worker thread (a callback cannot await the kernel's loop), and its result replaces the
    Output's contents: a line of facts and a timeline drawn as a PNG. It runs once when
    first displayed, so a stored notebook shows a real plot."""

    #: A run estimated longer than this is refused (it would block the kernel meanwhile).
    longest_run = 30.0

    def __init__(self, sliders: list[w.Widget], run_when_shown: bool) -> None:
        self.button = w.Button(description="Run", button_style="primary", icon="play")
        self.estimate_label = w.Label()
        self.output = w.Output()
        self.timeline: Timeline | None = None
        self._run_when_shown = run_when_shown
        self.button.on_click(lambda _button: self.run_once())
        for slider in sliders:
            slider.observe(lambda _change: self._show_estimate(), names="value")
        super().__init__([w.VBox([*sliders, w.HBox([self.button, self.estimate_label])]),
                          self.output])
        self._show_estimate()

    def estimate(self) -> float:
        """Seconds the next run should take with the current slider values."""
        raise NotImplementedError

    def _show_estimate(self) -> None:
        seconds = self.estimate()
        note = "" if seconds <= self.longest_run else \
            f" (over {self.longest_run:g} s: too long, change a slider)"
        self.estimate_label.value = f"about {seconds:.1f} s{note}"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)  # the text form shows the defaults
        if self._run_when_shown:
            self._run_when_shown = False
            self.run_once()
        return bundle

    def _measure(self, portal: Any) -> tuple[Timeline, str, str]:
        """Do the work through ``portal``; return (timeline, facts, plot title)."""
        raise NotImplementedError

    def run_once(self) -> Timeline | None:
        """Run with the current slider values, then show the facts and the timeline."""
        if self.estimate() > self.longest_run:
            self._show(f"Not run: that would take about {self.estimate():.0f} s, and the "
                       f"kernel waits meanwhile. Keep it under {self.longest_run:g} s: fewer "
                       "or shorter processes, or more at once.\n")
            return None
        self.button.disabled = True
        self.button.description = "Running…"
        try:
            with anyio.from_thread.start_blocking_portal() as portal:
                timeline, facts, title = self._measure(portal)
        except Exception as exc:  # shown to the learner instead of vanishing in a callback
            self._show(f"The run failed: {exc}\n")
            return None
        finally:
            self.button.disabled = False
            self.button.description = "Run"
        self.timeline = timeline
        self._show(facts + "\n", plot_timeline(timeline, title=title))
        return timeline

    def _show(self, text: str, fig: Figure | None = None) -> None:
        # Setting the trait (rather than Output.clear_output(), which asks the front end to
        # clear) empties the kernel's copy too, so the next append cannot resurrect old plots.
        self.output.outputs = ()
        self.output.append_stdout(text)
        if fig is not None:
            self.output.append_display_data(figure_png(fig))


def _slider(kind: type, value: float, low: float, high: float, description: str,
            **options: Any) -> Any:
    return kind(value=value, min=low, max=high, description=description,
                style={"description_width": "9em"}, layout=w.Layout(width="28em"), **options)


class TimingExplorer(_Explorer):
    """N sleeping processes under a concurrency limit, drawn as a timeline with the speedup.

    Made by :func:`timing_explorer`. ``processes``, ``seconds`` and ``limit`` are the sliders,
    ``button`` runs, ``output`` shows the result, ``timeline`` is the last run's
    :class:`~asyncproc_kit.Timeline`. ``run_once()`` does what a click does and blocks until
    the plot is drawn.
    """

    def __init__(self, *, processes: int = 10, seconds: float = 0.2, limit: int = 10,
                 run_when_shown: bool = True) -> None:
        self.processes = _slider(w.IntSlider, processes, 1, 100, "processes")
        self.seconds = _slider(w.FloatSlider, seconds, 0.1, 2.0, "seconds each", step=0.1,
                               readout_format=".1f")
        self.limit = _slider(w.IntSlider, limit, 1, 100, "at most at once")
        super().__init__([self.processes, self.seconds, self.limit], run_when_shown)

    def estimate(self) -> float:
        # one sleeper alone first (the yardstick, see _sleepers), then the limited waves
        n, seconds, limit = self.processes.value, round(self.seconds.value, 1), self.limit.value
        return math.ceil(n / limit) * seconds + seconds

    def _measure(self, portal: Any) -> tuple[Timeline, str, str]:
        n, seconds, limit = self.processes.value, round(self.seconds.value, 1), self.limit.value
        timeline, elapsed, alone = portal.call(_sleepers, n, seconds, limit)
        facts = describe_speedup(timeline, elapsed=elapsed, alone=alone, processes=n,
                                 seconds=seconds, limit=limit)
        return timeline, facts, f"{n} x sleep {seconds:g} s, at most {limit} at once"


def timing_explorer(*, processes: int = 10, seconds: float = 0.2, limit: int = 10,
                    run_when_shown: bool = True) -> TimingExplorer:
    """Sliders for how many processes, how long each sleeps and how many may run at once.

    Each run starts ``processes`` children that sleep ``seconds``, at most ``limit`` at a
    time (an ``anyio.CapacityLimiter`` around :func:`~asyncproc_kit.run`), and shows their
    timeline and the speedup over running them one after another.

    **Output:** the speedup compares the measured time with an *estimate* of running them
    one after another: ``processes`` x the time one of them takes when it runs alone (timed
    just before the batch). The sequential run itself is not performed: at 100 x 2 s it
    would take over three minutes. The sum of the durations measured in the batch would
    overstate it: started together, the processes compete for the CPU and each one takes
    longer than it does alone, which the explorer also reports.

    The defaults (10 x 0.2 s, limit 10) finish in well under a second, so showing the
    explorer (``run_when_shown=True``) costs almost nothing.
    """
    return TimingExplorer(processes=processes, seconds=seconds, limit=limit,
                          run_when_shown=run_when_shown)


def describe_speedup(timeline: Timeline, *, elapsed: float, alone: float, processes: int,
                     seconds: float, limit: int) -> str:
    """The facts printed above the explorer's plot, rounded so they read well.

    ``elapsed`` is the batch's measured time, ``alone`` one process's time on its own.
    """
    rounds = math.ceil(processes / limit)
    sequential = processes * alone
    s = "es" if processes > 1 else ""
    lines = [
        f"{processes} process{s} x {seconds:g} s, at most {limit} at once: took {elapsed:.2f} s"
        f" (at best {rounds} round{'s' if rounds > 1 else ''} x {seconds:g} s = "
        f"{rounds * seconds:.1f} s).",
        f"One alone took {alone:.2f} s, so one after another would take ~{sequential:.1f} s "
        f"(estimated, not run) -> speedup ~{sequential / elapsed:.1f}x.",
    ]
    durations = [d for span in timeline.spans if (d := span.duration) is not None]
    if durations and processes > 1:
        average = sum(durations) / len(durations)
        lines.append(f"In the batch each took {average:.2f} s on average"
                     + (": starting many at once competes for the CPU."
                        if average > 1.2 * alone else "."))
    return "\n".join(lines)


async def _sleepers(processes: int, seconds: float,
                    limit: int) -> tuple[Timeline, float, float]:
    _, alone = await timed(run(SLEEP(seconds)))  # the yardstick for "one after another"
    timeline = Timeline()
    limiter = anyio.CapacityLimiter(limit)
    queued: dict[str, float] = {}

    async def one(label: str) -> None:
        queued[label] = timeline.now()
        async with limiter:
            await run(SLEEP(seconds), timeline=timeline, label=label)

    async with stopwatch() as sw:
        async with anyio.create_task_group() as tg:
            for i in range(processes):
                tg.start_soon(one, f"#{i + 1}")
    for span in timeline.spans:  # run() makes each span when it starts; note its wait too
        span.queued = queued.get(span.label)
    return timeline, sw.elapsed, alone  # type: ignore[return-value]


# -- the pool explorer (notebook 05) ---------------------------------------------------------

class PoolExplorer(_Explorer):
    """A :class:`~asyncproc_kit.ProcessPool` with W workers running J jobs, drawn as a Gantt
    chart, with the throughput.

    Made by :func:`pool_explorer`. ``workers``, ``jobs`` and ``seconds`` are the sliders,
    ``button`` runs, ``output`` shows the result, ``timeline`` is the last run's timeline.
    ``run_once()`` does what a click does and blocks until the plot is drawn.
    """

    def __init__(self, *, workers: int = 4, jobs: int = 12, seconds: float = 0.2,
                 run_when_shown: bool = True) -> None:
        self.workers = _slider(w.IntSlider, workers, 1, 32, "workers")
        self.jobs = _slider(w.IntSlider, jobs, 1, 100, "jobs")
        self.seconds = _slider(w.FloatSlider, seconds, 0.1, 1.0, "seconds each", step=0.1,
                               readout_format=".1f")
        super().__init__([self.workers, self.jobs, self.seconds], run_when_shown)

    def estimate(self) -> float:
        seconds = round(self.seconds.value, 1)
        return math.ceil(self.jobs.value / self.workers.value) * seconds

    def _measure(self, portal: Any) -> tuple[Timeline, str, str]:
        workers, jobs = self.workers.value, self.jobs.value
        seconds = round(self.seconds.value, 1)
        timeline, elapsed = portal.call(_pool_jobs, workers, jobs, seconds)
        facts = describe_throughput(timeline, elapsed=elapsed, jobs=jobs, workers=workers,
                                    seconds=seconds)
        return timeline, facts, f"{jobs} jobs x {seconds:g} s, {workers} workers"


def pool_explorer(*, workers: int = 4, jobs: int = 12, seconds: float = 0.2,
                  run_when_shown: bool = True) -> PoolExplorer:
    """Sliders for the number of workers, of jobs, and how long each job sleeps.

    Each run submits ``jobs`` sleeping children to a ``ProcessPool(workers)`` at once and
    shows the pool's timeline (the light part of a bar is time spent queued) and the
    throughput: jobs finished per second, against the best a pool of that size can do
    (``workers / seconds``). The defaults (12 x 0.2 s, 4 workers) take under a second.
    """
    return PoolExplorer(workers=workers, jobs=jobs, seconds=seconds,
                        run_when_shown=run_when_shown)


def describe_throughput(timeline: Timeline, *, elapsed: float, jobs: int, workers: int,
                        seconds: float) -> str:
    """The facts printed above the pool explorer's plot."""
    waves = math.ceil(jobs / workers)
    best = min(workers, jobs) / seconds
    waits = [s.waited for s in timeline.spans if s.waited is not None]
    longest = max(waits) if waits else 0.0
    return "\n".join([
        f"{plural(jobs, 'job')} x {seconds:g} s on {plural(workers, 'worker')}: took "
        f"{elapsed:.2f} s "
        f"(at best {waves} wave{'s' if waves > 1 else ''} x {seconds:g} s = "
        f"{waves * seconds:.1f} s); at most {timeline.peak_concurrency()} ran at once.",
        f"Throughput {jobs / elapsed:.1f} jobs/s (a pool of {min(workers, jobs)} sleeping "
        f"{seconds:g} s can do at most {best:.1f} jobs/s); the last job waited "
        f"{longest:.2f} s in the queue.",
    ])


async def _pool_jobs(workers: int, jobs: int, seconds: float) -> tuple[Timeline, float]:
    from ._pool import ProcessPool

    async with stopwatch() as sw:
        async with ProcessPool(workers, timeline=Timeline()) as pool:
            for i in range(jobs):
                await pool.submit(SLEEP(seconds), label=f"job {i + 1}")
    return pool.timeline, sw.elapsed  # type: ignore[return-value]
