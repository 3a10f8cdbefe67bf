"""The checks of notebook 13 accept right answers and explain wrong ones."""

from __future__ import annotations

import subprocess

import anyio
import pytest
from helpers import nothing_left_behind  # noqa: F401

from asyncproc_kit import ProcessFailed, run
from asyncproc_kit.exercises import check_count_lines, check_first_failure

pytestmark = pytest.mark.anyio


# -- 13.1 count lines without blocking the loop ---------------------------------------------

async def test_count_lines_with_run() -> None:
    """Awaiting the kit's run and counting lines is right."""
    async def count(cmd):
        return len((await run(cmd)).stdout.splitlines())

    result = await check_count_lines(count)
    assert result.passed, result


async def test_count_lines_in_a_worker_thread() -> None:
    """Blocking code moved to a worker thread is right too."""
    def legacy(cmd):
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    async def count(cmd):
        out = await anyio.to_thread.run_sync(legacy, cmd)
        return out.count("\n")

    result = await check_count_lines(count)
    assert result.passed, result


async def test_count_lines_blocking_is_caught() -> None:
    """subprocess.run in async code gets the right count but blocks the loop: rejected."""
    async def count(cmd):
        done = subprocess.run(cmd, capture_output=True, text=True)  # noqa: ASYNC221
        return len(done.stdout.splitlines())

    result = await check_count_lines(count)
    assert not result.passed
    assert "could not run for" in result.message
    assert "await run(cmd)" in result.hint


async def test_count_lines_counting_characters_is_explained() -> None:
    async def count(cmd):
        return len((await run(cmd)).stdout)

    result = await check_count_lines(count)
    assert not result.passed
    assert "splitlines" in result.hint


async def test_count_lines_returning_text_is_explained() -> None:
    async def count(cmd):
        return (await run(cmd)).stdout

    result = await check_count_lines(count)
    assert not result.passed
    assert "not a number" in result.message


async def test_count_lines_forgotten_await_is_explained() -> None:
    async def count(cmd):
        return run(cmd)

    result = await check_count_lines(count)
    assert result is not None
    assert not result.passed
    assert "forgot an `await`" in result.hint


async def test_count_lines_stub_raises() -> None:
    async def count(cmd):
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        await check_count_lines(count)


# -- 13.2 the failure inside a task group ---------------------------------------------------

async def test_first_failure_with_except_star() -> None:
    """A task group and except* is right."""
    async def first_failure(cmds):
        code = None
        try:
            async with anyio.create_task_group() as tg:
                for cmd in cmds:
                    tg.start_soon(run, cmd)
        except* ProcessFailed as group:  # no return inside except*: a SyntaxError
            code = group.exceptions[0].returncode
        return code

    result = await check_first_failure(first_failure)
    assert result.passed, result


async def test_first_failure_catching_inside_each_task() -> None:
    """Catching in each task (no group error at all) is another right answer."""
    async def first_failure(cmds):
        codes = []

        async def one(cmd):
            try:
                await run(cmd)
            except ProcessFailed as exc:
                codes.append(exc.returncode)

        async with anyio.create_task_group() as tg:
            for cmd in cmds:
                tg.start_soon(one, cmd)
        return codes[0] if codes else None

    result = await check_first_failure(first_failure)
    assert result.passed, result


async def test_first_failure_plain_except_is_explained() -> None:
    """The classic slip: except ProcessFailed around a task group catches nothing."""
    async def first_failure(cmds):
        try:
            async with anyio.create_task_group() as tg:
                for cmd in cmds:
                    tg.start_soon(run, cmd)
        except ProcessFailed as exc:
            return exc.returncode
        return None

    result = await check_first_failure(first_failure)
    assert not result.passed
    assert "ExceptionGroup escaped" in result.message
    assert "except* ProcessFailed" in result.hint


async def test_first_failure_one_after_another_is_caught() -> None:
    """Running the commands in turn never lets them meet: rejected."""
    async def first_failure(cmds):
        for cmd in cmds:
            try:
                await run(cmd)
            except ProcessFailed as exc:
                return exc.returncode
        return None

    result = await check_first_failure(first_failure)
    assert not result.passed
    assert "one after another" in result.message


async def test_first_failure_returning_the_exception_is_explained() -> None:
    async def first_failure(cmds):
        code = None
        try:
            async with anyio.create_task_group() as tg:
                for cmd in cmds:
                    tg.start_soon(run, cmd)
        except* ProcessFailed as group:  # no return inside except*: a SyntaxError
            code = group.exceptions[0]
        return code

    result = await check_first_failure(first_failure)
    assert not result.passed
    assert ".returncode" in result.hint


async def test_first_failure_always_none_is_caught() -> None:
    async def first_failure(cmds):
        async with anyio.create_task_group() as tg:
            for cmd in cmds:
                tg.start_soon(lambda c=cmd: run(c, check=False))
        return None

    result = await check_first_failure(first_failure)
    assert not result.passed
    assert "failed command exited with" in result.message
