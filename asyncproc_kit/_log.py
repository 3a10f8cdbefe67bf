"""The kit's process events on the standard ``logging`` logger ``"asyncproc_kit"``.

Three kinds of record, all at DEBUG, each carrying its facts as record attributes too (so a
JSON formatter or a test can read them without parsing the message):

* a child started: ``command`` (the argv list) and ``pid``;
* a signal was sent to its process group: ``pid``, ``signal`` (its name, e.g. ``"SIGTERM"``);
* it was reaped: ``pid``, ``returncode``, ``duration`` (seconds from spawn to reap), ``command``.

Nothing is printed unless the application configures logging: the kit adds no handler and
calls no ``basicConfig``, and DEBUG is below the level at which Python's last-resort handler
writes to stderr. To see them::

    logging.basicConfig(level=logging.DEBUG)              # everything, or only the kit's:
    logging.getLogger("asyncproc_kit").setLevel(logging.DEBUG)
"""

from __future__ import annotations

import logging
import signal
from typing import Any

from ._errors import describe_returncode, format_command

logger = logging.getLogger("asyncproc_kit")


def started(child: Any) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("started %s as pid %d", format_command(child.args), child.pid,
                     extra={"command": [str(a) for a in child.args], "pid": child.pid})


def signalled(child: Any, sig: int, *, routine: bool = False) -> None:
    """``routine`` signals are not logged: the SIGKILL that sweeps a reaped child's group for
    leftovers, sent after every exit, and the one at interpreter exit."""
    if not routine and logger.isEnabledFor(logging.DEBUG):
        name = signal.Signals(sig).name
        logger.debug("sent %s to pid %d and its process group", name, child.pid,
                     extra={"command": [str(a) for a in child.args], "pid": child.pid,
                            "signal": name})


def reaped(child: Any) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("pid %d ended (%s) after %.2f s", child.pid,
                     describe_returncode(child.returncode), child.duration,
                     extra={"command": [str(a) for a in child.args], "pid": child.pid,
                            "returncode": child.returncode, "duration": child.duration})
