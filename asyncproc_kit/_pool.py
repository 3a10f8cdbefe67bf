"""Running many commands with bounded concurrency: ``map_limited`` and ``ProcessPool``.

Two shapes of the same idea (seed sections 3.2 to 3.6):

* :func:`map_limited` when you know the whole batch up front::

      results = await map_limited([["gzip", "-k", f] for f in files], limit=8)

* :class:`ProcessPool` when work arrives while other work runs, with priorities::

      async with ProcessPool(workers=4) as pool:
          job = await pool.submit(["make", "docs"], priority=1)
          ...
          result = await job

Both record every process on a :class:`Timeline` (queued, started, ended), so the limit can
be *seen* with ``plots.plot_timeline`` and exported with ``Timeline.joblog()``.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup, TaskStatus

from ._command import (
    check_command,
    check_cwd_path,
    check_encoding,
    check_env,
    check_grace,
    check_seconds,
)
from ._errors import ProcessError, format_command
from ._process import DEFAULT_GRACE, Child, interrupts_unwrapped, spawn
from ._progress import Progress, check_progress, make_progress
from ._run import ProcessResult, check_input, complete
from ._scheduling import JobQueue, check_priority
from ._timeline import Span, Timeline

DEFAULT_WORKERS = 4
"""The default pool size and ``map_limited`` limit, before looking at the host (see
:func:`default_workers`)."""

WORKERS_ENV = "ASYNCPROC_KIT_WORKERS"
"""Environment variable that overrides the default pool size, e.g. ``ASYNCPROC_KIT_WORKERS=8``."""

DEFAULT_QUEUE_SIZE = 1024
"""How many jobs a :class:`ProcessPool` holds queued before ``submit`` waits for room."""

KEPT_SPANS = 10_000
"""How many finished jobs a pool's own timeline remembers (about 0.5 KB each), so a pool
that runs for days does not grow without bound; pass ``timeline=`` to keep every one."""


def default_workers() -> int:
    """How many processes run at once when you do not say: ``min(4, CPU count)``.

    A small fixed number, not the CPU count alone, because a classroom server or Binder
    reports the *node's* cores (often 32 or more) while each learner gets one or two.
    Set ``ASYNCPROC_KIT_WORKERS`` in the environment to choose another default.
    """
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        try:
            workers = int(value)
        except ValueError:
            raise ValueError(
                f"{WORKERS_ENV}={value!r} is not a whole number: set it to the default "
                f"number of workers, e.g. {WORKERS_ENV}=4, or unset it"
            ) from None
        if workers < 1:
            raise ValueError(f"{WORKERS_ENV}={value!r} must be at least 1 (or unset)")
        return workers
    return max(1, min(DEFAULT_WORKERS, os.cpu_count() or 1))


def check_limit(name: str, value: Any) -> int:
    if value is None:
        return default_workers()
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number of processes, not "
                        f"{type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}: with {name}={value} "
                         "nothing could ever run (leave it out for the default, "
                         f"{default_workers()})")
    return value


class PoolCancelled(ProcessError):
    """A pool job did not complete because the pool was cancelled.

    ``cmd`` is the command and ``started`` says whether it had begun (it was then
    terminated, with its whole process group) or was still waiting in the queue.
    """

    def __init__(self, cmd: list[Any], started: bool):
        self.cmd = cmd
        self.started = started
        if started:
            what = "was running and was terminated (SIGTERM, then SIGKILL after the grace)"
        else:
            what = "never started: it was still queued"
        super().__init__(
            f"{format_command(cmd)} {what} because the pool was cancelled (pool.cancel(), "
            "or the async with block ended with an exception); to let queued work finish, "
            "leave the block normally or await pool.close()"
        )


# -- running one command ---------------------------------------------------------------------

@dataclass(frozen=True)
class _Options:
    """How to run each command (the keyword arguments of ``run``)."""

    input: bytes | None = None
    timeout: float | None = None
    grace: float = DEFAULT_GRACE
    check: bool = True
    cwd: Any = None
    env: Mapping[str, str] | None = None
    text: bool = True
    encoding: str = "utf-8"
    errors: str = "replace"


def _options(*, input: Any, timeout: Any, grace: Any, check: bool, cwd: Any, env: Any,
             text: bool, encoding: str, errors: str) -> _Options:
    check_encoding(encoding, errors)
    return _Options(
        input=check_input(input, encoding), timeout=check_seconds("timeout", timeout),
        grace=check_grace(grace),
        check=bool(check), cwd=check_cwd_path(cwd), env=check_env(env), text=text,
        encoding=encoding, errors=errors,
    )


async def _run_child(args: list[Any], opts: _Options, timeline: Timeline, span: Span,
                     on_spawn: Callable[[Child], None] | None = None) -> ProcessResult:
    """What ``run`` does, with a span made at queue time and the child handed out early."""
    child = spawn(args, stdin="devnull" if opts.input is None else "pipe", cwd=opts.cwd,
                  env=opts.env, timeline=timeline, span=span)
    if on_spawn is not None:
        on_spawn(child)
    return await complete(child, input=opts.input, timeout=opts.timeout, grace=opts.grace,
                          check=opts.check, text=opts.text, encoding=opts.encoding,
                          errors=opts.errors)


# -- map_limited -----------------------------------------------------------------------------

Outcome = ProcessResult | ProcessError


def map_limited(
    commands: Iterable[Any],
    *,
    limit: int | None = None,
    as_completed: bool = False,
    timeout: float | None = None,
    grace: float = DEFAULT_GRACE,
    check: bool = True,
    input: str | bytes | None = None,
    cwd: Any = None,
    env: Mapping[str, str] | None = None,
    text: bool = True,
    encoding: str = "utf-8",
    errors: str = "replace",
    timeline: Timeline | None = None,
    labels: Iterable[str] | None = None,
    progress: Progress | bool | None = None,
) -> Batch:
    """Run every command with at most ``limit`` at once; one failure never loses the rest.

    ``results = await map_limited(commands, limit=8)`` returns a list in the *input* order.
    Each slot holds either the :class:`ProcessResult` or the exception for that command
    (:class:`ProcessFailed` for a non-zero exit, :class:`SpawnError`,
    :class:`ProcessTimeout`), so you look at every outcome::

        for command, outcome in zip(commands, results):
            if isinstance(outcome, ProcessError):
                print("failed:", outcome)

    ``as_completed=True`` hands out ``(index, outcome)`` pairs in the order they finish::

        async with map_limited(commands, limit=8, as_completed=True) as finished:
            async for index, outcome in finished:
                ...

    ``limit`` defaults to :func:`default_workers` (``min(4, CPUs)``, or
    ``ASYNCPROC_KIT_WORKERS``). ``limit`` workers take the commands one after another, so at
    no moment do more than ``limit`` children exist. ``timeout``, ``grace``, ``check``,
    ``input``, ``cwd``, ``env`` and ``text`` apply to each command as in :func:`run`.

    **Cancellation:** cancelling the caller (or leaving the ``async with`` early) terminates
    every running child's process group and starts nothing new.

    **Errors:** a bad command, ``limit`` or option raises at once (``TypeError`` /
    ``ValueError``), before anything starts.

    **Output:** ``timeline=`` records each command as queued at the call and then its start
    and end (``timeline.peak_concurrency()`` never exceeds ``limit``); ``labels=`` names the
    spans; ``progress=True`` draws a done / failed / running bar (see :class:`Progress`).
    """
    return Batch(commands, limit=limit, as_completed=as_completed, timeline=timeline,
                 labels=labels, progress=progress,
                 options=_options(input=input, timeout=timeout, grace=grace, check=check,
                                  cwd=cwd, env=env, text=text, encoding=encoding,
                                  errors=errors))


class Batch:
    """What :func:`map_limited` returns: await it for the list, or ``async with`` it to
    receive ``(index, outcome)`` pairs as they complete (with ``as_completed=True``)."""

    def __init__(self, commands: Iterable[Any], *, limit: int | None, as_completed: bool,
                 timeline: Timeline | None, labels: Iterable[str] | None,
                 progress: Progress | bool | None, options: _Options):
        if isinstance(commands, str | bytes):
            check_command(commands)  # raises the "a command is a list" TypeError
        self.commands = [check_command(cmd) for cmd in commands]
        self.limit = check_limit("limit", limit)
        self.as_completed = as_completed
        self.timeline = timeline if timeline is not None else Timeline()
        names = list(labels) if labels is not None else [None] * len(self.commands)
        if len(names) != len(self.commands):
            raise ValueError(f"labels has {len(names)} names for {len(self.commands)} commands")
        self._labels = names
        check_progress(progress)
        self._progress_arg = progress
        self._options = options
        self._used = False

    def __repr__(self) -> str:
        return f"<Batch of {len(self.commands)} commands, limit {self.limit}>"

    def _begin(self) -> tuple[list[Span], Progress | None, bool]:
        if self._used:
            raise RuntimeError("a map_limited() batch runs once: call map_limited() again")
        self._used = True
        spans = [self.timeline.add(cmd, label, queued=True)
                 for cmd, label in zip(self.commands, self._labels, strict=True)]
        progress, owned = make_progress(self._progress_arg, len(self.commands), "processes")
        return spans, progress, owned

    async def _one(self, index: int, span: Span, progress: Progress | None) -> Outcome:
        if progress is not None:
            progress.started()
        ok = False
        try:
            result = await _run_child(self.commands[index], self._options, self.timeline, span)
            ok = True
            return result
        except ProcessError as exc:
            return exc
        finally:
            if progress is not None:
                progress.ended(ok)

    async def _all(self) -> list[Outcome]:
        if self.as_completed:
            raise TypeError("map_limited(..., as_completed=True) is used with `async with ... "
                            "as finished: async for index, outcome in finished`; leave out "
                            "as_completed to await the whole list")
        spans, progress, owned = self._begin()
        results: list[Any] = [None] * len(self.commands)
        indexes = iter(range(len(self.commands)))

        async def worker() -> None:
            for index in indexes:  # shared iterator: each index is taken by one worker
                results[index] = await self._one(index, spans[index], progress)

        try:
            with interrupts_unwrapped():
                async with anyio.create_task_group() as tg:
                    for _ in range(min(self.limit, len(self.commands))):
                        tg.start_soon(worker)
        finally:
            if owned and progress is not None:
                progress.close()
        return results

    def __await__(self) -> Generator[Any, None, list[Outcome]]:
        return self._all().__await__()

    async def __aenter__(self) -> Finished:
        if not self.as_completed:
            raise TypeError("pass as_completed=True to receive outcomes as they complete "
                            "with `async with`; otherwise `await map_limited(...)`")
        spans, progress, owned = self._begin()
        send, receive = anyio.create_memory_object_stream[tuple[int, Outcome]](
            max(1, len(self.commands)))
        indexes = iter(range(len(self.commands)))
        self._tg = anyio.create_task_group()
        self._progress, self._owned = progress, owned

        async def worker(send: Any) -> None:
            async with send:
                for index in indexes:
                    outcome = await self._one(index, spans[index], progress)
                    await send.send((index, outcome))

        await self._tg.__aenter__()
        async with send:
            for _ in range(min(self.limit, len(self.commands))):
                self._tg.start_soon(worker, send.clone())
        self._receive = receive
        return Finished(receive, len(self.commands))

    async def __aexit__(self, *exc_info: Any) -> None:
        self._tg.cancel_scope.cancel()  # whatever the caller did not wait for is ended
        try:
            # The caller's own exception (if any) goes on as it is, not in an ExceptionGroup.
            await self._tg.__aexit__(None, None, None)
        finally:
            self._receive.close()
            if self._owned and self._progress is not None:
                self._progress.close()


class Finished:
    """``async for index, outcome in finished``: outcomes of a batch in completion order."""

    def __init__(self, receive: Any, total: int):
        self._receive = receive
        self.total = total

    def __aiter__(self) -> Finished:
        return self

    async def __anext__(self) -> tuple[int, Outcome]:
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


# -- ProcessPool -----------------------------------------------------------------------------

class Job:
    """A command submitted to a :class:`ProcessPool`; ``await job`` for its result.

    ``result = await job`` gives the :class:`ProcessResult` or raises the job's error
    (:class:`ProcessFailed`, :class:`SpawnError`, :class:`ProcessTimeout`, or
    :class:`PoolCancelled`). Any task may await it, any number of times.

    ``state`` is ``"queued"``, ``"running"``, ``"done"`` or ``"failed"``; ``seq`` is its
    submission number (0, 1, ...); ``child`` is the running process while it runs, so
    ``await terminate(job)`` ends just this job; ``span`` is its entry on the pool's timeline.
    """

    def __init__(self, args: list[Any], priority: int, options: _Options, span: Span):
        self.args = args
        self.priority = priority
        self.seq = -1
        self.span = span
        self.state = "queued"
        self._options = options
        self._child: Child | None = None
        self._started = anyio.Event()
        self._settled = anyio.Event()
        self._result: ProcessResult | None = None
        self._error: BaseException | None = None

    @property
    def child(self) -> Child | None:
        """The running child process (``None`` before it starts)."""
        return self._child

    def done(self) -> bool:
        """True once the job has a result or an error."""
        return self._settled.is_set()

    @property
    def error(self) -> BaseException | None:
        """The job's error once it failed, else ``None``."""
        return self._error

    async def wait_started(self) -> None:
        """Wait until the job's process has started (or the job ended without starting)."""
        await self._started.wait()

    async def wait(self) -> ProcessResult:
        """Wait until the job ends; return its result or raise its error."""
        await self._settled.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def __await__(self) -> Generator[Any, None, ProcessResult]:
        return self.wait().__await__()

    def _settle(self, result: ProcessResult | None = None,
                error: BaseException | None = None) -> None:
        if self._settled.is_set():
            return
        self._result, self._error = result, error
        self.state = "failed" if error is not None else "done"
        self._started.set()  # nobody waits for a start that will never come
        self._settled.set()

    def __repr__(self) -> str:
        return (f"<Job #{self.seq} {format_command(self.args)} priority={self.priority} "
                f"{self.state}>")


class ProcessPool:
    """A fixed number of workers that run submitted commands, smallest priority first.

    Use it as an async context manager and submit while it runs, from any task::

        async with ProcessPool(workers=4) as pool:
            urgent = await pool.submit(["make", "test"], priority=-1)
            later = [await pool.submit(["gzip", "-k", f]) for f in files]
            print((await urgent).returncode)
        # leaving the block waited for every job

    **Scheduling:** a smaller ``priority`` starts first; among equal priorities the job
    submitted first starts first (FIFO, by sequence number). A running job is never
    interrupted by a more urgent one. ``workers`` defaults to :func:`default_workers`
    (``min(4, CPUs)``, or the ``ASYNCPROC_KIT_WORKERS`` environment variable) and can be
    changed while the pool runs: ``pool.workers = 8`` starts more workers at once;
    ``pool.workers = 2`` lets running jobs finish and retires workers as they become free.

    **Backpressure:** at most ``queue_size`` jobs wait in the queue; ``submit`` then waits
    for room, so a fast producer cannot pile up unbounded work.

    **Shutdown:** leaving the block normally, or ``await pool.close()``, accepts no new jobs
    and waits until every queued job has run. ``await pool.cancel()``, or leaving the block
    with an exception (a cancellation included), terminates every running child's process
    group (grandchildren too) and fails queued jobs with :class:`PoolCancelled`.

    **No polling:** an idle worker sleeps until a submit, a resize or shutdown wakes it.

    **Errors:** ``submit`` after ``close()``/``cancel()`` raises ``RuntimeError``; a bad
    ``workers`` or ``priority`` raises ``ValueError``/``TypeError``. A job's own failure is
    kept in its handle and never stops the pool.

    **Output:** every job is recorded on ``pool.timeline`` (queued, started, ended); the
    pool's own timeline remembers the last ``KEPT_SPANS`` (10,000) finished jobs, so memory
    stays bounded in a pool that runs for days (pass ``timeline=`` to keep all of them).
    ``progress=True`` shows a done / failed / running bar.
    """

    def __init__(self, workers: int | None = None, *, queue_size: int | None = DEFAULT_QUEUE_SIZE,
                 timeline: Timeline | None = None, progress: Progress | bool | None = None,
                 grace: float = DEFAULT_GRACE):
        self._target = check_limit("workers", workers)
        if queue_size is None:
            self.queue_size = math.inf
        else:
            self.queue_size = check_limit("queue_size", queue_size)
        self.timeline = timeline if timeline is not None else Timeline()
        self._bounded = timeline is None  # our own timeline: forget the oldest finished jobs
        self._grace = check_grace(grace)
        check_progress(progress)
        self._progress_arg = progress
        self._progress: Progress | None = None
        self._owns_progress = self._progress_grows = False
        self._queue: JobQueue[Job] = JobQueue()
        self._idle: deque[anyio.Event] = deque()  # one per sleeping worker
        self._room: deque[anyio.Event] = deque()  # one per submit waiting for queue space
        self._alive = 0
        self._running = 0
        self._state = "new"  # new -> open -> closing -> closed | cancelled
        self._inner: TaskGroup | None = None
        self._outer: TaskGroup | None = None
        self._stopped = anyio.Event()

    # -- sizing ------------------------------------------------------------------------------

    @property
    def workers(self) -> int:
        """How many workers the pool aims for (set it to resize while running)."""
        return self._target

    @workers.setter
    def workers(self, value: int) -> None:
        self._target = check_limit("workers", value)
        if self._inner is None or self._stopped.is_set() or \
                self._state not in ("open", "closing"):
            return
        while self._alive < self._target:
            self._start_worker()
        if self._alive > self._target:
            self._wake_all_idle()  # the surplus notice it and leave; busy ones after their job

    @property
    def running(self) -> int:
        """Jobs running right now."""
        return self._running

    @property
    def queued(self) -> int:
        """Jobs waiting in the queue."""
        return len(self._queue)

    @property
    def closed(self) -> bool:
        """True once ``close()`` or ``cancel()`` was called: no more submits."""
        return self._state not in ("new", "open")

    def __repr__(self) -> str:
        return (f"<ProcessPool workers={self._target} running={self._running} "
                f"queued={len(self._queue)} {self._state}>")

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> ProcessPool:
        if self._state != "new":
            raise RuntimeError("a ProcessPool can be entered once: make a new one")
        self._progress, self._owns_progress = make_progress(self._progress_arg, None, "jobs")
        self._progress_grows = self._progress is not None and self._progress.total is None
        self._outer = anyio.create_task_group()
        await self._outer.__aenter__()
        try:
            await self._outer.start(self._supervise)
        except BaseException as exc:
            await self._outer.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        assert self._outer is not None
        try:
            if exc is None:
                try:
                    await self.close()
                except BaseException:
                    await self.cancel()
                    raise
            else:
                await self.cancel()
        finally:
            try:
                # The workers have stopped by now; the caller's own exception (if any) goes on
                # as it is, not wrapped in an ExceptionGroup by the task group.
                await self._outer.__aexit__(None, None, None)
            finally:
                if self._owns_progress and self._progress is not None:
                    self._progress.close()

    async def _supervise(self, *, task_status: TaskStatus[None]) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._inner = tg
                self._state = "open"
                for _ in range(self._target):
                    self._start_worker()
                task_status.started()
        finally:
            self._stopped.set()

    async def close(self) -> None:
        """Accept no more jobs; wait until every queued and running job has finished."""
        if self._state in ("new", "open"):
            self._state = "closing" if self._inner is not None else "closed"
            self._wake_all_idle()
            self._wake_all_room()
        if self._inner is not None:
            await self._stopped.wait()
        if self._state == "closing":
            self._state = "closed"

    async def cancel(self) -> None:
        """Terminate running jobs (their whole process groups), fail queued ones, and wait.

        Shielded: once called, cleanup finishes even if the caller is cancelled meanwhile.
        """
        with anyio.CancelScope(shield=True):
            if self._state != "closed" or self._queue:
                self._state = "cancelled"
            for job in self._queue.drain():
                job.span.outcome = "cancelled"
                job._settle(error=PoolCancelled(job.args, started=False))
                if self._progress is not None:
                    self._progress.ended(False, ran=False)
            self._wake_all_room()
            if self._inner is not None:
                self._inner.cancel_scope.cancel()
                await self._stopped.wait()

    # -- submitting --------------------------------------------------------------------------

    async def submit(
        self,
        cmd: Any,
        *,
        priority: int = 0,
        timeout: float | None = None,  # noqa: ASYNC109 (per job, as in subprocess.run)
        grace: float | None = None,
        check: bool = True,
        input: str | bytes | None = None,
        cwd: Any = None,
        env: Mapping[str, str] | None = None,
        text: bool = True,
        encoding: str = "utf-8",
        errors: str = "replace",
        label: str | None = None,
    ) -> Job:
        """Queue ``cmd`` and return its :class:`Job` at once (``await job`` for the result).

        Waits only when ``queue_size`` jobs are already queued (backpressure). The other
        keyword arguments apply to this command as in :func:`run`.

        **Errors:** ``RuntimeError`` after ``close()``/``cancel()`` or outside ``async
        with``; ``TypeError`` for a non-integer priority or a string command.
        """
        args = check_command(cmd)
        priority = check_priority(priority)
        options = _options(input=input, timeout=timeout,
                           grace=self._grace if grace is None else grace, check=check,
                           cwd=cwd, env=env, text=text, encoding=encoding, errors=errors)
        self._check_open(args)
        # Honour a cancellation, but do not yield when there is room: a loop of submits then
        # queues its batch at once instead of trickling one job per event-loop turn.
        await anyio.lowlevel.checkpoint_if_cancelled()
        while len(self._queue) >= self.queue_size:
            room = anyio.Event()
            self._room.append(room)
            try:
                await room.wait()
            finally:
                if room in self._room:
                    self._room.remove(room)
            self._check_open(args)
        self._check_open(args)
        job = Job(args, priority, options, self.timeline.add(args, label, queued=True))
        job.seq = self._queue.push(job, priority=priority)
        if self._progress is not None and self._progress_grows:
            self._progress.add(1)
        if self._idle:
            self._idle.popleft().set()  # one sleeping worker wakes and takes the best job
        return job

    def _check_open(self, args: list[Any]) -> None:
        if self._state == "open":
            return
        if self._state == "new":
            raise RuntimeError(f"cannot submit {format_command(args)}: the pool is not running; "
                               "submit inside `async with ProcessPool(...) as pool:`")
        raise RuntimeError(
            f"cannot submit {format_command(args)}: the pool is {self._state} "
            "(close() or cancel() was called, or its async with block ended); "
            "submit before closing it, or use a new pool"
        )

    # -- workers -----------------------------------------------------------------------------

    def _start_worker(self) -> None:
        assert self._inner is not None
        self._alive += 1
        self._inner.start_soon(self._work)

    def _wake_all_idle(self) -> None:
        while self._idle:
            self._idle.popleft().set()

    def _wake_all_room(self) -> None:
        while self._room:
            self._room.popleft().set()

    async def _work(self) -> None:
        try:
            while self._alive <= self._target:
                if self._queue:
                    job = self._queue.pop()
                    if self._room:
                        self._room.popleft().set()
                    await self._execute(job)
                elif self._state == "open":
                    wakeup = anyio.Event()
                    self._idle.append(wakeup)
                    try:
                        await wakeup.wait()
                    finally:
                        if wakeup in self._idle:
                            self._idle.remove(wakeup)
                else:
                    return  # closing and nothing left to do
        finally:
            self._alive -= 1

    async def _execute(self, job: Job) -> None:
        job.state = "running"
        self._running += 1
        if self._progress is not None:
            self._progress.started()

        def spawned(child: Child) -> None:
            job._child = child
            job._started.set()

        try:
            result = await _run_child(job.args, job._options, self.timeline, job.span, spawned)
        except anyio.get_cancelled_exc_class():
            job._settle(error=PoolCancelled(job.args, started=True))
            raise
        except Exception as exc:  # the job failed, the pool goes on
            job._settle(error=exc)
        except BaseException as exc:
            job._settle(error=exc)
            raise
        else:
            job._settle(result=result)
        finally:
            self._running -= 1
            if self._progress is not None:
                self._progress.ended(job._error is None)
            if self._bounded and len(self.timeline.spans) > KEPT_SPANS + KEPT_SPANS // 10:
                self._forget_oldest()

    def _forget_oldest(self) -> None:
        """Drop the oldest finished spans down to ``KEPT_SPANS`` (amortised: every
        ``KEPT_SPANS // 10`` jobs); queued and running ones stay."""
        spans = self.timeline.spans
        finished = [i for i, s in enumerate(spans) if s.ended is not None or
                    (s.outcome is not None and s.started is None)]
        drop = set(finished[:max(0, len(spans) - KEPT_SPANS)])
        spans[:] = [s for i, s in enumerate(spans) if i not in drop]
