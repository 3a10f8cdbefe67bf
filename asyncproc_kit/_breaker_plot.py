"""A picture of a :class:`~asyncproc_kit.CircuitBreaker`'s life: its state over time and the
calls it let through or refused. Re-exported as ``asyncproc_kit.plots.plot_breaker``."""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ._breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker

STATE_COLORS = {CLOSED: "#4c9a2a", HALF_OPEN: "#f2b134", OPEN: "#d62728"}
_LEVELS = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
_CALL_STYLE = {  # outcome -> marker, colour, legend label
    "success": ("o", "#4c9a2a", "call succeeded"),
    "failure": ("X", "#d62728", "call failed"),
    "rejected": ("|", "0.35", "refused (not started)"),
    "cancelled": ("o", "0.6", "cancelled (not counted)"),
}


def plot_breaker(breaker: CircuitBreaker, *, ax: Axes | None = None, title: str | None = None,
                 until: float | None = None) -> Figure:
    """Draw ``breaker``'s state history as a step line over shaded state bands.

    ``plot_breaker(breaker)`` returns a new :class:`~asyncproc_kit.plots.PlotFigure` (a
    notebook shows it as a PNG); ``ax=`` draws into your axes instead.

    **Output:** the x axis is seconds on the breaker's clock since the breaker was created
    (a hand-moved clock works as well as the real one); the y axis has the three states,
    closed at the bottom. Markers on the line are the calls, drawn when they finished and in
    the state they ran in (the failure that opened the circuit sits on "closed"):
    ● succeeded, ✕ failed, | refused without starting anything, ○ cancelled. ``until``
    (clock time) ends the picture; default: the clock's current time.
    """
    if ax is None:
        from .plots import PlotFigure  # here: plots re-exports this module's function

        fig: Figure = PlotFigure(figsize=(8, 2.8), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure  # type: ignore[assignment]
    origin = breaker.created_at
    end = (breaker.clock() if until is None else until) - origin
    changes = [(c.at - origin, c.new) for c in breaker.history]
    calls = [(t - origin, outcome) for t, outcome in breaker.calls]
    end = max([end, *(t for t, _ in changes), *(t for t, _ in calls), 0.0])
    times = [0.0]
    states = [breaker.history[0].old if breaker.history else breaker.state]
    for when, new in changes:
        times.append(when)
        states.append(new)
    times.append(end)
    for (start, state), stop in zip(zip(times, states, strict=False), times[1:], strict=False):
        if stop - start > end * 0.004:
            ax.axvspan(start, stop, color=STATE_COLORS[state], alpha=0.12, linewidth=0, zorder=0)
        else:  # too short to see as a band (a hand-moved clock's instant probe): a line
            ax.axvline(start, color=STATE_COLORS[state], alpha=0.5, linewidth=4, zorder=1)
    ax.step(times, [_LEVELS[s] for s in [*states, states[-1]]], where="post", color="0.2",
            linewidth=1.6, zorder=2)
    handles: dict[str, object] = {}
    for outcome, (marker, color, label) in _CALL_STYLE.items():
        ran = outcome != "rejected"  # a call that ran is drawn in the state it ran in
        points = [(t, _LEVELS[_ran_in(t, times, states) if ran else
                              _state_at(t, times, states, before=False)])
                  for t, o in calls if o == outcome]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        face = "none" if outcome == "cancelled" else color
        ax.plot(xs, ys, marker=marker, linestyle="", markersize=9 if marker == "|" else 7,
                color=color, markerfacecolor=face, markeredgewidth=1.5, zorder=4)
        handles[outcome] = Line2D([], [], marker=marker, linestyle="", color=color,
                                  markerfacecolor=face, label=label)
    for state in (CLOSED, HALF_OPEN, OPEN):
        if state in states:
            handles[state] = Patch(color=STATE_COLORS[state], alpha=0.3, label=state)
    ax.set_yticks(list(_LEVELS.values()), list(_LEVELS))
    ax.set_ylim(-0.5, 2.5)
    ax.set_xlim(0, max(end * 1.02, 0.01))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10]))
    ax.set_xlabel("seconds on the breaker's clock")
    ax.grid(axis="x", color="0.9", zorder=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title is None:
        counts = {o: sum(1 for _, x in calls if x == o) for o in _CALL_STYLE}
        title = (f"breaker {breaker.name!r}: {len(changes)} state changes; calls: "
                 f"{counts['success']} ok, {counts['failure']} failed, "
                 f"{counts['rejected']} refused")
    ax.set_title(title, fontsize=11)
    ax.legend(handles=list(handles.values()), loc="upper left", bbox_to_anchor=(1.01, 1),
              fontsize=8, frameon=False, borderaxespad=0)
    return fig


def _ran_in(t: float, times: list[float], states: list[str]) -> str:
    """The state a call that finished at ``t`` ran in.

    A call that ended half-open (closing or reopening the circuit at ``t``) was the probe,
    even when the half-open state lasted no time at all on a hand-moved clock; any other
    call ran in the state just before ``t``.
    """
    for i in range(1, len(states)):
        if times[i] == t and states[i - 1] == HALF_OPEN:
            return HALF_OPEN
    return _state_at(t, times, states, before=True)


def _state_at(t: float, times: list[float], states: list[str], *, before: bool) -> str:
    """The state at time ``t``; with ``before``, ignoring changes made at ``t`` itself."""
    current = states[0]
    for when, state in zip(times, states, strict=False):
        if when < t or (when == t and not before):
            current = state
        else:
            break
    return current
