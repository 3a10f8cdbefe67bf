"""DaskRunner: the kit's commands on Dask distributed, with cancellation that stops them."""

from __future__ import annotations

import itertools
import os
import pickle
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator

import anyio
import psutil
import pytest
from helpers import eventually, nothing_left_behind  # noqa: F401

from asyncproc_kit import ProcessFailed, ProcessResult, ProcessTimeout, SpawnError
from asyncproc_kit.cases.cluster import DaskRunner, WorkerLost, _pack, _unpack
from asyncproc_kit.testing import (
    EXIT,
    SLEEP,
    SPAWN_GRANDCHILDREN,
    descendants,
    python,
    session_members,
)

pytest.importorskip("distributed")

pytestmark = pytest.mark.anyio

GONE_WITHIN = 2.0 + 2.0 + 3.0  # grace + the contract's 2 s + slack for a loaded machine


@pytest.fixture(scope="module")
def shared() -> Iterator[DaskRunner]:
    """One local cluster (2 workers, TLS) for the module: each test connects by address."""
    runner = DaskRunner(n_workers=2)
    anyio.run(runner.__aenter__)
    try:
        yield runner
    finally:
        anyio.run(runner.__aexit__, None, None, None)


@pytest.fixture
async def runner(shared: DaskRunner) -> DaskRunner:
    async with DaskRunner(address=shared.address, security=shared.security) as connected:
        yield connected


async def worker_children(runner: DaskRunner) -> list[int]:
    """Pids of every live process below the cluster's workers (they run on this machine)."""
    return sorted(p for pid in (await runner.worker_pids()).values() for p in descendants(pid))


def scheduler_state(dask_scheduler) -> tuple[int, int]:  # runs on the scheduler
    """(events, semaphores) the scheduler still holds."""
    return (len(dask_scheduler.extensions["events"]._events),
            len(dask_scheduler.extensions["semaphores"].max_leases))


async def scheduler_leftovers(runner: DaskRunner) -> tuple[int, int]:
    return await anyio.to_thread.run_sync(runner.client.run_on_scheduler, scheduler_state)


# -- outcomes ---------------------------------------------------------------------------------

async def test_map_gives_typed_outcomes_in_input_order(runner: DaskRunner) -> None:
    """Each command's result or error comes back in input order, with its details intact."""
    outcomes = await runner.map([["echo", "hi"], EXIT(3, "broken"), ["no-such-program-x"],
                                 SLEEP(30)], timeout=0.5)
    ok, failed, missing, slow = outcomes
    assert isinstance(ok, ProcessResult)
    assert ok.stdout == "hi\n"
    assert ok.returncode == 0
    assert isinstance(failed, ProcessFailed)
    assert failed.returncode == 3
    assert failed.stderr == "broken"
    assert "exit code 3" in str(failed)
    assert isinstance(missing, SpawnError)
    assert missing.cmd == ["no-such-program-x"]
    assert "not on PATH" in missing.reason
    assert isinstance(slow, ProcessTimeout)
    assert slow.timeout == 0.5
    assert slow.returncode == -signal.SIGTERM
    assert "timed out after 0.5 s" in str(slow)
    assert await scheduler_leftovers(runner) == (0, 0)


async def test_run_returns_the_result_or_raises(runner: DaskRunner) -> None:
    """run() is map() of one command: the result, or its error raised."""
    result = await runner.run(python("import sys; print(sys.stdin.read().upper())"),
                              input="shout")
    assert result.stdout == "SHOUT\n"
    with pytest.raises(ProcessFailed, match="exit code 2"):
        await runner.run(EXIT(2))
    assert (await runner.run(EXIT(2), check=False)).returncode == 2


async def test_an_empty_batch_is_an_empty_list(runner: DaskRunner) -> None:
    """Nothing to run: nothing is submitted."""
    assert await runner.map([]) == []


def test_outcomes_survive_the_trip_through_pickle() -> None:
    """Every kind of outcome, packed on a worker and pickled, comes back equal."""
    result = ProcessResult(args=["x"], returncode=1, stdout="out", stderr="err", pid=7,
                           started=1.0, ended=2.0, duration=1.0)
    outcomes = [result, ProcessFailed(result),
                ProcessTimeout(["x"], 1.5, "so far", "", -15, limit="deadline"),
                SpawnError(["x"], "no such file", "Install it.", 2),
                WorkerLost(["x"], "the worker running it died")]
    for outcome in outcomes:
        back = _unpack(pickle.loads(pickle.dumps(_pack(outcome))))
        assert type(back) is type(outcome)
        assert str(back) == str(outcome)
        assert vars(back) == vars(outcome)
    lost = pickle.loads(pickle.dumps(outcomes[-1]))  # WorkerLost pickles on its own too
    assert lost.cmd == ["x"]
    assert lost.reason == "the worker running it died"


# -- limit and retries -------------------------------------------------------------------------

SPAN = python("""
    import time
    start = time.time()
    time.sleep(0.3)
    print(start, time.time())
""")


async def test_limit_holds_across_the_whole_cluster(runner: DaskRunner) -> None:
    """With limit=1 on two workers, no two commands ever run at the same time."""
    outcomes = await runner.map([SPAN] * 4, limit=1)
    spans = sorted(tuple(map(float, o.stdout.split())) for o in outcomes)
    assert len(spans) == 4
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end
    assert await scheduler_leftovers(runner) == (0, 0)  # the semaphore was closed


async def test_retries_run_a_failing_command_again(runner: DaskRunner, tmp_path) -> None:
    """retries=N re-runs a failed command until it succeeds; retries=0 keeps the failure."""
    counter = tmp_path / "attempts"
    flaky = python(f"""
        import pathlib, sys
        path = pathlib.Path({str(counter)!r})
        count = int(path.read_text()) + 1 if path.exists() else 1
        path.write_text(str(count))
        sys.exit(0 if count >= 3 else 1)
    """)
    assert isinstance((await runner.map([flaky]))[0], ProcessFailed)
    counter.unlink()
    [outcome] = await runner.map([flaky], retries=2)
    assert isinstance(outcome, ProcessResult)
    assert counter.read_text() == "3"


async def test_a_missing_program_is_not_retried(runner: DaskRunner) -> None:
    """SpawnError comes back at once, whatever retries says."""
    [outcome] = await runner.map([["no-such-program-x"]], retries=5)
    assert isinstance(outcome, SpawnError)


# -- cancellation -----------------------------------------------------------------------------

async def test_cancelling_the_caller_ends_the_children_and_frees_the_slots(
        runner: DaskRunner) -> None:
    """Cancelled mid-run: every child's whole group is gone, then the workers take new work."""
    assert await worker_children(runner) == []
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.map, [SPAWN_GRANDCHILDREN(2)] * 3)  # 2 run, 1 waits
        with anyio.fail_after(30):  # each running command: a shell and two sleepers
            while len(found := await worker_children(runner)) < 6:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
        cancelled_at = anyio.current_time()
    assert anyio.current_time() - cancelled_at < GONE_WITHIN
    assert [pid for pid in found if _alive(pid)] == []
    assert await worker_children(runner) == []
    with anyio.fail_after(30):
        assert (await runner.map([["echo", "free"]] * 2))[0].stdout == "free\n"
    assert await scheduler_leftovers(runner) == (0, 0)


def _below_workers(runner: DaskRunner) -> list[int]:
    pids = runner.client.run(os.getpid)
    return [p for pid in pids.values() for p in descendants(pid)]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_future_cancel_alone_leaves_the_child_running(runner: DaskRunner) -> None:
    """The negative control: plain Dask's Future.cancel() returns, the child keeps running."""
    client = runner.client
    future = await anyio.to_thread.run_sync(
        lambda: client.submit(subprocess.run, SLEEP(60), pure=False))
    await eventually(lambda: _below_workers(runner), within=30)
    [child] = _below_workers(runner)
    await anyio.to_thread.run_sync(future.cancel)
    assert future.cancelled()
    await anyio.sleep(1.0)  # give the worker every chance to stop it: it does not
    assert _alive(child)
    os.kill(child, signal.SIGKILL)  # only killing it by hand frees the worker's thread
    await eventually(lambda: not _alive(child), within=10)
    await eventually(lambda: not _below_workers(runner), within=10)


@pytest.mark.timeout(200)  # a worker restart on a loaded machine can take a minute
async def test_a_dead_worker_gives_worker_lost(runner: DaskRunner, shared: DaskRunner) -> None:
    """A command whose worker dies is WorkerLost (not re-run); the cluster gets a new worker."""
    suicide = python("import os, signal; os.kill(os.getppid(), signal.SIGKILL)")
    with anyio.fail_after(90):
        # (no limit: with limit=1 the dead worker's lease would hold the other back 30 s)
        [lost, fine] = await runner.map([suicide, ["echo", "ok"]])
    assert isinstance(lost, WorkerLost)
    assert "died" in str(lost)
    assert isinstance(fine, ProcessResult)
    with anyio.fail_after(90):
        while len(await runner.worker_pids()) < 2:  # noqa: ASYNC110 (a new worker)
            await anyio.sleep(0.1)
    # no event is left; the semaphore waits for its dead lease to expire (30 s)
    assert (await scheduler_leftovers(runner))[0] == 0


# -- the runner's own cluster ----------------------------------------------------------------

async def test_own_cluster_listens_on_loopback_only_and_leaves_nothing() -> None:
    """No address: TLS on 127.0.0.1 (HTTP off 8787, /health only); all gone after exit."""
    async with DaskRunner(n_workers=1) as runner, anyio.create_task_group() as tg:
        assert runner.address.startswith("tls://127.0.0.1:")
        workers = list((await runner.worker_pids()).values())
        assert (await runner.run(["echo", "hi"])).stdout == "hi\n"
        tg.start_soon(runner.map, [SPAWN_GRANDCHILDREN(2)])  # still running at the exit
        with anyio.fail_after(30):
            while len(running := await worker_children(runner)) < 3:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        listeners = _listeners([os.getpid(), *workers])
        assert listeners
        assert {ip for ip, _ in listeners} == {"127.0.0.1"}
        assert 8787 not in {port for _, port in listeners}
        http = runner.cluster.scheduler.http_server.port
        assert _http_status(http, "/health") == 200
        assert _http_status(http, "/info/main/workers.html") == 404
        tg.cancel_scope.cancel()
    assert runner.client is None
    for pid in [*workers, *running]:
        await eventually(lambda pid=pid: not _alive(pid), within=15)
    assert session_members(running) == []


async def test_security_false_gives_plain_tcp() -> None:
    """security=False: the same runner over plain TCP (anyone on the machine may connect)."""
    async with DaskRunner(n_workers=1, security=False) as runner:
        assert runner.address.startswith("tcp://127.0.0.1:")
        assert runner.security is None
        assert (await runner.run(["echo", "plain"])).stdout == "plain\n"


async def test_a_client_without_the_certificates_is_refused(shared: DaskRunner) -> None:
    """The TLS cluster refuses a client that has no certificate, by either scheme."""
    with pytest.raises(TypeError, match="TLS expects"):
        async with DaskRunner(address=shared.address, timeout=5):
            pass
    with pytest.raises(OSError, match=r"(?i)closed|reset"):
        async with DaskRunner(address=shared.address.replace("tls://", "tcp://"), timeout=5):
            pass


def _listeners(pids: list[int]) -> set[tuple[str, int]]:
    found = set()
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                found.add((conn.laddr.ip, conn.laddr.port))
    return found


def _http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code


# -- bad input --------------------------------------------------------------------------------

async def test_bad_arguments_raise_before_anything_runs(runner: DaskRunner) -> None:
    """A string command, a bad limit or retries, a closed runner: clear errors at once."""
    with pytest.raises(TypeError, match="list of arguments"):
        await runner.map("echo hi")
    with pytest.raises(ValueError, match="limit must be at least 1"):
        await runner.map([["true"]], limit=0)
    with pytest.raises(ValueError, match="retries must be"):
        await runner.map([["true"]], retries=-1)
    with pytest.raises(RuntimeError, match="not open"):
        await DaskRunner(address=runner.address).map([["true"]])
    with pytest.raises(ValueError, match="temporary certificate authority"):
        DaskRunner(address=runner.address, security=True)
    with pytest.raises(TypeError, match="address must be"):
        DaskRunner(address=("127.0.0.1", 8786))

