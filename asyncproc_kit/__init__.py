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

import os as _os

if _os.name != "posix":  # Windows: no sessions, no process groups, no kill(-pgid)
    raise ImportError(
        "asyncproc_kit needs POSIX process groups (Linux or macOS) to end a child with "
        "everything it started; Windows has none. Run the workbook in WSL 2 "
        "(https://learn.microsoft.com/windows/wsl/install) or in your browser on Binder: "
        "https://mybinder.org/v2/gh/asyncproc-kit/asyncproc-kit/main"
        "?urlpath=lab/tree/notebooks/00-welcome.ipynb")

from ._breaker import BreakerRegistry as BreakerRegistry
from ._breaker import CircuitBreaker as CircuitBreaker
from ._errors import CircuitOpenError as CircuitOpenError
from ._errors import ProcessError as ProcessError
from ._errors import ProcessFailed as ProcessFailed
from ._errors import ProcessTimeout as ProcessTimeout
from ._errors import SpawnError as SpawnError
from ._group import ChildReport as ChildReport
from ._group import GroupTimeout as GroupTimeout
from ._group import ProcessGroup as ProcessGroup
from ._joblog import JoblogEntry as JoblogEntry
from ._joblog import read_joblog as read_joblog
from ._pipes import Pipe as Pipe
from ._pipes import open_pipe as open_pipe
from ._pool import Job as Job
from ._pool import PoolCancelled as PoolCancelled
from ._pool import ProcessPool as ProcessPool
from ._pool import default_workers as default_workers
from ._pool import map_limited as map_limited
from ._process import DEFAULT_GRACE as DEFAULT_GRACE
from ._process import Termination as Termination
from ._process import terminate as terminate
from ._progress import Progress as Progress
from ._retry import RetryPolicy as RetryPolicy
from ._retry import retry_if as retry_if
from ._retry import retry_process as retry_process
from ._retry import run_with_retries as run_with_retries
from ._run import ProcessResult as ProcessResult
from ._run import run as run
from ._stream import LineBatch as LineBatch
from ._stream import OutputLine as OutputLine
from ._stream import OutputStream as OutputStream
from ._stream import open_stream as open_stream
from ._timeline import Span as Span
from ._timeline import Timeline as Timeline
from ._timer import Stopwatch as Stopwatch
from ._timer import stopwatch as stopwatch
from ._timer import timed as timed

__all__ = [
    "DEFAULT_GRACE",
    "BreakerRegistry",
    "ChildReport",
    "CircuitBreaker",
    "CircuitOpenError",
    "GroupTimeout",
    "Job",
    "JoblogEntry",
    "LineBatch",
    "OutputLine",
    "OutputStream",
    "Pipe",
    "PoolCancelled",
    "ProcessError",
    "ProcessFailed",
    "ProcessGroup",
    "ProcessPool",
    "ProcessResult",
    "ProcessTimeout",
    "Progress",
    "RetryPolicy",
    "Span",
    "SpawnError",
    "Stopwatch",
    "Termination",
    "Timeline",
    "default_workers",
    "map_limited",
    "open_pipe",
    "open_stream",
    "read_joblog",
    "retry_if",
    "retry_process",
    "run",
    "run_with_retries",
    "stopwatch",
    "terminate",
    "timed",
]

__version__ = "0.1.0"
