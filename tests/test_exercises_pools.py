"""The checks of notebooks 04 and 05 accept right answers and explain wrong ones."""

from __future__ import annotations

import heapq
import subprocess
from collections.abc import AsyncIterator

import anyio
import pytest
from helpers import nothing_left_behind  # noqa: F401

from asyncproc_kit import ProcessError, ProcessPool, ProcessResult, SpawnError, map_limited, run
from asyncproc_kit.exercises import (
    check_exit_codes,
    check_feed,
    check_pool_by_hand,
    check_start_order,
)

pytestmark = pytest.mark.anyio


# -- 04.1 a bounded batch ---------------------------------------------------------------------


def code_of(outcome: ProcessResult | ProcessError) -> int | None:
    if isinstance(outcome, SpawnError):
        return None
    return outcome.returncode  # type: ignore[union-attr]


async def test_exit_codes_right_answer_passes() -> None:
    """map_limited with the limit, SpawnError as None: passes."""
    async def exit_codes(commands: list[list[str]], limit: int) -> list[int | None]:
        return [code_of(r) for r in await map_limited(commands, limit=limit)]

    verdict = await check_exit_codes(exit_codes)
    assert verdict.passed, verdict


async def test_exit_codes_without_a_limit_fails() -> None:
    """Everything at once breaks the limit, and the check says so."""
    async def exit_codes(commands: list[list[str]], limit: int) -> list[int | None]:
        return [code_of(r) for r in await map_limited(commands, limit=len(commands))]

    verdict = await check_exit_codes(exit_codes)
    assert not verdict.passed
    assert "ran at once" in verdict.message


async def test_exit_codes_forgetting_limit_fails_on_any_machine(monkeypatch) -> None:
    """No limit= means the default worker count, which the check sets above its limit,
    so a one-CPU machine rejects it too."""
    monkeypatch.delenv("ASYNCPROC_KIT_WORKERS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 1)

    async def exit_codes(commands: list[list[str]], limit: int) -> list[int | None]:
        return [code_of(r) for r in await map_limited(commands)]

    verdict = await check_exit_codes(exit_codes)
    assert not verdict.passed
    assert "ran at once with limit=" in verdict.message
    assert "limit=" in verdict.hint


async def test_exit_codes_with_a_semaphore_passes() -> None:
    """Written differently: a semaphore around run(check=False) in a task group."""
    async def exit_codes(commands: list[list[str]], limit: int) -> list[int | None]:
        codes: list[int | None] = [None] * len(commands)
        gate = anyio.Semaphore(limit)

        async def one(i: int) -> None:
            async with gate:
                try:
                    codes[i] = (await run(commands[i], check=False)).returncode
                except SpawnError:
                    codes[i] = None

        async with anyio.create_task_group() as tg:
            for i in range(len(commands)):
                tg.start_soon(one, i)
        return codes

    verdict = await check_exit_codes(exit_codes)
    assert verdict.passed, verdict


async def test_exit_codes_that_stop_at_the_first_failure_fail() -> None:
    """A plain run() raising on the missing program is reported with its error."""
    async def exit_codes(commands: list[list[str]], limit: int) -> list[int | None]:
        return [(await run(c, check=False)).returncode for c in commands]

    verdict = await check_exit_codes(exit_codes)
    assert not verdict.passed
    assert "SpawnError" in verdict.message


async def test_exit_codes_stub_raises_not_implemented() -> None:
    """The notebook's stub raises NotImplementedError through the check, unwrapped."""
    async def exit_codes(commands: list[list[str]], limit: int) -> list[int | None]:
        raise NotImplementedError("write it")

    with pytest.raises(NotImplementedError):
        await check_exit_codes(exit_codes)


# -- 04.2 a pool by hand ----------------------------------------------------------------------


async def pool_right(commands: list[list[str]], workers: int) -> list[str]:
    results: list[str] = [""] * len(commands)
    send, receive = anyio.create_memory_object_stream[tuple[int, list[str]]]()

    async def worker(jobs: anyio.abc.ObjectReceiveStream[tuple[int, list[str]]]) -> None:
        async with jobs:
            async for index, command in jobs:
                results[index] = (await run(command)).stdout  # type: ignore[assignment]

    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker, receive.clone())
        receive.close()
        async with send:
            for job in enumerate(commands):
                await send.send(job)
    return results


async def test_pool_by_hand_right_answer_passes() -> None:
    """Cloned receive streams, one per worker, results by index: passes."""
    verdict = await check_pool_by_hand(pool_right)
    assert verdict.passed, verdict


async def test_pool_by_hand_one_at_a_time_fails() -> None:
    """A single consumer is correct but not a pool: 'one at a time'."""
    async def pool(commands: list[list[str]], workers: int) -> list[str]:
        return [(await run(c)).stdout for c in commands]  # type: ignore[misc]

    verdict = await check_pool_by_hand(pool)
    assert not verdict.passed
    assert "one at a time" in verdict.message


async def test_pool_by_hand_completion_order_fails() -> None:
    """Appending as they finish loses the input order."""
    async def pool(commands: list[list[str]], workers: int) -> list[str]:
        results = await pool_right(commands, workers)
        return list(reversed(results))

    verdict = await check_pool_by_hand(pool)
    assert not verdict.passed
    assert "order" in verdict.message


async def test_pool_by_hand_that_leaves_children_running_fails() -> None:
    """Returning while children still run (fire and forget) is named in the verdict."""
    started: list[subprocess.Popen[bytes]] = []

    async def pool(commands: list[list[str]], workers: int) -> list[str]:
        started.extend(subprocess.Popen(c, stdout=subprocess.DEVNULL)  # noqa: ASYNC220
                       for c in commands)
        return []

    try:
        verdict = await check_pool_by_hand(pool)
    finally:
        for process in started:
            process.kill()
            process.wait()
    assert not verdict.passed
    assert "still run" in verdict.message


async def test_pool_by_hand_with_map_limited_fails() -> None:
    """map_limited is the kit's pool, not one built by hand: rejected, and said so."""
    async def pool(commands: list[list[str]], workers: int) -> list[str]:
        return [r.stdout for r in await map_limited(commands, limit=workers)]  # type: ignore

    verdict = await check_pool_by_hand(pool)
    assert not verdict.passed
    assert "no job went through a memory object stream" in verdict.message
    assert "map_limited and ProcessPool" in verdict.hint


async def test_pool_by_hand_with_process_pool_fails() -> None:
    """ProcessPool likewise."""
    async def pool(commands: list[list[str]], workers: int) -> list[str]:
        async with ProcessPool(workers=workers) as p:
            jobs = [await p.submit(c) for c in commands]
        return [(await job).stdout for job in jobs]

    verdict = await check_pool_by_hand(pool)
    assert not verdict.passed
    assert "memory object stream" in verdict.message


async def test_pool_by_hand_missing_await_on_send_is_named() -> None:
    """`send.send(job)` without await: the hint says "missing await", not "one at a time"."""
    async def pool(commands: list[list[str]], workers: int) -> list[str]:
        results: list[str] = [""] * len(commands)
        send, receive = anyio.create_memory_object_stream[tuple[int, list[str]]](10)

        async def worker(jobs):  # type: ignore[no-untyped-def]
            async with jobs:
                async for index, command in jobs:
                    results[index] = (await run(command)).stdout  # type: ignore

        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker, receive.clone())
            receive.close()
            async with send:
                for job in enumerate(commands):
                    send.send(job)  # type: ignore[unused-coroutine]
        return results

    verdict = await check_pool_by_hand(pool)
    assert not verdict.passed
    assert "missing `await`" in verdict.message
    assert "send" in verdict.message
    assert "await" in verdict.hint


async def test_pool_by_hand_one_shared_stream_with_receive_loops_passes() -> None:
    """Written differently: no clones, `workers` tasks share one receive stream and loop on
    receive() until EndOfStream; the results come back as a dict turned into a list."""
    async def pool(commands: list[list[str]], workers: int) -> list[str]:
        done: dict[int, str] = {}
        send, receive = anyio.create_memory_object_stream[tuple[int, list[str]]](len(commands))
        for job in enumerate(commands):
            send.send_nowait(job)
        send.close()

        async def worker() -> None:
            while True:
                try:
                    index, command = await receive.receive()
                except anyio.EndOfStream:
                    return
                done[index] = (await run(command)).stdout  # type: ignore[assignment]

        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
        receive.close()
        return [done[i] for i in range(len(commands))]

    verdict = await check_pool_by_hand(pool)
    assert verdict.passed, verdict


# -- 05.1 start order -------------------------------------------------------------------------


def test_start_order_with_a_sequence_number_passes() -> None:
    """heapq with (priority, seq, name): passes."""
    def start_order(submissions: list[tuple[str, int]]) -> list[str]:
        heap = [(priority, seq, name) for seq, (name, priority) in enumerate(submissions)]
        heapq.heapify(heap)
        return [heapq.heappop(heap)[2] for _ in range(len(heap))]

    assert check_start_order(start_order).passed


def test_start_order_newest_first_is_named_as_the_original_bug() -> None:
    """The original's tie-break (newest first) is recognised."""
    def start_order(submissions: list[tuple[str, int]]) -> list[str]:
        heap = [(priority, -seq, name) for seq, (name, priority) in enumerate(submissions)]
        heapq.heapify(heap)
        return [heapq.heappop(heap)[2] for _ in range(len(heap))]

    verdict = check_start_order(start_order)
    assert not verdict.passed
    assert "newest first" in verdict.message


def test_start_order_larger_first_is_explained() -> None:
    """Sorting by descending priority gets the 'smaller is more urgent' hint."""
    def start_order(submissions: list[tuple[str, int]]) -> list[str]:
        return [n for n, _ in sorted(submissions, key=lambda s: -s[1])]

    verdict = check_start_order(start_order)
    assert not verdict.passed
    assert "larger" in verdict.message


def test_start_order_stub_raises_not_implemented() -> None:
    """The stub's NotImplementedError passes through."""
    def start_order(submissions: list[tuple[str, int]]) -> list[str]:
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        check_start_order(start_order)


# -- 05.2 submit while it runs ----------------------------------------------------------------


async def test_feed_submitting_as_commands_arrive_passes() -> None:
    """Submit inside `async for`, await afterwards: passes."""
    async def run_feed(arrivals: AsyncIterator[list[str]]) -> list[ProcessResult]:
        async with ProcessPool(workers=2) as pool:
            jobs = [await pool.submit(command) async for command in arrivals]
        return [await job for job in jobs]

    verdict = await check_feed(run_feed)
    assert verdict.passed, verdict


async def test_feed_collecting_first_fails() -> None:
    """Collecting every command before submitting anything is caught."""
    async def run_feed(arrivals: AsyncIterator[list[str]]) -> list[ProcessResult]:
        commands = [command async for command in arrivals]
        async with ProcessPool(workers=2) as pool:
            jobs = [await pool.submit(command) for command in commands]
        return [await job for job in jobs]

    verdict = await check_feed(run_feed)
    assert not verdict.passed
    assert "before the last command arrived" in verdict.message


async def test_feed_returning_text_instead_of_results_fails() -> None:
    """Only stdout strings cannot show when each started: the check asks for results."""
    async def run_feed(arrivals: AsyncIterator[list[str]]) -> list[str]:
        async with ProcessPool(workers=2) as pool:
            jobs = [await pool.submit(command) async for command in arrivals]
        return [(await job).stdout for job in jobs]  # type: ignore[misc]

    verdict = await check_feed(run_feed)
    assert not verdict.passed
    assert "results" in verdict.message


async def test_feed_awaiting_each_job_before_the_next_arrival_fails() -> None:
    """Submit and await inside the loop: a pool that runs one job at a time."""
    async def run_feed(arrivals: AsyncIterator[list[str]]) -> list[ProcessResult]:
        results = []
        async with ProcessPool(workers=2) as pool:
            async for command in arrivals:
                job = await pool.submit(command)
                results.append(await job)
        return results

    verdict = await check_feed(run_feed)
    assert not verdict.passed
    assert "one at a time" in verdict.message
    assert "await them after" in verdict.hint


async def test_feed_without_a_pool_fails() -> None:
    """`await run(command)` in the loop is no pool at all."""
    async def run_feed(arrivals: AsyncIterator[list[str]]) -> list[ProcessResult]:
        return [await run(command) async for command in arrivals]

    verdict = await check_feed(run_feed)
    assert not verdict.passed
    assert "ProcessPool.submit" in verdict.message


async def test_feed_missing_await_on_submit_is_named() -> None:
    """`pool.submit(command)` without await: "missing await", not "the pool is closed"."""
    async def run_feed(arrivals: AsyncIterator[list[str]]) -> list[ProcessResult]:
        async with ProcessPool(workers=2) as pool:
            jobs = [pool.submit(command) async for command in arrivals]
        return [await job for job in jobs]  # type: ignore[misc]

    verdict = await check_feed(run_feed)
    assert not verdict.passed
    assert "missing `await`" in verdict.message
    assert "submit" in verdict.hint


async def test_feed_with_a_priority_pool_and_an_explicit_loop_passes() -> None:
    """Written differently: an explicit loop, a wider pool, wait() on each handle."""
    async def run_feed(arrivals: AsyncIterator[list[str]]) -> list[ProcessResult]:
        jobs = []
        async with ProcessPool(workers=3) as pool:
            async for command in arrivals:
                jobs.append(await pool.submit(command, priority=1))
            results = [await job for job in jobs]
        return results

    verdict = await check_feed(run_feed)
    assert verdict.passed, verdict


def test_start_order_async_def_is_named() -> None:
    """`async def` where a plain function is asked: said so, not "pop every entry"."""
    async def start_order(submissions: list[tuple[str, int]]) -> list[str]:
        return [n for n, _ in submissions]

    verdict = check_start_order(start_order)
    assert not verdict.passed
    assert "async def" in verdict.message
    assert "plain `def`" in verdict.hint
