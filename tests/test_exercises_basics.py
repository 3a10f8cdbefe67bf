"""The checks behind notebooks 00-03: right answers pass, wrong ones say what and hint how."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import anyio
import pytest

from asyncproc_kit import exercises, open_pipe, open_stream, run, terminate
from asyncproc_kit._process import read_chunk, spawn
from asyncproc_kit.exercises._env import Check, EnvironmentReport
from asyncproc_kit.exercises._nb02 import leftovers
from asyncproc_kit.testing import CAT, ECHO_STDIN_UPPER, descendants, python

pytestmark = pytest.mark.anyio


def assert_wrong(result: exercises.ExerciseResult, *words: str) -> None:
    """A failed check names the problem (``words`` in its message) and gives a hint."""
    assert not result.passed, result
    assert not result
    for word in words:
        assert word in result.message, result
    assert result.hint, result
    assert "Hint:" in str(result)
    assert str(result).startswith("❌")


def assert_right(result: exercises.ExerciseResult) -> None:
    assert result.passed, result
    assert str(result).startswith("✅")


# -- 00: first command ------------------------------------------------------------------------

async def test_first_command_right() -> None:
    """Running a child that prints the greeting and returning run()'s result passes."""
    async def first_command():
        return await run(python("print('hello, workbook')"))

    assert_right(await exercises.check_first_command(first_command))


async def test_first_command_not_written_yet_raises() -> None:
    """The stub's NotImplementedError is not a wrong answer: it propagates to the cell."""
    async def first_command():
        raise NotImplementedError("todo")

    with pytest.raises(NotImplementedError):
        await exercises.check_first_command(first_command)


async def test_first_command_forgot_return() -> None:
    """Returning nothing is explained."""
    async def first_command():
        await run(python("print('hello, workbook')"))

    assert_wrong(await exercises.check_first_command(first_command), "None")


async def test_first_command_forgot_await() -> None:
    """A coroutine instead of a result points at the missing await."""
    async def first_command():
        return run(python("print('hello, workbook')"))

    result = await exercises.check_first_command(first_command)
    assert_wrong(result, "coroutine")
    assert "await" in result.hint


async def test_first_command_not_async() -> None:
    """A plain def is refused with the reason."""
    def first_command():
        return None

    assert_wrong(await exercises.check_first_command(first_command), "not async")


async def test_first_command_wrong_text_and_field() -> None:
    """Printing something else, or returning only stdout, is named."""
    async def says_hi():
        return await run(python("print('hi')"))

    async def only_stdout():
        return (await run(python("print('hello, workbook')"))).stdout

    assert_wrong(await exercises.check_first_command(says_hi), "'hi\\n'")
    assert_wrong(await exercises.check_first_command(only_stdout), "str")


async def test_first_command_failing_child() -> None:
    """A child that fails is reported with its exit code (run raising is caught too)."""
    async def fails_checked():
        return await run(python("import sys; sys.exit(3)"))

    async def fails_unchecked():
        return await run(python("import sys; sys.exit(3)"), check=False)

    assert_wrong(await exercises.check_first_command(fails_checked), "ProcessFailed")
    assert_wrong(await exercises.check_first_command(fails_unchecked), "code 3")


# -- 00: Rosetta ------------------------------------------------------------------------------

def rosetta(**changes: object) -> dict[str, object]:
    answers: dict[str, object] = {
        "tokio::process::Command::output": run,
        "BufReader::lines on child.stdout": open_stream,
        "child.stdin + child.stdout together": open_pipe,
        "tokio::spawn": anyio.create_task_group,
        "tokio::sync::Semaphore": anyio.Semaphore,
        "tokio::sync::mpsc::channel": anyio.create_memory_object_stream,
        "tokio::time::timeout": anyio.fail_after,
        "tokio::time::sleep": anyio.sleep,
        "child.kill": terminate,
    }
    for key, value in changes.items():
        answers[key.replace("__", "::")] = value
    return answers


def test_rosetta_right_and_alternatives() -> None:
    """Either of two fitting answers is accepted; the keys are the published questions."""
    assert list(rosetta()) == list(exercises.ROSETTA_QUESTIONS)
    assert_right(exercises.check_rosetta(rosetta()))
    assert_right(exercises.check_rosetta(rosetta(**{
        "tokio__sync__Semaphore": anyio.CapacityLimiter,
        "tokio__time__timeout": anyio.move_on_after})))


def test_rosetta_wrong_answers() -> None:
    """Empty, string, wrong and missing answers are each named with a hint."""
    assert_wrong(exercises.check_rosetta(rosetta(**{"tokio__spawn": ...})), "tokio::spawn",
                 "empty")
    assert_wrong(exercises.check_rosetta(rosetta(**{"tokio__time__sleep": "anyio.sleep"})),
                 "string")
    assert_wrong(exercises.check_rosetta(rosetta(**{"tokio__time__sleep": anyio.fail_after})),
                 "tokio::time::sleep", "fail_after")
    answers = rosetta()
    del answers["child.kill"]
    assert_wrong(exercises.check_rosetta(answers), "1 name is not answered")
    assert_wrong(exercises.check_rosetta([run]), "list")


def test_rosetta_asyncio_sleep_is_named_as_asyncio() -> None:
    """asyncio.sleep is asyncio's: the hint says the table's answer is anyio's."""
    import asyncio

    result = exercises.check_rosetta(rosetta(**{"tokio__time__sleep": asyncio.sleep}))
    assert_wrong(result, "is asyncio's")
    assert "anyio's" in result.hint


# -- 00: environment report -------------------------------------------------------------------

async def test_environment_report_here() -> None:
    """On the test machine every check passes, and the words do not depend on the machine."""
    report = await exercises.environment_report()
    assert report.ok, str(report)
    text = str(report)
    assert text.endswith("Everything the workbook needs works in this kernel.")
    assert str(os.getpid()) not in text
    assert [c.name for c in report.checks] == [
        "Python", "platform", "widgets and plots", "child processes", "cleanup", "open files",
        "anyio backends"]


def test_environment_report_names_the_platform_and_the_exit_strategy(monkeypatch) -> None:
    """The platform line is the one that differs between machines (nbval sanitizes it)."""
    from asyncproc_kit import _process
    from asyncproc_kit.exercises import _env

    line = str(_env._platform())
    assert line.startswith(f"✅ platform: {_env.SYSTEMS[sys.platform]}; ")
    assert f"through {_process.EXIT_STRATEGY.name}, without reaping it" in line
    monkeypatch.setattr(sys, "platform", "freebsd14")
    check = _env._platform()
    assert not check.ok
    assert "freebsd14 is untested" in check.words
    assert "WSL 2 or the Binder link" in check.fix


def test_environment_report_says_what_to_do() -> None:
    """A failed check is marked and carries its fix; the verdict changes."""
    report = EnvironmentReport([Check("Python", True, "3.11 or newer"),
                                Check("open files", False, "the limit is 256",
                                      "Run `ulimit -n 4096`.")])
    assert not report
    assert "❌ open files: the limit is 256\n     What to do: Run `ulimit -n 4096`." in str(report)
    assert str(report).endswith("see the ❌ lines.")


# -- 01: a failure is a result too ------------------------------------------------------------

async def test_failed_result_right() -> None:
    """check=False hands back the failing command's result."""
    async def run_anyway(cmd):
        return await run(cmd, check=False)

    assert_right(await exercises.check_failed_result(run_anyway))


async def test_failed_result_raises() -> None:
    """Letting ProcessFailed escape is explained with the check=False hint."""
    async def run_anyway(cmd):
        return await run(cmd)

    result = await exercises.check_failed_result(run_anyway)
    assert_wrong(result, "ProcessFailed")
    assert "check=False" in result.hint


async def test_failed_result_wrong_shapes() -> None:
    """Returning a field, or running some other command, is named."""
    async def only_code(cmd):
        return (await run(cmd, check=False)).returncode

    async def other_command(cmd):
        return await run(python("import sys; sys.exit(1)"), check=False)

    assert_wrong(await exercises.check_failed_result(only_code), "int")
    assert_wrong(await exercises.check_failed_result(other_command), "returncode 1")


# -- 01: all at once, in order ----------------------------------------------------------------

async def test_run_all_right() -> None:
    """A task group that stores each result at its index passes."""
    async def run_all(commands):
        results = [None] * len(commands)

        async def one(i, cmd):
            results[i] = await run(cmd)

        async with anyio.create_task_group() as tg:
            for i, cmd in enumerate(commands):
                tg.start_soon(one, i, cmd)
        return results

    assert_right(await exercises.check_run_all(run_all))


async def test_run_all_one_after_another() -> None:
    """Awaiting in a loop gives the right results, too slowly: said so."""
    async def run_all(commands):
        return [await run(cmd) for cmd in commands]

    result = await exercises.check_run_all(run_all)
    assert_wrong(result, "one after another")
    assert "task group" in result.hint


async def test_run_all_in_finishing_order() -> None:
    """Appending as they finish loses the input order: said so."""
    async def run_all(commands):
        results = []

        async def one(cmd):
            results.append(await run(cmd))

        async with anyio.create_task_group() as tg:
            for cmd in commands:
                tg.start_soon(one, cmd)
        return results

    result = await exercises.check_run_all(run_all)
    assert_wrong(result, "order the commands finished")


async def test_run_all_not_a_list() -> None:
    """Something other than a list of results is refused."""
    async def run_all(commands):
        return None

    assert_wrong(await exercises.check_run_all(run_all), "NoneType")


# -- 02: count lines by source ----------------------------------------------------------------

async def test_count_sources_right() -> None:
    """Counting lines per line.source passes (random counts each time)."""
    async def count_sources(cmd):
        counts = {"stdout": 0, "stderr": 0}
        async with open_stream(cmd) as stream:
            async for line in stream:
                counts[line.source] += 1
        return counts

    assert_right(await exercises.check_count_sources(count_sources))


async def test_count_sources_only_stdout() -> None:
    """Counting only stdout lines is diagnosed."""
    async def count_sources(cmd):
        result = await run(cmd)
        return {"stdout": len(result.stdout.splitlines()), "stderr": 0}

    result = await exercises.check_count_sources(count_sources)
    assert_wrong(result, "no stderr")
    assert "line.source" in result.hint


async def test_count_sources_merged() -> None:
    """merge_stderr=True turns stderr into stdout: said so."""
    async def count_sources(cmd):
        counts = {"stdout": 0, "stderr": 0}
        async with open_stream(cmd, merge_stderr=True) as stream:
            async for line in stream:
                counts[line.source] += 1
        return counts

    result = await exercises.check_count_sources(count_sources)
    assert_wrong(result, "counted as stdout")
    assert "merge_stderr" in result.hint


async def test_count_sources_missing_last_line() -> None:
    """Counting newlines misses the last line, which has none."""
    async def count_sources(cmd):
        result = await run(cmd)
        return {"stdout": result.stdout.count("\n"), "stderr": result.stderr.count("\n")}

    result = await exercises.check_count_sources(count_sources)
    assert_wrong(result, "stdout")
    assert "no newline" in result.hint


async def test_count_sources_not_a_dict() -> None:
    """A tuple is not the asked-for dict."""
    async def count_sources(cmd):
        return (1, 2)

    assert_wrong(await exercises.check_count_sources(count_sources), "tuple")


# -- 02: first match --------------------------------------------------------------------------

async def first_match_right(cmd, word):
    async with open_stream(cmd) as stream:
        async for line in stream:
            if word in line.text:
                return line.text
    return None


async def test_first_match_right() -> None:
    """Returning the line at once (leaving the block ends the child) passes."""
    assert_right(await exercises.check_first_match(first_match_right))
    assert leftovers() == []


async def test_first_match_waits_for_the_end() -> None:
    """Reading everything first finds the line too late; the check says so."""
    async def first_match(cmd, word):
        result = await run(cmd)
        return next((t for t in result.stdout.splitlines() if word in t), None)

    result = await exercises.check_first_match(first_match)
    assert_wrong(result, "waited for the child to finish")


async def test_first_match_returns_the_line_object() -> None:
    """An OutputLine instead of its text is pointed out."""
    async def first_match(cmd, word):
        async with open_stream(cmd) as stream:
            async for line in stream:
                if word in line.text:
                    return line
        return None

    result = await exercises.check_first_match(first_match)
    assert_wrong(result, "OutputLine")
    assert "line.text" in result.hint


async def test_first_match_no_match_not_none() -> None:
    """With no matching line the answer must be None, not an empty string."""
    async def first_match(cmd, word):
        return await first_match_right(cmd, word) or ""

    assert_wrong(await exercises.check_first_match(first_match), "no match", "''")


async def test_first_match_leaves_the_child_running() -> None:
    """Returning without ending the child is caught (and the test cleans up after it)."""
    children = []

    async def first_match(cmd, word):
        child = spawn(cmd)  # the kit's low-level spawn, never closed: a leak on purpose
        children.append(child)
        buffer = b""
        while chunk := await read_chunk(child.stdout):
            buffer += chunk
            for text in buffer.decode().splitlines():
                if word in text:
                    return text
        return None

    try:
        result = await exercises.check_first_match(first_match)
        assert_wrong(result, "still running")
    finally:
        for child in children:
            await child.aclose(grace=0.5)
    assert leftovers() == []


# -- 03: conversation -------------------------------------------------------------------------

async def test_shout_right() -> None:
    """Sending one line and reading one reply, turn by turn, passes."""
    async def shout(messages):
        replies = []
        async with open_pipe(ECHO_STDIN_UPPER) as pipe:
            for message in messages:
                await pipe.send(message + "\n")
                replies.append(await pipe.receive_line())
        return replies

    assert_right(await exercises.check_shout(shout))


async def test_shout_without_newline_hangs_and_is_explained() -> None:
    """Waiting for a reply to a line never ended is turned into a hint, not a hung test."""
    async def shout(messages):
        async with open_pipe(ECHO_STDIN_UPPER) as pipe:
            await pipe.send(messages[0])
            return [await pipe.receive_line()]

    result = await exercises.check_shout(shout, patience=1)
    assert_wrong(result, "no answer after 1 s")
    assert "\\n" in result.hint


async def test_shout_missing_await_on_send_is_named() -> None:
    """`pipe.send(...)` without await: "missing await", not "add a newline"."""
    async def shout(messages):
        replies = []
        async with open_pipe(ECHO_STDIN_UPPER) as pipe:
            for message in messages:
                pipe.send(message + "\n")
                replies.append(await pipe.receive_line())
        return replies

    result = await exercises.check_shout(shout, patience=1)
    assert_wrong(result, "missing `await`")
    assert "send" in result.hint
    assert "\\n" not in result.hint


async def test_shout_wrong_child_and_newlines() -> None:
    """Echoing through CAT, or keeping newlines, are each named."""
    async def via_cat(messages):
        result = await run(CAT, input="".join(m + "\n" for m in messages))
        return result.stdout.splitlines()

    async def with_newlines(messages):
        result = await run(ECHO_STDIN_UPPER, input="".join(m + "\n" for m in messages))
        return result.stdout.splitlines(keepends=True)

    async def as_text(messages):
        return (await run(ECHO_STDIN_UPPER, input="".join(m + "\n" for m in messages))).stdout

    assert_wrong(await exercises.check_shout(via_cat), "unchanged")
    assert_wrong(await exercises.check_shout(with_newlines), "newline")
    assert_wrong(await exercises.check_shout(as_text), "str")


# -- 03: big echo -----------------------------------------------------------------------------

async def test_echo_big_right() -> None:
    """run(CAT, input=data, text=False) echoes megabytes intact."""
    async def echo_big(data):
        return (await run(CAT, input=data, text=False)).stdout

    assert_right(await exercises.check_echo_big(echo_big))


async def test_echo_big_with_open_pipe() -> None:
    """open_pipe: send everything, close input, read to the end: also right."""
    async def echo_big(data):
        async with open_pipe(CAT) as pipe:
            await pipe.send(data)
            await pipe.close_input()
            chunks = []
            while chunk := await pipe.receive():
                chunks.append(chunk)
            return b"".join(chunks)

    assert_right(await exercises.check_echo_big(echo_big))


async def test_echo_big_deadlock_is_caught() -> None:
    """Writing everything before reading deadlocks; the check gives up and explains."""
    pids = []

    async def echo_big(data):
        process = await anyio.open_process(CAT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        pids.append(process.pid)
        try:
            await process.stdin.send(data)
            await process.stdin.aclose()
            return b"".join([chunk async for chunk in process.stdout])
        finally:
            with anyio.CancelScope(shield=True):
                process.kill()
                await process.aclose()

    result = await exercises.check_echo_big(echo_big, patience=1)
    assert_wrong(result, "deadlocked")
    assert "Read while you write" in result.hint
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def test_echo_big_without_close_input_names_the_end_of_input() -> None:
    """Reading concurrently but never closing the input: the real cause is named (no end
    of input), not a write-before-read deadlock."""
    async def echo_big(data):
        chunks = []
        async with open_pipe(CAT) as pipe:
            async def read_all():
                while chunk := await pipe.receive():
                    chunks.append(chunk)

            async with anyio.create_task_group() as tg:
                tg.start_soon(read_all)
                await pipe.send(data)
        return b"".join(chunks)

    result = await exercises.check_echo_big(echo_big, patience=4)
    assert_wrong(result, "waiting for more input")
    assert "close_input()" in result.hint
    assert "Read while you write" not in result.hint


async def test_echo_big_leaves_no_cat_running() -> None:
    """A wrong answer that abandons its CAT (no cleanup at all): the check ends it."""
    processes = []

    async def echo_big(data):
        process = await anyio.open_process(CAT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        processes.append(process)
        await process.stdin.send(data)  # blocks: nobody reads
        return b""

    try:
        result = await exercises.check_echo_big(echo_big, patience=1)
        assert_wrong(result, "deadlocked")
        alive = [p.pid for p in processes if p.pid in descendants()]
        assert alive == []
    finally:
        for process in processes:
            with anyio.CancelScope(shield=True):
                await process.aclose()  # reaps the zombie the check's kill left


async def test_echo_big_text_and_truncated() -> None:
    """Text instead of bytes, and a partial echo, are each named."""
    async def as_text(data):
        return (await run(CAT, input=data)).stdout

    async def truncated(data):
        return (await run(CAT, input=data, text=False)).stdout[:1000]

    assert_wrong(await exercises.check_echo_big(as_text), "text")
    assert_wrong(await exercises.check_echo_big(truncated), "only the first 1000")

