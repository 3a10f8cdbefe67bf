"""The checks behind notebook 11: right answers pass (written differently), wrong ones say
what went wrong and hint at the real cause."""

from __future__ import annotations

from collections import defaultdict

import anyio
import pytest

from asyncproc_kit import exercises
from asyncproc_kit.cases.logs import aggregate
from asyncproc_kit.testing import session_members

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


def assert_wrong(result: exercises.ExerciseResult, *words: str) -> None:
    assert not result.passed, result
    for word in words:
        assert word in result.message or word in result.hint, result
    assert result.hint, result
    assert str(result).startswith("❌")


def assert_right(result: exercises.ExerciseResult) -> None:
    assert result.passed, result
    assert str(result).startswith("✅")


# -- 11.1 find_gaps -----------------------------------------------------------------------------

def gaps_by_last_seq(lines):
    last, seen = {}, defaultdict(int)
    for line in lines:
        key = (line.name, line.source)
        last[key] = line.seq
        seen[key] += 1
    return {key: last[key] + 1 - seen[key] for key in last}


def gaps_by_walking(lines):
    expected, missing = {}, {}
    for line in lines:
        key = (line.name, line.source)
        missing[key] = missing.get(key, 0) + line.seq - expected.get(key, 0)
        expected[key] = line.seq + 1
    return missing


async def test_find_gaps_right_two_ways():
    """Counting from the last seq, or walking the lines, both pass."""
    assert_right(await exercises.check_find_gaps(gaps_by_last_seq))
    assert_right(await exercises.check_find_gaps(gaps_by_walking))


async def test_find_gaps_not_written_yet_raises():
    """The stub's NotImplementedError reaches the cell."""
    def find_gaps(lines):
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        await exercises.check_find_gaps(find_gaps)


async def test_find_gaps_keyed_by_name_only():
    """Mixing stdout and stderr numbers is named."""
    def find_gaps(lines):
        last, seen = {}, defaultdict(int)
        for line in lines:
            last[line.name] = max(last.get(line.name, 0), line.seq)
            seen[line.name] += 1
        return {name: last[name] + 1 - len({(x.seq) for x in lines if x.name == name})
                for name in last}

    assert_wrong(await exercises.check_find_gaps(find_gaps), "names only", "(name, source)")


async def test_find_gaps_from_first_seen():
    """Starting from the first seq seen misses the drops before it."""
    def find_gaps(lines):
        first, last, seen = {}, {}, defaultdict(int)
        for line in lines:
            key = (line.name, line.source)
            first.setdefault(key, line.seq)
            last[key] = line.seq
            seen[key] += 1
        return {key: last[key] + 1 - first[key] - seen[key] for key in last}

    assert_wrong(await exercises.check_find_gaps(find_gaps), "before the first", "starts at 0")


async def test_find_gaps_counts_runs():
    """Counting jumps instead of missing numbers is named."""
    def find_gaps(lines):
        expected, runs = {}, {}
        for line in lines:
            key = (line.name, line.source)
            runs[key] = runs.get(key, 0) + (line.seq != expected.get(key, 0))
            expected[key] = line.seq + 1
        return runs

    assert_wrong(await exercises.check_find_gaps(find_gaps), "gaps, not missing lines")


async def test_find_gaps_wrong_kinds():
    """Async, a non-dict, a crash: each gets its own message."""
    async def is_async(lines):
        return {}

    assert_wrong(await exercises.check_find_gaps(is_async), "async")
    assert_wrong(await exercises.check_find_gaps(lambda lines: 0), "not a dict")
    assert_wrong(await exercises.check_find_gaps(lambda lines: 1 / 0), "ZeroDivisionError")
    assert_wrong(await exercises.check_find_gaps(lambda lines: {("web", "stdout"): 1}),
                 "do not match")


# -- 11.2 stop_on_failure -----------------------------------------------------------------------

async def with_exits(commands):
    async with aggregate(commands) as logs:
        async with anyio.create_task_group() as tg:
            async def watch():
                async for _, code in logs.exits():
                    if code != 0:
                        await logs.terminate()

            tg.start_soon(watch)
            async for _ in logs:
                pass
    return {name: s.returncode for name, s in logs.summary.items()}


async def leave_on_failure(commands):
    """Different shape: no watcher task and no terminate(): wait for the first failure in the
    block's own loop, then leave the block, which ends everyone."""
    async with aggregate(commands) as logs:
        async for _, code in logs.exits():
            if code != 0:
                break
    return {name: s.returncode for name, s in logs.summary.items()}


async def test_stop_on_failure_right_two_ways():
    """A watcher on exits(), or leaving on the failure, both pass; nothing is left."""
    assert_right(await exercises.check_stop_on_failure(with_exits))
    assert_right(await exercises.check_stop_on_failure(leave_on_failure))


async def test_stop_on_failure_waiting_for_everyone_is_cut_short():
    """Reading every line until the end would take a minute: stopped with a hint, and the
    abandoned children do not survive."""
    started = []

    async def wait_all(commands):
        async with aggregate(commands) as logs:
            started.extend(s.pid for s in logs.summary.values())
            async for _ in logs:
                pass
        return {name: s.returncode for name, s in logs.summary.items()}

    assert_wrong(await exercises.check_stop_on_failure(wait_all), "no answer", "terminate")
    assert session_members(started) == []


async def test_stop_on_failure_codes_read_too_early():
    """Return codes read inside the block, before the children ended, are None."""
    async def too_early(commands):
        async with aggregate(commands) as logs:
            async for _, code in logs.exits():
                if code:
                    return {n: s.returncode for n, s in logs.summary.items()}
        return {}

    assert_wrong(await exercises.check_stop_on_failure(too_early), "None", "after")


async def test_stop_on_failure_wrong_kinds():
    """Not async, a list, missing names."""
    def not_async(commands):
        return {}

    async def a_list(commands):
        return []

    async def some_names(commands):
        return {"nobody": 0}

    assert_wrong(await exercises.check_stop_on_failure(not_async), "not async")
    assert_wrong(await exercises.check_stop_on_failure(a_list), "not a dict")
    assert_wrong(await exercises.check_stop_on_failure(some_names), "names")
