"""``environment_report()``: can this kernel run the whole workbook? Said in plain words.

Every check does the real thing (imports the widget library, starts and reaps a child,
ends a child's whole process group, runs a trio event loop in a subprocess) rather than
looking at version numbers, and says what to do when it fails. The wording does not depend
on the machine when all is well, so notebook 00 can store its output.
"""

from __future__ import annotations

import importlib
import importlib.util
import resource
import sys
from dataclasses import dataclass, field

ENOUGH_FDS = 1024  # four per running child: room for a few hundred children at once


@dataclass(frozen=True)
class Check:
    """One line of the report: what was tried, whether it worked, and what to do if not."""

    name: str
    ok: bool
    words: str
    fix: str = ""

    def __str__(self) -> str:
        mark = "✅" if self.ok else "❌"
        line = f"{mark} {self.name}: {self.words}"
        return f"{line}\n     What to do: {self.fix}" if self.fix and not self.ok else line


@dataclass(frozen=True)
class EnvironmentReport:
    """All checks; ``ok`` is True when every one passed. Displays as a short verdict."""

    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        verdict = ("Everything the workbook needs works in this kernel." if self.ok else
                   "Some notebooks will not work here yet: see the ❌ lines.")
        return "\n".join([*map(str, self.checks), verdict])

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))


def _python() -> Check:
    ok = sys.version_info >= (3, 11)
    return Check("Python", ok, "3.11 or newer" if ok else
                 f"{sys.version_info.major}.{sys.version_info.minor} is too old",
                 "Create the environment with Python 3.11+ (make lab does this).")


SYSTEMS = {"linux": "Linux", "darwin": "macOS"}  # where the kit is tested (CI runs both)


def _platform() -> Check:
    from .. import _process

    system = SYSTEMS.get(sys.platform)
    how = (f"the kit sees a child exit through {_process.EXIT_STRATEGY.name}, "
           "without reaping it")
    if system is None:
        return Check("platform", False, f"{sys.platform} is untested; {how}",
                     "Use Linux, macOS, WSL 2 or the Binder link if a notebook misbehaves.")
    return Check("platform", True, f"{system}; {how}")


def _imports(name: str, modules: list[str], words: str, fix: str) -> Check:
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        return Check(name, False, f"cannot import {', '.join(missing)}", fix)
    return Check(name, True, words)


def _widgets() -> Check:
    check = _imports("widgets and plots", ["ipywidgets", "matplotlib", "matplotlib_inline"],
                     "ipywidgets and matplotlib import; sliders and inline plots will show",
                     "pip install -e '.[notebooks]' in this environment, then restart the kernel.")
    if not check.ok:
        return check
    import ipywidgets

    major = int(ipywidgets.__version__.split(".")[0])
    if major < 8:
        return Check(check.name, False, f"ipywidgets {ipywidgets.__version__} is too old",
                     "pip install 'ipywidgets>=8.1', then restart the kernel.")
    return check


async def _spawn_and_reap() -> Check:
    from .._run import run
    from ..testing import python

    name = "child processes"
    try:
        result = await run(python("print('pong')"), timeout=30)
    except Exception as exc:  # the report must finish and say why
        return Check(name, False, f"could not run a child: {exc}",
                     "Check that this Python can start itself (sys.executable).")
    if result.stdout.strip() != "pong":
        return Check(name, False, f"a child answered {result.stdout!r} instead of 'pong'",
                     "Check the environment's PYTHON* variables.")
    try:  # WNOWAIT: look without reaping; a reaped child is no longer ours at all
        zombie = _peek_exit(result.pid)
    except ChildProcessError:
        zombie = False
    if zombie:
        return Check(name, False, "a finished child was left as a zombie",
                     "Restart the kernel; the kit should always reap its children.")
    return Check(name, True, "a child started, answered through a pipe and was reaped")


def _peek_exit(pid: int) -> bool:
    """Non-blocking (WNOHANG): is ``pid`` an unreaped child of ours? Reaps nothing."""
    from .._exit import peek

    return peek(pid)


async def _group_cleanup() -> Check:
    from .._errors import ProcessTimeout
    from .._run import run
    from .._timeline import Timeline
    from ..testing import SPAWN_GRANDCHILDREN, session_members

    name = "cleanup"
    timeline = Timeline()
    try:
        await run(SPAWN_GRANDCHILDREN(2, 30), timeout=0.5, grace=1, timeline=timeline)
    except ProcessTimeout:
        pass
    else:
        return Check(name, False, "a child that should have timed out finished",
                     "Restart the kernel and run this cell again.")
    # The child led a new session whose id is its pid; its grandchildren stay in it. run()
    # returns only once they are gone, so anything still there now is a real survivor.
    sessions = [span.pid for span in timeline.spans if span.pid is not None]
    left = session_members(sessions)
    if left:
        return Check(name, False, f"{len(left)} grandchildren survived their group's end",
                     "Interrupting a cell may leave processes behind: restart the kernel.")
    return Check(name, True, "ending a child also ends its grandchildren (as Interrupt does)")


def _fd_limit() -> Check:
    from .._command import raise_fd_limit

    raise_fd_limit()  # what the kit does before its first spawn
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= ENOUGH_FDS:
        return Check("open files", True,
                     f"the limit is at least {ENOUGH_FDS}: hundreds of children can run at once")
    return Check("open files", False,
                 f"the limit is {soft}: about {soft // 4} children at once",
                 f"Run `ulimit -n {ENOUGH_FDS * 4}` in the shell before starting JupyterLab.")


async def _backends() -> Check:
    from .._run import run

    name = "anyio backends"
    if importlib.util.find_spec("trio") is None:
        return Check(name, False, "trio is not installed (asyncio works)",
                     "pip install -e '.[trio]' to run the kit on trio too.")
    code = ("import anyio\n"
            "anyio.run(anyio.sleep, 0, backend='trio')\n"
            "print('trio ok')")
    try:
        result = await run([sys.executable, "-c", code], timeout=30, check=False)
    except Exception as exc:
        return Check(name, False, f"could not start trio: {exc}", "Check the trio install.")
    if result.returncode != 0 or "trio ok" not in result.stdout:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        return Check(name, False, f"trio is installed but its event loop failed ({last})",
                     "Reinstall it: pip install -U trio anyio.")
    return Check(name, True, "asyncio runs this kernel; trio runs too (tried in a subprocess)")


async def environment_report() -> EnvironmentReport:
    """Check, for real, that this kernel can run every notebook; ``await`` it in a cell.

    Returns an :class:`EnvironmentReport` that displays one line per check (✅ or ❌ with
    what to do) and a verdict. It takes about a second: it starts a few short children.
    """
    checks = [_python(), _platform(), _widgets(), await _spawn_and_reap(), await _group_cleanup(),
              _fd_limit(), await _backends()]
    return EnvironmentReport(checks)
