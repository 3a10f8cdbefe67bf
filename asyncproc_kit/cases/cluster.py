"""The same commands on Dask distributed, for when one machine is not enough.

``DaskRunner`` runs commands on the workers of a Dask cluster with the kit's guarantees, and
gives back what :func:`asyncproc_kit.map_limited` gives back::

    from asyncproc_kit.cases.cluster import DaskRunner

    async with DaskRunner(n_workers=2) as runner:        # or DaskRunner(address="tls://...")
        outcomes = await runner.map(commands, limit=4, timeout=30, retries=1)
        result = await runner.run(["gzip", "-k", "big.log"])

**The cluster:** with no ``address`` it starts a ``LocalCluster`` of ``n_workers`` worker
processes (one task slot each) on 127.0.0.1, with no dashboard and quiet logs, and closes it
on exit. With an ``address`` it connects to a scheduler that someone else runs and leaves
it running.

**Who may connect:** a Dask scheduler runs whatever task any connected client sends it
(functions travel pickled), and plain ``tcp://`` authenticates nobody: on loopback that is
still every user and every container sharing the machine. So the local cluster uses TLS
with client certificates by default, from a throw-away certificate authority
(``Security.temporary()``, which needs ``cryptography``): only this runner and its workers
hold a certificate. ``security=False`` gives plain ``tcp://``; with an ``address``, pass the
cluster's ``distributed.Security(tls_ca_file=..., tls_client_cert=..., tls_client_key=...,
require_encryption=True)``.

**On the worker** each command runs through :func:`asyncproc_kit.run`: its own process
group, output captured, ``timeout`` ending the whole group (SIGTERM, ``grace``, SIGKILL). The
function sent to the workers is :func:`run_on_worker` of this module, so every worker must
be able to import ``asyncproc_kit`` (a local cluster inherits this interpreter).

**Outcomes:** ``map`` returns one outcome per command in input order: the
:class:`~asyncproc_kit.ProcessResult`, or the kit's error for that command
(:class:`~asyncproc_kit.ProcessFailed`, :class:`~asyncproc_kit.ProcessTimeout`,
:class:`~asyncproc_kit.SpawnError`, or :class:`WorkerLost` when the worker died under it).
A failed command is a *result* here, not a Dask task error: a task that raises is logged by
the worker at ERROR level ("Compute Failed") and Dask's own ``retries=`` would re-run a
cancelled command too, so ``retries=N`` is done on the worker, as in ``map_limited``'s
neighbours: a failed or timed-out command runs up to N more times, a missing program never.

**Cancellation really stops work.** ``Future.cancel()`` only forgets the task: the worker
goes on running it, its child keeps running and the slot stays busy. So every task watches
a ``distributed.Event`` of its own; cancelling the caller sets the events, each task
terminates its child's whole group (SIGTERM, ``grace``, SIGKILL) and returns, and only
then does the cancellation go on. A worker process that is *killed* (SIGKILL, out of
memory) cannot clean up: its running child outlives it. That command becomes
:class:`WorkerLost` and is not re-run elsewhere (``allowed_failures=0``), because it may
still be running.

**Limit:** ``limit=N`` caps the commands of one ``map`` running at once across the whole
cluster, with a ``distributed.Semaphore``; without it the cluster's slots are the limit. A
worker that dies holding a lease keeps it until the scheduler's lease timeout
(``distributed.scheduler.locks.lease-timeout``, 30 s), so the rest of that ``map`` runs one
short for that long.

**Event loops:** ``Client(asynchronous=True)`` only works on asyncio, so the runner drives
an ordinary (blocking) client from worker threads (``anyio.to_thread.run_sync``): the same
code runs under asyncio and trio.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import anyio

from .._command import check_command
from .._errors import ProcessError, ProcessFailed, ProcessTimeout, SpawnError, format_command
from .._pool import _Options, _options, check_limit
from .._process import DEFAULT_GRACE
from .._run import ProcessResult, run

__all__ = ["DaskRunner", "WorkerLost", "run_on_worker"]

Outcome = ProcessResult | ProcessError

STOP_MARGIN = 2.0
"""Seconds, beyond ``grace``, that a cancelled ``map`` waits for the workers to report that
their children are gone before it stops waiting."""

_QUIET_HTTP = ["distributed.http.health"]
"""The only HTTP route a local cluster serves. Dask's scheduler and workers always listen for
HTTP, without authentication, even with no dashboard; by default they answer pages of
worker logs, call stacks and task names (and the scheduler takes port 8787, so a second
cluster warns about the clash). Here they listen on a random loopback port and answer
``/health`` only."""


class WorkerLost(ProcessError):
    """The worker running the command died (or left) before the command finished.

    ``cmd`` is the command and ``reason`` what the scheduler said. The command may have run
    in part, and if the worker process was killed its child may still be running on that
    machine: it was not re-run elsewhere for that reason.
    """

    def __init__(self, cmd: list[Any], reason: str):
        self.cmd = list(cmd)
        self.reason = reason
        super().__init__(
            f"{format_command(cmd)} did not finish: {reason}. Its worker died or left the "
            "cluster (killed, out of memory, or the machine went away); the command may have "
            "run in part, so it was not started again"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.cmd, self.reason))


# -- what travels between the worker and the caller ------------------------------------------

def _pack(outcome: Outcome | None) -> tuple[Any, ...]:
    """An outcome as plain picklable parts.

    The kit's errors do not all survive ``pickle`` (``SpawnError`` and ``ProcessTimeout``
    cannot be rebuilt from their ``args``), so an error travels as its class, ``args`` and
    attributes, and :func:`_unpack` rebuilds it without calling ``__init__``.
    """
    if outcome is None:
        return ("cancelled",)
    if isinstance(outcome, ProcessResult):
        return ("result", outcome)
    return ("error", type(outcome), outcome.args, dict(vars(outcome)))


def _unpack(packed: tuple[Any, ...]) -> Outcome | None:
    if packed[0] == "cancelled":
        return None
    if packed[0] == "result":
        return packed[1]
    _, cls, args, state = packed
    error = cls.__new__(cls)
    error.args = args
    vars(error).update(state)
    return error


# -- the worker's side -----------------------------------------------------------------------

async def run_on_worker(cmd: list[Any], options: _Options, stop: str,
                        limit: tuple[str, int] | None = None, retries: int = 0) -> tuple:
    """Run ``cmd`` on this Dask worker until it ends or the event named ``stop`` is set.

    This is the function the runner submits (an ``async def``, so it runs on the worker's
    event loop and a watcher can interrupt it). It returns a packed outcome (see
    :func:`_pack`): the result, the kit's error, or ``("cancelled",)`` when ``stop`` was set.
    ``limit`` is ``(name, leases)`` of the ``distributed.Semaphore`` to hold while running.
    """
    from distributed import Event

    event = Event(stop)
    outcome: Outcome | None = None
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            await event.wait()
            tg.cancel_scope.cancel()  # the command is cancelled: run() ends its group

        tg.start_soon(watch)
        try:
            outcome = await _limited(cmd, options, limit, retries)
        finally:
            with anyio.CancelScope(shield=True):
                await event.set()  # release our own watcher: no waiter is left on the scheduler
    await event.clear()  # a clear event nobody waits for is forgotten by the scheduler
    return _pack(outcome)


async def _limited(cmd: list[Any], options: _Options, limit: tuple[str, int] | None,
                   retries: int) -> Outcome:
    if limit is None:
        return await _attempts(cmd, options, retries)
    from distributed import Semaphore

    semaphore = Semaphore(max_leases=limit[1], name=limit[0])
    try:
        async with semaphore:
            return await _attempts(cmd, options, retries)
    finally:
        refresh = getattr(semaphore, "refresh_callback", None)
        if refresh is not None:
            refresh.stop()  # one instance per task: do not leave its lease timer running


async def _attempts(cmd: list[Any], options: _Options, retries: int) -> Outcome:
    outcome: Outcome
    for _ in range(retries + 1):
        try:
            return await run(cmd, input=options.input, timeout=options.timeout,
                             grace=options.grace, check=options.check, cwd=options.cwd,
                             env=options.env, text=options.text, encoding=options.encoding,
                             errors=options.errors)
        except SpawnError as exc:
            return exc  # the program is missing here: running it again will not help
        except (ProcessFailed, ProcessTimeout) as exc:
            outcome = exc
    return outcome


# -- the caller's side -----------------------------------------------------------------------

class DaskRunner:
    """Run commands on a Dask cluster: ``async with DaskRunner(n_workers=2) as runner``.

    ``address`` is a running scheduler's address (``"tls://host:8786"``, ``"tcp://..."``);
    without it a local cluster of ``n_workers`` processes with ``threads_per_worker`` slots
    each is started on 127.0.0.1 and closed on exit. ``security`` is passed to the client
    (and to the local cluster): a ``distributed.Security``; for a local cluster the default
    (``None`` or ``True``) is TLS with temporary certificates and ``False`` is plain TCP.
    ``allowed_failures`` is how often the local scheduler re-runs a command whose worker
    died (default 0: a lost command is reported, not repeated). ``timeout`` bounds
    connecting and starting, in seconds.

    Outside ``async with`` (a notebook that keeps the cluster across cells), ``await
    runner.start()`` and ``await runner.aclose()`` do the same.

    ``runner.client`` is the ``distributed.Client``, ``runner.address`` the scheduler's
    address; ``runner.cluster`` is the ``LocalCluster`` (``None`` with an address).
    """

    def __init__(self, address: str | None = None, *, n_workers: int = 2,
                 threads_per_worker: int = 1, security: Any = None, allowed_failures: int = 0,
                 timeout: float = 60.0):
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address must be a scheduler address such as 'tcp://10.0.0.5:8786', "
                            f"not {type(address).__name__}")
        if address is not None and security is True:
            raise ValueError("security=True makes a temporary certificate authority, which only "
                             "a cluster started here can trust: with an address, pass the "
                             "cluster's distributed.Security(tls_ca_file=..., tls_client_cert=..., "
                             "tls_client_key=..., require_encryption=True)")
        self.n_workers = _whole("n_workers", n_workers, 1)
        self.threads_per_worker = _whole("threads_per_worker", threads_per_worker, 1)
        self.allowed_failures = _whole("allowed_failures", allowed_failures, 0)
        self.timeout = timeout
        self._address = address
        self._security = security
        self.client: Any = None
        self.cluster: Any = None
        self._stale: list[tuple[str, int]] = []  # semaphores a dead worker still held

    def __repr__(self) -> str:
        where = self._address or f"local cluster of {self.n_workers} workers"
        state = "open" if self.client is not None else "closed"
        return f"<DaskRunner {where} ({state})>"

    @property
    def address(self) -> str:
        """The scheduler's address (``tcp://127.0.0.1:PORT`` for a local cluster)."""
        return self._require().scheduler.address

    @property
    def security(self) -> Any:
        """The ``distributed.Security`` in use (``None`` without TLS)."""
        return self._security

    # -- starting and closing

    async def start(self) -> DaskRunner:
        """Start the local cluster (or connect to ``address``) and the client."""
        if self.client is not None:
            raise RuntimeError("this DaskRunner is already open: start it once, or use one "
                               "`async with` at a time")
        await anyio.to_thread.run_sync(self._open)
        return self

    async def aclose(self) -> None:
        """Close the client and the local cluster (its workers and their children)."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close)

    async def __aenter__(self) -> DaskRunner:
        return await self.start()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    def _open(self) -> None:
        import dask
        from distributed import Client, LocalCluster, Security

        if self._address is not None:
            self.client = Client(self._address, security=self._security or None,
                                 timeout=self.timeout)
            return
        if self._security is None or self._security is True:
            try:
                self._security = Security.temporary()
            except ImportError as error:
                missing = error.name or "cryptography"
                raise RuntimeError(
                    f"a local cluster uses TLS by default, which needs {missing}: install "
                    "asyncproc-kit[cluster] (or cryptography), or pass security=False for plain "
                    "TCP (any local user could then run code in your workers)"
                ) from error
        elif self._security is False:
            self._security = None
        settings = {
            "distributed.scheduler.allowed-failures": self.allowed_failures,
            "distributed.scheduler.http.routes": _QUIET_HTTP,
            "distributed.worker.http.routes": _QUIET_HTTP,
        }
        with dask.config.set(settings):
            self.cluster = LocalCluster(
                n_workers=self.n_workers, threads_per_worker=self.threads_per_worker,
                processes=True, host="127.0.0.1",
                protocol="tls://" if self._security is not None else "tcp://",
                security=self._security, dashboard_address=None,
                # no dashboard, but the HTTP server is always there: off port 8787, loopback
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                silence_logs=logging.ERROR, timeout=self.timeout,
            )
            try:
                self.client = Client(self.cluster, security=self._security,
                                     timeout=self.timeout)
            except BaseException:
                self.cluster.close()
                self.cluster = None
                raise

    def _close(self) -> None:
        client, cluster = self.client, self.cluster
        self.client = self.cluster = None
        try:
            if client is not None:
                if cluster is None:  # a scheduler we leave running: tidy what we can
                    self._stale = [s for s in self._stale if not _close_semaphore(client, s)]
                client.close()
        finally:
            if cluster is not None:
                cluster.close()

    def _require(self) -> Any:
        if self.client is None:
            raise RuntimeError("the DaskRunner is not open: use it as "
                               "`async with DaskRunner(...) as runner:`")
        return self.client

    # -- running

    # timeout= is each command's own limit on its worker, as in run() and subprocess.run, not
    # a deadline for the caller (that is anyio.fail_after around the call)
    async def run(self, cmd: Any, *, timeout: float | None = None,  # noqa: ASYNC109
                  retries: int = 0,
                  grace: float = DEFAULT_GRACE, check: bool = True,
                  input: str | bytes | None = None, cwd: Any = None,
                  env: Mapping[str, str] | None = None, text: bool = True) -> ProcessResult:
        """Run one command on a worker; return its result or raise its error.

        The keywords are those of :meth:`map`; ``check=False`` returns a non-zero exit as a
        result instead of raising :class:`~asyncproc_kit.ProcessFailed`.
        """
        [outcome] = await self.map([cmd], timeout=timeout, retries=retries, grace=grace,
                                   check=check, input=input, cwd=cwd, env=env, text=text)
        if isinstance(outcome, ProcessError):
            raise outcome
        return outcome

    async def map(self, commands: Iterable[Any], *, limit: int | None = None,
                  timeout: float | None = None, retries: int = 0,  # noqa: ASYNC109
                  grace: float = DEFAULT_GRACE, check: bool = True,
                  input: str | bytes | None = None, cwd: Any = None,
                  env: Mapping[str, str] | None = None, text: bool = True) -> list[Outcome]:
        """Run every command on the cluster; return their outcomes in input order.

        Each outcome is a :class:`~asyncproc_kit.ProcessResult` or the kit's error for that
        command (``ProcessFailed``, ``ProcessTimeout``, ``SpawnError``, :class:`WorkerLost`).
        ``limit`` caps how many run at once across the cluster (default: as many as it has
        slots). ``timeout`` (seconds, per attempt), ``grace``, ``check``, ``input``, ``cwd``,
        ``env`` and ``text`` apply to each command as in :func:`asyncproc_kit.run`; ``cwd``
        and programs are looked up on the worker's machine. ``retries=N`` runs a failed or
        timed-out command up to N more times on its worker.

        **Cancellation:** cancelling the caller stops every running command (its whole group,
        within ``grace`` + 2 s) and every queued one before the cancellation goes on.
        """
        if isinstance(commands, str | bytes):
            check_command(commands)  # raises the "a command is a list" TypeError
        cmds = [check_command(cmd) for cmd in commands]
        if limit is not None:
            limit = check_limit("limit", limit)
        retries = _whole("retries", retries, 0)
        options = _options(input=input, timeout=timeout, grace=grace, check=check, cwd=cwd,
                           env=env, text=text, encoding="utf-8", errors="replace")
        client = self._require()
        if not cmds:
            return []
        token = uuid.uuid4().hex
        stops = [f"asyncproc-kit-stop-{token}-{i}" for i in range(len(cmds))]
        semaphore = (f"asyncproc-kit-limit-{token}", limit) if limit is not None else None

        def submit() -> list[Any]:
            # positional lists only: client.map's own retries= is Dask's (see the module doc)
            n = len(cmds)
            return client.map(run_on_worker, cmds, [options] * n, stops, [semaphore] * n,
                              [retries] * n, pure=False,
                              key=[f"asyncproc-kit-run-{token}-{i}" for i in range(n)])

        futures: list[Any] = []
        try:
            with anyio.CancelScope(shield=True):  # submitted tasks are always ours to stop
                futures = await anyio.to_thread.run_sync(submit)
            await anyio.to_thread.run_sync(_wait, futures, abandon_on_cancel=True)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_stop, client, futures, stops,
                                               options.grace + STOP_MARGIN)
            raise
        outcomes = await anyio.to_thread.run_sync(_collect, client, cmds, futures, stops)
        if semaphore is not None:
            self._stale.append(semaphore)
        if self._stale:
            closed = [await anyio.to_thread.run_sync(_close_semaphore, client, s)
                      for s in self._stale]
            self._stale = [s for s, done in zip(self._stale, closed, strict=True) if not done]
        return outcomes

    async def worker_pids(self) -> dict[str, int]:
        """``{worker address: pid}``: the worker processes (to look at what they run)."""
        client = self._require()
        return await anyio.to_thread.run_sync(client.run, os.getpid)


def _whole(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, not {value!r}")
    return value


# -- blocking helpers, run in worker threads -------------------------------------------------

def _wait(futures: list[Any]) -> None:
    from distributed import wait

    wait(futures)


def _stop(client: Any, futures: list[Any], stops: list[str], within: float) -> None:
    """Set the stop event of every unfinished task, give them ``within`` seconds to end
    their children, then cancel what is left (queued tasks) and forget the events."""
    from distributed import Event, wait

    pending = [(future, stop) for future, stop in zip(futures, stops, strict=True)
               if not future.done()]
    for _, stop in pending:
        Event(stop, client=client).set()
    try:
        wait([future for future, _ in pending], timeout=within)
    except TimeoutError:
        pass
    client.cancel([future for future, _ in pending])
    for _, stop in pending:
        Event(stop, client=client).clear()


def _collect(client: Any, cmds: list[list[Any]], futures: list[Any],
             stops: list[str]) -> list[Outcome]:
    from distributed import Event

    finished = [f for f in futures if f.status == "finished"]
    packed = dict(zip([f.key for f in finished], client.gather(finished), strict=True))
    outcomes: list[Outcome] = []
    for cmd, future, stop in zip(cmds, futures, stops, strict=True):
        if future.key in packed:
            outcome = _unpack(packed[future.key])
            if outcome is None:
                outcome = WorkerLost(cmd, "it was stopped on the cluster (its stop event "
                                          "was set from outside this call)")
            outcomes.append(outcome)
            continue
        Event(stop, client=client).set()  # a waiter its dead worker left on the scheduler
        Event(stop, client=client).clear()
        outcomes.append(WorkerLost(cmd, _why_lost(cmd, future)))
    return outcomes


def _why_lost(cmd: list[Any], future: Any) -> str:
    from distributed import KilledWorker

    if future.status != "error":  # cancelled or lost by someone else's hand
        return f"its task was {future.status} on the cluster"
    error = future.exception()
    if isinstance(error, KilledWorker):
        return f"the worker running it died ({error.last_worker.address})" \
            if getattr(error, "last_worker", None) is not None else "the worker running it died"
    if isinstance(error, ModuleNotFoundError | ImportError):
        raise RuntimeError(
            f"the workers cannot run {format_command(cmd)}: {error}. Install asyncproc-kit "
            "(with the `cluster` extra) in every worker's environment") from error
    raise RuntimeError(f"running {format_command(cmd)} on the cluster failed unexpectedly: "
                       f"{type(error).__name__}: {error}") from error


def _close_semaphore(client: Any, semaphore: tuple[str, int]) -> bool:
    """Forget a finished map's semaphore on the scheduler; False while a lease is held.

    Every task of the map has ended, so a lease still held was taken by a worker that died:
    the scheduler frees it after ``distributed.scheduler.locks.lease-timeout`` (30 s), and
    the runner tries again at its next ``map`` and on exit.
    """
    from distributed import Semaphore

    sem = Semaphore(max_leases=semaphore[1], name=semaphore[0],
                    scheduler_rpc=client.scheduler, loop=client.loop)
    if sem.get_value() == 0:
        sem.close()
        return True
    if getattr(sem, "refresh_callback", None) is not None:
        sem.refresh_callback.stop()
    return False
