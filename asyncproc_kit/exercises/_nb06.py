"""Checks for notebook 06 (timeouts and cancellation): keep partial output; cancel a group.

Each check runs the learner's function against real children (random line counts, so a
hard-coded answer fails), times it, and looks for leftovers by a marker in their command
lines, orphaned grandchildren included. ``NotImplementedError`` passes through.
"""

from __future__ import annotations

import random
import shlex
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio

from .._process import DEFAULT_GRACE
from ..testing import python
from ._common import ExerciseResult
from ._try import call

PARTIAL = "06.1 keep the partial output"
CANCEL = "06.2 cancel a whole group"
MARKER = "asyncproc-kit-exercise-06"


def new_marker() -> str:
    """A marker for one check run, so concurrent runs never see each other's children."""
    return f"{MARKER}-{uuid.uuid4().hex[:12]}"


def leftovers(marker: str = MARKER) -> list[int]:
    """Pids of live processes anywhere whose command line contains ``marker``."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and \
                    any(marker in part for part in proc.info["cmdline"] or ()):
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


async def cleanup(marker: str = MARKER) -> None:
    """Kill whatever a wrong answer left behind, so the next try starts clean."""
    import psutil

    procs = []
    for pid in leftovers(marker):
        try:
            proc = psutil.Process(pid)
            proc.kill()
            procs.append(proc)
        except psutil.NoSuchProcess:
            pass
    await anyio.to_thread.run_sync(lambda: psutil.wait_procs(procs, timeout=3))


def _code(code: str, marker: str) -> list[str]:
    return python(f"# {marker}\n" + textwrap.dedent(code))


def prints_then_hangs(lines: int, marker: str) -> list[str]:
    return _code(f"""
        import time
        for i in range({lines}):
            print(f"step {{i}} done", flush=True)
        time.sleep(30)
    """, marker)


async def check_partial_output(run_or_partial: Callable[[list[str], float], Any]
                               ) -> ExerciseResult:
    """``await run_or_partial(cmd, seconds)`` returns the command's stdout, or, when it runs
    out of time, what it had printed until then; the child must be gone afterwards."""
    marker = new_marker()
    quick = _code("print('all'); print('done')", marker)
    answer, problem = await call(run_or_partial, PARTIAL, quick, 5.0)
    if problem is not None:
        return problem
    if answer != "all\ndone\n":
        return ExerciseResult(PARTIAL, False, f"a quick command gave {answer!r}, expected "
                              "'all\\ndone\\n'", "Return result.stdout when it finishes in time.")
    lines = random.randint(2, 5)
    expected = "".join(f"step {i} done\n" for i in range(lines))
    deadline = 1.0
    begun = time.monotonic()
    (answer, problem), stall = await _heartbeat(call(
        run_or_partial, PARTIAL, prints_then_hangs(lines, marker), deadline, patience=10,
        stuck="Give run() a timeout= (or wrap it in anyio.fail_after)."))
    took = time.monotonic() - begun
    left = leftovers(marker)
    await cleanup(marker)
    if problem is not None:
        if "ProcessTimeout" in problem.message or "TimeoutError" in problem.message:
            return ExerciseResult(PARTIAL, False, "the timeout escaped as an exception",
                                  "Catch ProcessTimeout: its .stdout holds what was printed.")
        return problem
    if left:
        return ExerciseResult(PARTIAL, False, f"{len(left)} process(es) still running",
                              "Use the kit's run(timeout=...): it terminates the child.")
    if stall > 0.9 * deadline:  # subprocess.run(timeout=) blocks for the whole deadline
        return ExerciseResult(PARTIAL, False, f"the event loop froze for {stall:.1f} s: nothing "
                              "else could run while it waited", "A blocking call such as "
                              "subprocess.run(timeout=) holds the whole loop; await the kit's "
                              "run(cmd, timeout=seconds) instead.")
    if answer is None or answer == "":
        return ExerciseResult(PARTIAL, False, f"after the timeout it returned {answer!r}",
                              "ProcessTimeout carries the output so far: return exc.stdout.")
    if answer != expected:
        return ExerciseResult(PARTIAL, False, f"after the timeout it returned {answer!r}, "
                              f"expected {expected!r}", "Return exc.stdout, unchanged.")
    if took > deadline + 2.5:
        return ExerciseResult(PARTIAL, False, f"right output, but it took {took:.1f} s for a "
                              f"{deadline:g} s limit", "Pass the limit as timeout=seconds.")
    return ExerciseResult(PARTIAL, True, "every line printed before the deadline was kept, "
                          "and the child is gone.")


def _shell_with_grandchildren(marker: str) -> list[str]:
    sleeper = (f"{shlex.quote(sys.executable)} -c "
               f"{shlex.quote(f'import time; time.sleep(30)  # {marker}')}")
    return ["sh", "-c", f"{sleeper} & {sleeper} & echo ready; wait  # {marker}"]


def _ignores_sigterm(marker: str) -> list[str]:
    return _code("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(30)
    """, marker)


async def check_cancel_all(cancel_all: Callable[[list[list[str]], float, float], Any]
                           ) -> ExerciseResult:
    """``await cancel_all(cmds, after, grace)`` starts every command, cancels them all
    together ``after`` seconds later (SIGTERM, ``grace``, SIGKILL, whole process groups) and
    returns how each ended: ``"exited"``, ``"SIGTERM"`` or ``"SIGKILL"``, in order."""
    kinds = ["exited", "SIGTERM", "SIGKILL", "SIGKILL", "SIGKILL", "shell"]
    random.shuffle(kinds)
    marker = new_marker()
    make = {"exited": lambda m: _code("print('done')", m),
            "SIGTERM": lambda m: _code("import time; time.sleep(30)", m),
            "SIGKILL": _ignores_sigterm, "shell": _shell_with_grandchildren}
    cmds = [make[k](marker) for k in kinds]
    expected = ["SIGTERM" if k == "shell" else k for k in kinds]
    after, grace = 1.0, 0.4
    begun = time.monotonic()
    answer, problem = await call(
        cancel_all, CANCEL, cmds, after, grace, patience=15,
        stuck="Cancel after `after` seconds instead of waiting for the children.")
    took = time.monotonic() - begun
    await anyio.sleep(0.2)  # a killed process can take a moment to disappear
    left = leftovers(marker)
    await cleanup(marker)
    if problem is not None:
        return problem
    if left:
        return ExerciseResult(CANCEL, False, f"{len(left)} process(es) survived, grandchildren "
                              "included", "Signal whole process groups: ProcessGroup.cancel() "
                              "(or the kit's terminate) does; Popen.kill() does not.")
    if isinstance(answer, list) and answer and all(hasattr(a, "how") for a in answer):
        answer = [a.how for a in answer]
        hint_reports = True
    else:
        hint_reports = False
    if answer != expected:
        return ExerciseResult(CANCEL, False, f"it returned {answer!r}, expected {expected!r}",
                              "Return [report.how for report in await group.cancel(grace=grace)].")
    if DEFAULT_GRACE - 0.1 <= took - after <= DEFAULT_GRACE + 0.9:
        return ExerciseResult(CANCEL, False, f"right answer, but cancelling took "
                              f"{took - after:.1f} s: about the default grace "
                              f"({DEFAULT_GRACE:g} s), not the {grace} s asked",
                              "Pass the grace on: group.cancel(grace=grace).")
    if took > after + grace + 0.8:
        return ExerciseResult(CANCEL, False, f"right answer, but cancelling took {took - after:.1f}"
                              f" s for a {grace} s grace: one child after another?",
                              "group.cancel() terminates all children at the same time.")
    message = "every child ended as expected, in about one grace period, nothing left behind."
    if hint_reports:
        message += " (You returned the reports; their .how is what was asked.)"
    return ExerciseResult(CANCEL, True, message)


async def _heartbeat(work: Any) -> tuple[Any, float]:
    """Await ``work`` while a heartbeat task ticks; return its value and the longest stall.

    The heartbeat asks for 20 ms naps. A gap far longer than that means the event loop was
    frozen: something in ``work`` blocked it instead of awaiting.
    """
    longest = 0.0
    value: Any = None
    error: Exception | None = None

    last = time.monotonic()

    def tick() -> None:
        nonlocal longest, last
        now = time.monotonic()
        longest, last = max(longest, now - last), now

    async def beat() -> None:
        while True:
            await anyio.sleep(0.02)
            tick()

    async with anyio.create_task_group() as tg:
        tg.start_soon(beat)
        last = time.monotonic()
        try:
            value = await work
        except Exception as exc:  # NotImplementedError, unwrapped from the task group
            error = exc
        finally:
            tick()  # a freeze at the very end is seen too
            tg.cancel_scope.cancel()
    if error is not None:
        raise error
    return value, longest
