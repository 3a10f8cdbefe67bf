"""The kit's exceptions.

The hierarchy, so that one ``except`` can be as broad or as narrow as you need::

    ProcessError            anything the kit raises about a child process
    ├── SpawnError          it could not start (missing, not executable, bad cwd, fd limit)
    ├── ProcessFailed       it exited non-zero (also a subprocess.CalledProcessError)
    ├── ProcessTimeout      it ran out of time (also subprocess.TimeoutExpired, TimeoutError)
    └── CircuitOpenError    a circuit breaker refused to start it

Every message names the command, says what happened, and where it can, says what to do.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._run import ProcessResult


def format_command(args: Sequence[object], width: int = 60, most: int = 20) -> str:
    """Render a command as the list a learner would write, long arguments shortened and a
    list of more than ``most`` arguments elided after the first ten (``… 29,990 more``)."""
    args = list(args)
    shown = []
    for arg in args if len(args) <= most else args[:10]:
        text = repr(arg)
        shown.append(text if len(text) <= width else f"{text[:width - 4]}...{text[-1]}")
    if len(args) > most:
        shown.append(f"… {len(args) - 10:,} more")
    return f"[{', '.join(shown)}]"


def describe_returncode(returncode: int) -> str:
    """``exit code 3`` or ``killed by SIGKILL`` (negative codes are signals, as in subprocess)."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _tail(text: str | bytes | None, lines: int = 5, chars: int = 600) -> str:
    if not text:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    tail = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return tail[-chars:]


class ProcessError(Exception):
    """Base class of every error the kit raises about a child process."""


class SpawnError(ProcessError):
    """The command could not be started.

    ``args`` is the command, ``reason`` what went wrong, ``fix`` what to try; the original
    ``OSError`` is chained as ``__cause__`` and its ``errno`` is kept.
    """

    def __init__(self, cmd: Sequence[object], reason: str, fix: str, errno: int | None = None):
        self.cmd = list(cmd)
        self.reason = reason
        self.fix = fix
        self.errno = errno
        super().__init__(f"cannot start {format_command(cmd)}: {reason}. {fix}")


class ProcessFailed(ProcessError, subprocess.CalledProcessError):
    """The command ran and exited with a non-zero status (raised when ``check=True``).

    ``result`` is the full :class:`ProcessResult`; ``returncode``, ``cmd``, ``stdout`` and
    ``stderr`` are there too, as on :class:`subprocess.CalledProcessError`.
    """

    def __init__(self, result: ProcessResult):
        subprocess.CalledProcessError.__init__(
            self, result.returncode, result.args, result.stdout, result.stderr
        )
        self.result = result

    def __str__(self) -> str:
        message = f"{format_command(self.cmd)} failed: {describe_returncode(self.returncode)}"
        tail = _tail(self.stderr)
        return f"{message}; stderr ends with:\n{tail}" if tail else message


class ProcessTimeout(ProcessError, subprocess.TimeoutExpired, TimeoutError):
    """The command did not finish within ``timeout`` seconds and was terminated.

    ``stdout`` and ``stderr`` hold what it had printed until then (so nothing is lost);
    ``returncode`` says how it ended after termination (e.g. ``-15`` for SIGTERM).
    """

    def __init__(
        self,
        cmd: Sequence[object],
        timeout: float,
        stdout: str | bytes | None = None,
        stderr: str | bytes | None = None,
        returncode: int | None = None,
        limit: str = "timeout",
    ):
        subprocess.TimeoutExpired.__init__(self, list(cmd), timeout, stdout, stderr)
        self.returncode = returncode
        self.limit = limit

    def __str__(self) -> str:
        message = f"{format_command(self.cmd)} timed out after {self.timeout:g} s ({self.limit})"
        if self.returncode is not None:
            message += f" and was terminated ({describe_returncode(self.returncode)})"
        return message


class CircuitOpenError(ProcessError):
    """A circuit breaker is open: the call was refused without starting anything.

    ``retry_at`` is the breaker clock's time at which it will let one probe through and
    ``retry_after`` is how many seconds that is from when the call was refused.
    """

    def __init__(self, name: str, retry_after: float, retry_at: float | None = None):
        self.name = name
        self.retry_after = retry_after
        self.retry_at = retry_at
        super().__init__(
            f"circuit {name!r} is open: refusing to start; it will let one probe through "
            f"in {retry_after:.2f} s"
        )
