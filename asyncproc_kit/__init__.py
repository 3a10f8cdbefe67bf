"""asyncproc-kit: asynchronous process management on anyio (asyncio and trio), for learning.

Run a command, stream its lines, hold a conversation with it, and end it cleanly::

    from asyncproc_kit import run, open_stream

    result = await run(["echo", "hello"])
    async with open_stream(["ping", "-c", "2", "127.0.0.1"]) as stream:
        async for line in stream:
            print(line.source, line.text)

Every child starts in its own process group; timeouts and cancellation terminate the whole
group (SIGTERM, a grace period, SIGKILL), so nothing is left running.
"""

from ._errors import CircuitOpenError as CircuitOpenError
from ._errors import ProcessError as ProcessError
from ._errors import ProcessFailed as ProcessFailed
from ._errors import ProcessTimeout as ProcessTimeout
from ._errors import SpawnError as SpawnError
from ._pipes import Pipe as Pipe
from ._pipes import open_pipe as open_pipe
from ._process import DEFAULT_GRACE as DEFAULT_GRACE
from ._process import Termination as Termination
from ._process import terminate as terminate
from ._run import ProcessResult as ProcessResult
from ._run import run as run
from ._stream import OutputLine as OutputLine
from ._stream import OutputStream as OutputStream
from ._stream import open_stream as open_stream
from ._timeline import Span as Span
from ._timeline import Timeline as Timeline

__all__ = [
    "DEFAULT_GRACE",
    "CircuitOpenError",
    "OutputLine",
    "OutputStream",
    "Pipe",
    "ProcessError",
    "ProcessFailed",
    "ProcessResult",
    "ProcessTimeout",
    "Span",
    "SpawnError",
    "Termination",
    "Timeline",
    "open_pipe",
    "open_stream",
    "run",
    "terminate",
]

__version__ = "0.1.0"
