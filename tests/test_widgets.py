"""widgets.timing_explorer(): built for real, run through its callback, output checked."""

from __future__ import annotations

import base64
import subprocess
import sys
import threading

import anyio
import anyio.lowlevel
import pytest

from asyncproc_kit import Timeline, widgets

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def explorer(processes: int, seconds: float, limit: int) -> widgets.TimingExplorer:
    return widgets.timing_explorer(processes=processes, seconds=seconds, limit=limit,
                                   run_when_shown=False)


def text_and_png(ex: widgets.TimingExplorer) -> tuple[str, bytes]:
    outputs = ex.output.outputs
    assert [o["output_type"] for o in outputs] == ["stream", "display_data"]
    data = outputs[1]["data"]["image/png"]
    png = base64.b64decode(data) if isinstance(data, str) else data
    return outputs[0]["text"], png


def test_controls_and_their_ranges() -> None:
    """Sliders cover 1-100 processes, 0.1-2.0 s and a limit of 1-100; small defaults."""
    ex = widgets.timing_explorer(run_when_shown=False)
    assert (ex.processes.min, ex.processes.max, ex.processes.value) == (1, 100, 10)
    assert (ex.seconds.min, ex.seconds.max, ex.seconds.value) == (0.1, 2.0, 0.2)
    assert (ex.limit.min, ex.limit.max, ex.limit.value) == (1, 100, 10)
    assert ex.button.description == "Run"
    assert ex.output.outputs == ()
    assert ex.timeline is None


def test_run_shows_the_timeline_and_the_speedup() -> None:
    """One run: a PNG Gantt chart and honest, rounded facts about the speedup."""
    ex = explorer(4, 0.2, 4)
    timeline = ex.run_once()
    assert timeline is ex.timeline
    assert isinstance(timeline, Timeline)
    assert [s.outcome for s in timeline.spans] == ["ok"] * 4
    assert timeline.peak_concurrency() == 4
    text, png = text_and_png(ex)
    assert png.startswith(PNG_MAGIC)
    assert len(png) > 5000
    assert text.startswith("4 processes x 0.2 s, at most 4 at once: took ")
    assert "(at best 1 round x 0.2 s = 0.2 s)" in text
    assert "so one after another would take ~" in text
    assert "(estimated, not run) -> speedup ~" in text
    alone = float(text.split("One alone took ")[1].split(" s")[0])
    assert 0.2 <= alone < 5
    speedup = float(text.split("speedup ~")[1].split("x")[0])
    assert 1.5 < speedup <= 4.5
    assert "In the batch each took " in text
    assert ex.button.description == "Run"
    assert not ex.button.disabled


def test_the_limit_is_respected() -> None:
    """At most `limit` processes run at once, and later ones wait."""
    ex = explorer(6, 0.1, 2)
    timeline = ex.run_once()
    assert timeline is not None
    assert timeline.peak_concurrency() == 2
    waited = sorted(s.waited for s in timeline.spans)
    assert waited[-1] >= 0.15  # the last pair waited for two rounds of 0.1 s
    text, _ = text_and_png(ex)
    assert "at best 3 rounds x 0.1 s = 0.3 s" in text


def test_the_button_runs_with_the_current_slider_values() -> None:
    """Moving a slider then clicking replaces the output with a new run."""
    ex = explorer(2, 0.1, 2)
    ex.run_once()
    first = ex.timeline
    ex.processes.value = 3
    ex.limit.value = 1
    ex.button.click()
    assert ex.timeline is not first
    assert ex.timeline is not None
    assert len(ex.timeline.spans) == 3
    assert ex.timeline.peak_concurrency() == 1
    text, _ = text_and_png(ex)  # exactly one text and one image: the old ones are gone
    assert text.startswith("3 processes x 0.1 s, at most 1 at once")


def test_showing_the_explorer_runs_it_once() -> None:
    """Display runs it after the text form is taken, so that form shows only the defaults."""
    ex = widgets.timing_explorer(processes=2, seconds=0.1, limit=2)
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("TimingExplorer(children=(VBox(children=(IntSlider("
                                           "value=2, description='processes'")
    assert "outputs" not in bundle["text/plain"]
    first = ex.timeline
    assert first is not None
    text_and_png(ex)
    ex._repr_mimebundle_()  # showing it again does not run again
    assert ex.timeline is first


def test_works_from_another_thread() -> None:
    """JupyterLab may call the callback on a thread that is not the main one."""
    ex = explorer(2, 0.1, 2)
    errors: list[BaseException] = []

    def click() -> None:
        try:
            ex.button.click()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    worker = threading.Thread(target=click)
    worker.start()
    worker.join(30)
    assert not errors
    assert ex.timeline is not None
    assert len(ex.timeline.spans) == 2


@pytest.mark.anyio
async def test_works_while_an_event_loop_runs_in_this_thread() -> None:
    """Like a notebook cell: the kernel's loop is running, the explorer uses its own."""
    ex = explorer(2, 0.1, 2)
    timeline = ex.run_once()
    assert timeline is not None
    assert [s.outcome for s in timeline.spans] == ["ok", "ok"]
    await anyio.lowlevel.checkpoint()


def test_a_failed_run_is_shown_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the processes cannot run, the learner reads why in the output area."""

    async def broken(*_args: object) -> None:
        raise OSError("Too many open files")

    monkeypatch.setattr(widgets, "_sleepers", broken)
    ex = explorer(2, 0.1, 2)
    assert ex.run_once() is None
    assert ex.output.outputs == ({"output_type": "stream", "name": "stdout",
                                  "text": "The run failed: Too many open files\n"},)
    assert not ex.button.disabled


def test_describe_speedup_is_rounded_and_honest() -> None:
    """Sequential time is estimated from one process timed alone, and says so."""
    tl = Timeline()
    for i in range(10):
        span = tl.add(["sleep", "0.2"], f"#{i}")
        span.started, span.ended = 0.01 * i, 0.01 * i + 0.25
    text = widgets.describe_speedup(tl, elapsed=0.256, alone=0.21, processes=10, seconds=0.2,
                                    limit=10)
    assert text == ("10 processes x 0.2 s, at most 10 at once: took 0.26 s (at best 1 round "
                    "x 0.2 s = 0.2 s).\nOne alone took 0.21 s, so one after another would "
                    "take ~2.1 s (estimated, not run) -> speedup ~8.2x.\nIn the batch each "
                    "took 0.25 s on average.")


def test_describe_speedup_names_cpu_contention() -> None:
    """When the batch stretched each process well past its time alone, the text says why."""
    tl = Timeline()
    for i in range(3):
        span = tl.add(["sleep", "0.2"], f"#{i}")
        span.started, span.ended = 0.0, 0.4
    text = widgets.describe_speedup(tl, elapsed=1.0, alone=0.2, processes=3, seconds=0.2,
                                    limit=1)
    assert "at best 3 rounds x 0.2 s = 0.6 s" in text
    assert text.endswith("each took 0.40 s on average: starting many at once competes for "
                         "the CPU.")
    one = widgets.describe_speedup(Timeline(), elapsed=0.2, alone=0.2, processes=1,
                                   seconds=0.2, limit=1)
    assert one.startswith("1 process x 0.2 s")
    assert one.count("\n") == 1


def test_explorer_never_touches_pyplot() -> None:
    """Building, showing and running leaves pyplot unimported."""
    code = """
import sys
from asyncproc_kit import widgets
ex = widgets.timing_explorer(processes=2, seconds=0.1, limit=2)
ex._repr_mimebundle_()
ex.button.click()
assert ex.output.outputs[1]["data"]["image/png"], "no image"
assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
print("clean")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=50, check=False)
    assert done.stdout.strip() == "clean", done.stderr


def test_the_estimate_is_shown_and_a_too_long_run_is_refused() -> None:
    """At the sliders' limits (100 x 2 s, one at a time: over 200 s) the explorer shows the
    estimate and refuses to block the kernel; the defaults are well under a second."""
    ex = explorer(10, 0.2, 10)
    assert ex.estimate_label.value == "about 0.4 s"
    ex.processes.value, ex.seconds.value, ex.limit.value = 100, 2.0, 1
    assert "about 202.0 s" in ex.estimate_label.value
    assert "too long" in ex.estimate_label.value
    assert ex.run_once() is None
    assert ex.timeline is None
    assert "Not run" in ex.output.outputs[0]["text"]


def test_the_pool_explorer_refuses_a_too_long_run() -> None:
    """The pool explorer's limit (100 jobs x 1 s on 1 worker) is refused the same way."""
    ex = widgets.pool_explorer(workers=1, jobs=100, seconds=1.0, run_when_shown=False)
    assert "too long" in ex.estimate_label.value
    assert ex.run_once() is None
    assert "Not run" in ex.output.outputs[0]["text"]
