"""Checks for notebook 12 (health monitor): decide health with thresholds; a check that
cannot hang.

The first check is plain code: the learner's decider is fed scripted check results and
compared, step by step, with :class:`~asyncproc_kit.cases.health.ServiceHealth`. The second
runs the learner's probe against real children, one of which hangs with a grandchild.
``NotImplementedError`` passes through.
"""

from __future__ import annotations

import os
import signal
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..cases.health import ServiceHealth
from ..testing import EXIT, python
from ._common import ExerciseResult
from ._try import call

DECIDE = "12.1 thresholds that alert exactly once"
PROBE = "12.2 a check that cannot hang"

# (failure_threshold, success_threshold, results): "+" passes, "-" fails
SCENARIOS = [
    (3, 2, "+++--+-------+-+++++-"),
    (2, 2, "+-" * 8),
    (2, 1, "---++-+--+"),
    (1, 3, "-++-++++"),
]


def _hint(got: Any, want: str | None, status: str, health: ServiceHealth, prefix: str) -> str:
    """Name the real cause of a wrong answer (``status``: the status before this result)."""
    ok = prefix[-1] == "+"
    if got == "down" and want is None and status == "down":
        return ("It is already down: say 'down' once per outage (the original printed DOWN "
                "again on every failure past the threshold).")
    if got == "down" and want is None:
        return ("Count *consecutive* failures: a success in between starts the count again, "
                "or a flapping service alerts.")
    if got in ("up", "recovered") and want is None and ok and status != "up":
        return ("One success is not enough: wait for success_threshold consecutive "
                "successes (the original said 'recovered' after any success), and let a "
                "failure start that count again.")
    if got in ("up", "recovered") and want is None:
        return "It is up already: announce a transition only when the status changes."
    if got == "up" and want == "recovered":
        return "It was down, so this is 'recovered'; 'up' is only the first decision."
    if got == "recovered" and want == "up":
        return "It was never down (status unknown before): the first decision is 'up'."
    if want == "up" and got is None:
        return (f"{health.success_threshold} successes in a row decide the first status: "
                "return 'up' (the original never announced a healthy service at all).")
    if want is not None and got is None:
        needed = health.failure_threshold if want == "down" else health.success_threshold
        return f"{needed} in a row reached the threshold here: return {want!r}."
    return "Return 'up', 'down', 'recovered' or None from record(ok)."


def check_decider(make: Callable[..., Any]) -> ExerciseResult:
    """``make(failure_threshold, success_threshold)`` builds an object whose
    ``record(ok)`` returns ``"up"``, ``"down"``, ``"recovered"`` or ``None`` and whose
    ``status`` is ``"unknown"``, ``"up"`` or ``"down"``, with the rules of ServiceHealth."""
    if not callable(make):
        return ExerciseResult(DECIDE, False, f"expected a class, got {make!r}",
                              "Pass the class itself: check_decider(Decider).")
    checked = 0
    for failure, success, results in SCENARIOS:
        reference = ServiceHealth("reference", failure_threshold=failure,
                                  success_threshold=success, clock=lambda: 0.0)
        try:
            mine = make(failure, success)
            status = getattr(mine, "status", None)
        except NotImplementedError:
            raise
        except Exception as exc:
            return ExerciseResult(DECIDE, False, f"building it raised {type(exc).__name__}: "
                                  f"{exc}", "Run Decider(3, 2) on its own to see the traceback.")
        if status != "unknown":
            return ExerciseResult(DECIDE, False, f"a new one has status {status!r}",
                                  "Start as 'unknown': nothing is decided before a check.")
        for i, outcome in enumerate(results):
            before = reference.status
            event = reference.record(outcome == "+")
            want = None if event is None else event.kind
            try:
                got = mine.record(outcome == "+")
                status = getattr(mine, "status", None)
            except NotImplementedError:
                raise
            except Exception as exc:
                return ExerciseResult(DECIDE, False, f"record() raised {type(exc).__name__}: "
                                      f"{exc}", "Run it on its own in a cell to see the "
                                      "traceback.")
            prefix = results[: i + 1]
            where = (f"thresholds {failure}/{success}, after {prefix!r} ('+' passed, "
                     "'-' failed)")
            if got != want:
                return ExerciseResult(DECIDE, False, f"{where}: record() returned {got!r}, "
                                      f"expected {want!r}",
                                      _hint(got, want, before, reference, prefix))
            if status != reference.status:
                return ExerciseResult(DECIDE, False, f"{where}: status is {status!r}, "
                                      f"expected {reference.status!r}",
                                      "Set status when you return 'up', 'down' or "
                                      "'recovered'.")
            checked += 1
    return ExerciseResult(DECIDE, True, f"{checked} results in {len(SCENARIOS)} scenarios: "
                          "each transition announced once, flapping never alerts.")


def _hung_check(pidfile: Path, marker: str) -> list[str]:
    """A check that starts a grandchild, writes both pids to ``pidfile`` and hangs."""
    return python(f"""
        import os, subprocess, sys, time
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                    {marker!r}])
        with open({str(pidfile)!r} + ".tmp", "w") as f:
            f.write(f"{{os.getpid()}} {{sleeper.pid}}")
        os.replace({str(pidfile)!r} + ".tmp", {str(pidfile)!r})
        time.sleep(60)
    """)


def _survivors(pidfile: Path, marker: str) -> list[int]:
    """The hung check's processes still alive; kills them, so a wrong answer leaves nothing."""
    try:
        pids = [int(p) for p in pidfile.read_text().split()]
    except (OSError, ValueError):
        return []
    alive = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and (marker.encode() in cmdline or str(pidfile).encode() in cmdline):
            alive.append(pid)
            os.kill(pid, signal.SIGKILL)
    return alive


async def check_probe(probe: Callable[..., Any]) -> ExerciseResult:
    """``await probe(cmd, seconds)`` returns ``(ok, reason)``: ``(True, ...)`` for exit 0,
    ``(False, ...)`` for a non-zero exit or a program that cannot start, and ``(False,
    "timeout")`` for a check that runs longer than ``seconds`` (its whole process group
    ended)."""
    for cmd, want, what in ((EXIT(0), True, "a check that exits 0"),
                            (EXIT(1, "refused\n"), False, "a check that exits 1"),
                            (["/nonexistent/health-check"], False, "a missing program")):
        answer, problem = await call(probe, PROBE, cmd, 5.0, patience=15)
        if problem is not None:
            if "ProcessFailed" in problem.message:
                return ExerciseResult(PROBE, False, f"on {what}: ProcessFailed escaped",
                                      "A failing check is an answer, not an error: "
                                      "run(..., check=False) and look at returncode.")
            if "SpawnError" in problem.message:
                return ExerciseResult(PROBE, False, f"on {what}: SpawnError escaped",
                                      "A check that cannot start is a failed check: catch "
                                      "SpawnError and return (False, reason).")
            return problem
        shape = _shape(answer)
        if shape is not None:
            return ExerciseResult(PROBE, False, f"on {what} it returned {answer!r}", shape)
        if answer[0] is not want:
            return ExerciseResult(PROBE, False, f"on {what} it returned ok={answer[0]!r}",
                                  "ok is True exactly when the exit code is 0.")
    for timeout in (0.5, 3.0):  # a loaded machine may not have started the grandchild yet
        with tempfile.TemporaryDirectory(prefix="nb12-") as folder:
            pidfile = Path(folder) / "pids"
            marker = f"nb12-{uuid.uuid4().hex[:8]}"
            answer, problem = await call(
                probe, PROBE, _hung_check(pidfile, marker), timeout, patience=timeout + 7,
                suspect="the check hung and took the probe with it (the original's bug)",
                stuck="Give run() the timeout: run(cmd, timeout=seconds, check=False), and "
                      "catch ProcessTimeout.")
            started = pidfile.exists()
            left = _survivors(pidfile, marker)
        if started or problem is not None:
            break
    if problem is not None:
        if "ProcessTimeout" in problem.message:
            return ExerciseResult(PROBE, False, "on a hung check: ProcessTimeout escaped",
                                  "Catch ProcessTimeout and return (False, 'timeout').")
        return problem
    if left:
        return ExerciseResult(PROBE, False, f"on a hung check, {len(left)} of its processes "
                              "were still running afterwards",
                              "End the whole group: run(timeout=...) or a cancelled scope "
                              "around run() does; killing one pid leaves its children.")
    shape = _shape(answer)
    if shape is not None:
        return ExerciseResult(PROBE, False, f"on a hung check it returned {answer!r}", shape)
    if answer != (False, "timeout"):
        return ExerciseResult(PROBE, False, f"on a hung check it returned {answer!r}",
                              "A check that runs out of time is (False, 'timeout').")
    return ExerciseResult(PROBE, True, "exit 0 passes, exit 1 and a missing program fail, and "
                          "a hung check is a timeout with nothing left running.")


def _shape(answer: Any) -> str | None:
    if not isinstance(answer, tuple) or len(answer) != 2:
        return "Return a pair: (ok, reason), e.g. (True, 'exit 0')."
    if not isinstance(answer[0], bool):
        return "ok (the first item) must be True or False."
    if not isinstance(answer[1], str):
        return "reason (the second item) must be a str, e.g. 'exit code 1'."
    return None
