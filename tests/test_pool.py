"""ProcessPool: submit while running, priorities with FIFO ties, resizing, close and cancel."""

from __future__ import annotations

import itertools
import time

import anyio
import pytest
from helpers import (  # noqa: F401
    FileReopener,
    interrupted,
    live_kit_children,
    members_at_least,
    nothing_left_behind,
    open_fds,
    zombie_children,
)

from asyncproc_kit import (
    Job,
    PoolCancelled,
    ProcessFailed,
    ProcessPool,
    ProcessResult,
    Progress,
    SpawnError,
    terminate,
)
from asyncproc_kit.testing import EXIT, PRINT_LINES, SLEEP, session_members

pytestmark = pytest.mark.anyio

QUICK = ["sh", "-c", "exit 0"]
# A shell with one background grandchild; it prints "ready" once both run.
WITH_GRANDCHILD = ["sh", "-c", "sleep 60 & echo ready; wait"]


def start_order(pool: ProcessPool) -> list[str]:
    spans = [s for s in pool.timeline.spans if s.started is not None]
    return [s.label for s in sorted(spans, key=lambda s: s.started)]  # type: ignore[arg-type, return-value]


async def blocked_pool_jobs(pool: ProcessPool, seconds: float = 0.5) -> Job:
    """Occupy the pool's only worker so that what is submitted next waits in the queue."""
    blocker = await pool.submit(SLEEP(seconds), label="blocker")
    await blocker.wait_started()
    return blocker


# -- results ----------------------------------------------------------------------------------


async def test_submit_returns_a_job_whose_await_gives_the_result() -> None:
    """await job gives the ProcessResult; the job records its state and span."""
    async with ProcessPool(workers=2) as pool:
        job = await pool.submit(PRINT_LINES(2), label="two lines")
        assert isinstance(job, Job)
        result = await job
    assert isinstance(result, ProcessResult)
    assert result.stdout == "line 0\nline 1\n"
    assert job.state == "done"
    assert job.done()
    assert job.error is None
    assert job.span.label == "two lines"
    assert job.span.outcome == "ok"
    assert await job.wait() is result  # awaitable again, same result


async def test_a_failing_job_raises_its_error_and_the_pool_goes_on() -> None:
    """A non-zero exit and a missing program fail their jobs only."""
    async with ProcessPool(workers=1) as pool:
        bad = await pool.submit(EXIT(4, "nope"))
        missing = await pool.submit(["no-such-program-xyz"])
        good = await pool.submit(EXIT(0))
    with pytest.raises(ProcessFailed, match="exit code 4"):
        await bad
    with pytest.raises(SpawnError, match="no-such-program-xyz"):
        await missing
    assert (await good).returncode == 0
    assert bad.state == missing.state == "failed"
    assert isinstance(bad.error, ProcessFailed)


async def test_job_options_apply_per_job() -> None:
    """check=False, input= and timeout= are per submit."""
    async with ProcessPool(workers=2) as pool:
        lenient = await pool.submit(EXIT(3), check=False)
        echoed = await pool.submit(["sh", "-c", "cat"], input="hello")
        slow = await pool.submit(SLEEP(30), timeout=0.5, grace=0.5)
    assert (await lenient).returncode == 3
    assert (await echoed).stdout == "hello"
    with pytest.raises(TimeoutError):
        await slow
    assert slow.span.outcome == "timeout"


async def test_jobs_can_be_submitted_and_awaited_from_other_tasks() -> None:
    """Two tasks submit into one pool; a third awaits a job the first one submitted."""
    seen: list[int] = []
    handed: list[Job] = []
    ready = anyio.Event()

    async def producer(pool: ProcessPool, code: int) -> None:
        job = await pool.submit(EXIT(code), check=False)
        handed.append(job)
        ready.set()
        seen.append((await job).returncode)

    async def watcher() -> None:
        await ready.wait()
        seen.append((await handed[0]).returncode + 100)

    async with ProcessPool(workers=2) as pool, anyio.create_task_group() as tg:
        tg.start_soon(producer, pool, 1)
        tg.start_soon(producer, pool, 2)
        tg.start_soon(watcher)
    assert sorted(seen) == sorted([1, 2, 100 + handed[0].span.returncode])


# -- scheduling -------------------------------------------------------------------------------


async def test_smaller_priority_first_fifo_among_equals() -> None:
    """Queued behind a blocker, jobs start by (priority, submission order)."""
    async with ProcessPool(workers=1) as pool:
        await blocked_pool_jobs(pool)
        for i, priority in enumerate([2, 1, 2, 0, 1, 2, -1, 0]):
            await pool.submit(QUICK, priority=priority, label=f"p{priority}#{i}")
    assert start_order(pool) == ["blocker", "p-1#6", "p0#3", "p0#7", "p1#1", "p1#4",
                                 "p2#0", "p2#2", "p2#5"]


async def test_equal_priorities_start_in_submission_order() -> None:
    """Thirty equal-priority jobs start exactly in the order they were submitted."""
    async with ProcessPool(workers=1) as pool:
        await blocked_pool_jobs(pool, 0.3)
        jobs = [await pool.submit(QUICK, priority=5, label=str(i)) for i in range(30)]
    assert start_order(pool)[1:] == [str(i) for i in range(30)]
    assert [job.seq for job in jobs] == list(range(1, 31))


async def test_a_job_submitted_while_running_starts_without_polling_delay() -> None:
    """An idle pool starts a new job at once (well under a 100 ms polling interval)."""
    async with ProcessPool(workers=2) as pool:
        waits = []
        for _ in range(5):
            job = await pool.submit(QUICK)
            await job
            waits.append(job.span.waited)
    assert sorted(waits)[2] < 0.05


async def test_closing_an_idle_pool_returns_at_once() -> None:
    """Idle workers sleep until woken: close() does not wait for a polling tick."""
    async with ProcessPool(workers=8) as pool:
        await anyio.sleep(0.05)
        begun = time.monotonic()
        await pool.close()
        assert time.monotonic() - begun < 0.5
    assert pool.closed


# -- resizing ---------------------------------------------------------------------------------


async def test_growing_the_pool_while_it_runs() -> None:
    """workers 1 -> 4 while jobs wait: four run at once afterwards."""
    async with ProcessPool(workers=1) as pool:
        await blocked_pool_jobs(pool, 0.4)
        for i in range(8):
            await pool.submit(SLEEP(0.4), label=f"j{i}")
        pool.workers = 4
        assert pool.workers == 4
    assert pool.timeline.peak_concurrency() == 4


async def test_shrinking_never_kills_running_jobs() -> None:
    """workers 4 -> 1 while four run: all four finish normally, the rest run one at a time."""
    async with ProcessPool(workers=4) as pool:
        first = [await pool.submit(SLEEP(0.4), label=f"first{i}") for i in range(4)]
        for job in first:
            await job.wait_started()
        later = [await pool.submit(SLEEP(0.1), label=f"later{i}") for i in range(4)]
        pool.workers = 1
    assert [(await job).returncode for job in first + later] == [0] * 8
    spans = [job.span for job in later]
    spans.sort(key=lambda s: s.started)  # type: ignore[arg-type, return-value]
    for before, after in itertools.pairwise(spans):
        assert after.started >= before.ended  # type: ignore[operator]


# -- shutdown ---------------------------------------------------------------------------------


async def test_leaving_the_block_lets_queued_work_finish() -> None:
    """Normal exit waits for every job, queued ones included."""
    async with ProcessPool(workers=2) as pool:
        jobs = [await pool.submit(SLEEP(0.1)) for _ in range(6)]
    assert all(job.state == "done" for job in jobs)


async def test_cancel_terminates_running_groups_and_fails_queued_jobs() -> None:
    """Running jobs are terminated with their grandchildren; queued ones never start."""
    async with ProcessPool(workers=2) as pool:
        running = [await pool.submit(WITH_GRANDCHILD) for _ in range(2)]
        queued = [await pool.submit(WITH_GRANDCHILD) for _ in range(3)]
        for job in running:
            await job.wait_started()
        pids = [job.child.pid for job in running]  # type: ignore[union-attr]
        await members_at_least(pids, 4)
        await pool.cancel()
        assert session_members(pids) == []
    for job in running:
        with pytest.raises(PoolCancelled, match="was running and was terminated"):
            await job
    for job in queued:
        with pytest.raises(PoolCancelled, match="never started"):
            await job
        assert job.span.started is None
        assert job.span.outcome == "cancelled"


async def test_an_exception_in_the_block_cancels_and_propagates_unwrapped() -> None:
    """The caller's own error comes out as itself; the pool's children are gone."""
    jobs: list[Job] = []

    async def fail_inside() -> None:
        async with ProcessPool(workers=1) as pool:
            jobs.append(await pool.submit(SLEEP(60)))
            jobs.append(await pool.submit(SLEEP(60)))
            await jobs[0].wait_started()
            raise LookupError("oops")

    with pytest.raises(LookupError, match="oops"):
        await fail_inside()
    running, queued = jobs
    assert running.span.outcome == "cancelled"
    assert session_members([running.span.pid]) == []  # type: ignore[list-item]
    assert isinstance(queued.error, PoolCancelled)


async def test_an_outer_cancellation_ends_the_pool_too() -> None:
    """move_on_after around the block terminates the running job."""
    with anyio.move_on_after(0.5):
        async with ProcessPool(workers=1) as pool:
            job = await pool.submit(SLEEP(60))
            await job
    assert isinstance(job.error, PoolCancelled)
    assert session_members([job.span.pid]) == []  # type: ignore[list-item]


async def test_terminate_works_on_a_job() -> None:
    """terminate(job) ends that job's process group; the pool keeps going."""
    async with ProcessPool(workers=1) as pool:
        victim = await pool.submit(WITH_GRANDCHILD)
        after = await pool.submit(EXIT(0))
        await victim.wait_started()
        await members_at_least([victim.child.pid], 2)  # type: ignore[union-attr]
        ended = await terminate(victim, grace=1.0)
        assert ended.how == "SIGTERM"
    with pytest.raises(ProcessFailed, match="SIGTERM"):
        await victim
    assert (await after).returncode == 0
    assert session_members([victim.span.pid]) == []  # type: ignore[list-item]


async def test_two_hundred_running_children_cancelled_together() -> None:
    """200 children (each with a grandchild) cancelled at once: no survivor, under 1 s."""
    async with ProcessPool(workers=200) as pool:
        jobs = [await pool.submit(WITH_GRANDCHILD) for _ in range(200)]
        for job in jobs:
            await job.wait_started()
        pids = [job.child.pid for job in jobs]  # type: ignore[union-attr]
        await members_at_least(pids, 400, within=30)
        begun = time.monotonic()
        await pool.cancel()
        took = time.monotonic() - begun
        survivors = session_members(pids)
    assert survivors == []
    assert took < 1.0, f"cleanup took {took:.2f} s"
    assert all(isinstance(job.error, PoolCancelled) for job in jobs)
    assert zombie_children() == []
    assert live_kit_children() == []


# -- backpressure -----------------------------------------------------------------------------


async def test_submit_waits_when_the_queue_is_full() -> None:
    """With queue_size=2 a third queued job waits until a worker takes one."""
    async with ProcessPool(workers=1, queue_size=2) as pool:
        blocker = await blocked_pool_jobs(pool, 0.5)
        await pool.submit(QUICK)
        await pool.submit(QUICK)
        with anyio.move_on_after(0.2) as scope:
            await pool.submit(QUICK)
        assert scope.cancelled_caught  # it was still waiting for room
        assert pool.queued == 2
        late = await pool.submit(QUICK)  # room appears once the blocker ends
        assert blocker.done()
    assert (await late).returncode == 0


# -- errors -----------------------------------------------------------------------------------


async def test_submit_after_close_or_cancel_or_outside_is_an_error() -> None:
    """RuntimeError names the command and what to do."""
    pool = ProcessPool(workers=1)
    with pytest.raises(RuntimeError, match="not running"):
        await pool.submit(QUICK)
    async with pool:
        await pool.close()
        with pytest.raises(RuntimeError, match=r"\['sh', '-c', 'exit 0'\].*closed"):
            await pool.submit(QUICK)
    async with ProcessPool(workers=1) as other:
        await other.cancel()
        with pytest.raises(RuntimeError, match="cancelled"):
            await other.submit(QUICK)


@pytest.mark.parametrize("priority", [1.5, "high", None, True])
async def test_a_priority_must_be_an_int(priority: object) -> None:
    """Priorities are integers; anything else is a TypeError before it is queued."""
    async with ProcessPool(workers=1) as pool:
        with pytest.raises(TypeError, match="priority must be an int"):
            await pool.submit(QUICK, priority=priority)  # type: ignore[arg-type]
        assert pool.queued == 0


@pytest.mark.parametrize("workers", [0, -2])
async def test_workers_below_one_are_refused(workers: int) -> None:
    """Zero or negative workers, at creation or when resizing, raise ValueError."""
    with pytest.raises(ValueError, match="workers must be at least 1"):
        ProcessPool(workers=workers)
    async with ProcessPool(workers=1) as pool:
        with pytest.raises(ValueError, match="workers must be at least 1"):
            pool.workers = workers
        assert pool.workers == 1


async def test_a_string_command_is_refused_at_submit() -> None:
    """No shell is implied: submit("echo hi") raises TypeError at once."""
    async with ProcessPool(workers=1) as pool:
        with pytest.raises(TypeError, match="not a string"):
            await pool.submit("echo hi")


async def test_default_workers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """ASYNCPROC_KIT_WORKERS sets the default pool size."""
    monkeypatch.setenv("ASYNCPROC_KIT_WORKERS", "6")
    assert ProcessPool().workers == 6


# -- observing --------------------------------------------------------------------------------


async def test_timeline_and_progress_record_every_job() -> None:
    """Each job has queued <= started <= ended; the progress counts match."""
    progress = Progress(bar=False)
    async with ProcessPool(workers=2, progress=progress) as pool:
        for code in (0, 1, 0, 0):
            await pool.submit(EXIT(code))
    assert (progress.done, progress.failed, progress.running, progress.total) == (3, 1, 0, 4)
    for span in pool.timeline.spans:
        assert span.queued <= span.started <= span.ended  # type: ignore[operator]
    assert pool.timeline.peak_concurrency() <= 2


async def test_progress_after_cancel_counts_queued_jobs_as_failed() -> None:
    """Cancelled queued jobs count as failed without touching the running count."""
    progress = Progress(bar=False)
    async with ProcessPool(workers=1, progress=progress) as pool:
        running = await pool.submit(SLEEP(60))
        for _ in range(3):
            await pool.submit(SLEEP(60))
        await running.wait_started()
        assert progress.running == 1
        await pool.cancel()
    assert (progress.done, progress.failed, progress.running, progress.total) == (0, 4, 0, 4)


def test_pool_explorer_draws_a_timeline_and_the_throughput() -> None:
    """One run of the widget: every job on the timeline, the limit held, a PNG shown."""
    widgets = pytest.importorskip("asyncproc_kit.widgets")
    explorer = widgets.pool_explorer(workers=3, jobs=6, seconds=0.1, run_when_shown=False)
    timeline = explorer.run_once()
    assert timeline is not None
    assert len(timeline.spans) == 6
    assert timeline.peak_concurrency() == 3
    text, image = explorer.output.outputs
    assert "6 jobs x 0.1 s on 3 workers" in text["text"]
    assert "jobs/s" in text["text"]
    assert "image/png" in image["data"]


async def test_cancelling_a_pool_while_a_job_feeds_input_writes_nowhere_else(tmp_path) -> None:
    """pool.cancel() while a job is writing a big input stops the job's feeding task before
    its stdin is closed: no byte reaches a file that reused the descriptor number."""
    files = FileReopener(tmp_path)
    discard = ["sh", "-c", "cat > /dev/null"]
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(files)
            async with ProcessPool(workers=2, grace=0.5) as pool:
                job = await pool.submit(discard, input=b"x" * (512 << 20))
                await job.wait_started()
                await anyio.sleep(0.2)
                await pool.cancel()
            with pytest.raises(PoolCancelled):
                await job
            await anyio.sleep(0.1)
            files.stop.set()
    assert files.written() == 0


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_in_a_pool_is_a_plain_keyboard_interrupt(backend) -> None:
    """Ctrl-C while awaiting a pool job is KeyboardInterrupt on both
    backends; children are ended."""
    code, out, children = interrupted("""
        async with ProcessPool(workers=2) as pool:
            job = await pool.submit(SLEEP(60))
            await job
    """, backend)
    assert (code, out) == (130, "KeyboardInterrupt")
    assert session_members(children) == []


@pytest.mark.parametrize(
    ("options", "error", "fact"),
    [({"cwd": 5}, TypeError, "cwd must be a path"),
     ({"env": {"A": "x\0y"}}, ValueError, r"env\['A'\] contains a NUL"),
     ({"encoding": "utf9"}, LookupError, "unknown encoding"),
     ({"grace": float("inf")}, ValueError, "grace must be finite")],
)
async def test_bad_submit_options_raise_at_submit(options, error, fact) -> None:
    """A bad option raises from submit(), before the job is queued, not from the job."""
    async with ProcessPool(workers=1) as pool:
        with pytest.raises(error, match=fact):
            await pool.submit(SLEEP(0), **options)
        assert pool.queued == 0


async def test_terminate_of_a_queued_job_says_it_has_not_started() -> None:
    """terminate(job) for a job still in the queue says plainly that it has not started
    (not "... not Job")."""
    async with ProcessPool(workers=1, grace=0.5) as pool:
        running = await pool.submit(SLEEP(60))
        queued = await pool.submit(SLEEP(60))
        await running.wait_started()
        with pytest.raises(RuntimeError) as caught:
            await terminate(queued)
        assert "has not started" in str(caught.value)
        assert "queued" in str(caught.value)
        await pool.cancel()


async def test_a_long_lived_pool_keeps_a_bounded_number_of_spans(monkeypatch) -> None:
    """The pool's own timeline keeps only the most recent finished jobs (memory stays
    bounded for a pool that runs for days); a timeline the caller passed keeps them all."""
    from asyncproc_kit import Timeline, _pool

    monkeypatch.setattr(_pool, "KEPT_SPANS", 20)
    mine = Timeline()
    for timeline in (None, mine):
        async with ProcessPool(workers=4, timeline=timeline) as pool:
            jobs = [await pool.submit(QUICK, label=f"job {i}") for i in range(120)]
        assert all(job.state == "done" for job in jobs)
        labels = [span.label for span in pool.timeline.spans]
        if timeline is None:
            assert len(labels) <= 20 + 20 // 10 + 4
            assert "job 119" in labels
            assert "job 0" not in labels
        else:
            assert len(labels) == 120
