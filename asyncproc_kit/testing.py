"""Scriptable child processes for tests, demos and exercises.

Every command here runs ``sys.executable``, so it behaves the same on every machine that
runs the kit (no reliance on ``sleep``, ``cat`` or a particular shell)::

    await run(SLEEP(0.1))
    await run(CAT, input="hello")           # echoes stdin
    await run(python("print(6 * 7)"))        # any one-off program
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterable

__all__ = [
    "CAT",
    "ECHO_STDIN_UPPER",
    "EXIT",
    "IGNORE_SIGTERM",
    "PRINT_LINES",
    "SLEEP",
    "SPAWN_GRANDCHILDREN",
    "descendants",
    "python",
    "session_members",
]


def python(code: str) -> list[str]:
    """A command that runs ``code`` with this interpreter (``-u``: unbuffered output)."""
    return [sys.executable, "-u", "-c", textwrap.dedent(code)]


CAT = python("import shutil, sys; shutil.copyfileobj(sys.stdin.buffer, sys.stdout.buffer)")
"""Copies stdin to stdout byte for byte until end of file."""

ECHO_STDIN_UPPER = python("""
    import sys
    for line in sys.stdin:
        print(line.rstrip("\\n").upper(), flush=True)
""")
"""Answers each input line with the line in upper case, as soon as it arrives."""


def SLEEP(seconds: float) -> list[str]:
    """Sleeps ``seconds`` and exits 0."""
    return python(f"import time; time.sleep({float(seconds)!r})")


def EXIT(code: int, stderr: str = "") -> list[str]:
    """Writes ``stderr`` (if any) and exits with ``code``."""
    return python(f"import sys; sys.stderr.write({stderr!r}); sys.exit({int(code)})")


def PRINT_LINES(count: int, *, prefix: str = "line", stream: str = "stdout") -> list[str]:
    """Prints ``count`` numbered lines (``line 0`` ...) to ``stream`` as fast as it can."""
    return python(f"""
        import sys
        out = sys.{stream}
        out.writelines(f"{prefix} {{i}}\\n" for i in range({int(count)}))
    """)


def IGNORE_SIGTERM(seconds: float = 60) -> list[str]:
    """Ignores SIGTERM, prints ``ready``, then sleeps: only SIGKILL ends it early."""
    return python(f"""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep({float(seconds)!r})
    """)


def SPAWN_GRANDCHILDREN(count: int = 2, seconds: float = 60) -> list[str]:
    """A shell that starts ``count`` background sleepers and waits: the classic orphan maker.

    It prints ``ready`` once they run. Killing only the shell leaves them running; killing
    the process group ends them all.
    """
    sleeper = f"{sys.executable} -c 'import time; time.sleep({float(seconds)!r})'"
    jobs = " ".join(f"{sleeper} &" for _ in range(count))
    return ["sh", "-c", f"{jobs} echo ready; wait"]


def descendants(pid: int | None = None) -> list[int]:
    """The pids of live (non-zombie) descendants of ``pid`` (default: this process).

    A grandchild whose parent died is re-parented away and no longer counts here: use
    :func:`session_members` to find those. Needs psutil (the ``notebooks`` extra).
    """
    import psutil

    try:
        procs = psutil.Process(os.getpid() if pid is None else pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return sorted(p.pid for p in procs if _alive(p))


def session_members(sessions: Iterable[int]) -> list[int]:
    """The pids of live (non-zombie) processes in any of the given sessions.

    The kit starts every child as the leader of a new session whose id is the child's pid,
    and its grandchildren stay in that session even after their parent dies, so
    ``session_members([child.pid])`` finds every orphan that child could have left behind.
    """
    import psutil

    wanted = set(sessions)
    found = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) in wanted and _alive(psutil.Process(pid)):
                found.append(pid)
        except (OSError, psutil.NoSuchProcess):
            pass
    return sorted(found)


def _alive(proc) -> bool:
    import psutil

    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
