"""Checks for notebook 03 (bidirectional pipes): a line-by-line conversation; a big echo
that must not deadlock.

Each check runs the learner's function for real, under a deadline, so a deadlock becomes a
hint instead of a hung cell. ``NotImplementedError`` passes through ("not written yet").
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import anyio

from ..testing import descendants
from ._common import ExerciseResult
from ._try import call

SHOUT = "03.1 a conversation"
ECHO = "03.2 echo without deadlock"
WORDS = ["hello", "pipe", "stdin", "stdout", "tokio", "anyio", "trio", "async", "line"]


async def check_shout(shout: Callable[[list[str]], Any], *,
                      patience: float = 10.0) -> ExerciseResult:
    """``await shout(messages)`` must send each message to ``ECHO_STDIN_UPPER`` as a line and
    return the replies (upper case, without newlines), in order."""
    messages = [f"{random.choice(WORDS)} {i}" for i in range(random.randint(3, 6))]
    replies, problem = await call(
        shout, SHOUT, list(messages), patience=patience,
        stuck="End each message with '\\n': the child answers whole lines. "
              "Send one line, then await pipe.receive_line().")
    if problem is not None:
        return problem
    expected = [m.upper() for m in messages]
    if not isinstance(replies, list | tuple):
        return ExerciseResult(SHOUT, False, f"it returned {type(replies).__name__}, not a list",
                              "Collect each reply in a list and return it.")
    replies = list(replies)
    if replies == expected:
        return ExerciseResult(SHOUT, True, "every line came back in upper case, in order.")
    if [r.rstrip("\n") if isinstance(r, str) else r for r in replies] == expected:
        return ExerciseResult(SHOUT, False, "the replies end with a newline",
                              "receive_line() returns lines without '\\n'; do not add one.")
    if replies == messages:
        return ExerciseResult(SHOUT, False, "the replies are your messages, unchanged",
                              "Talk to ECHO_STDIN_UPPER (from asyncproc_kit.testing), not CAT.")
    if len(replies) != len(expected):
        return ExerciseResult(SHOUT, False, f"{len(replies)} replies for {len(expected)} "
                              "messages", "Send every message, and read one reply per message.")
    return ExerciseResult(SHOUT, False, f"first reply {replies[0]!r}, expected {expected[0]!r}",
                          "Send f'{message}\\n', then reply = await pipe.receive_line().")


async def check_echo_big(echo_big: Callable[[bytes], Any], *,
                         patience: float = 10.0) -> ExerciseResult:
    """``await echo_big(data)`` must send ``data`` (megabytes) through ``CAT`` and return
    every byte it echoes, without deadlocking."""
    size = random.randint(2_000_000, 3_000_000)  # far more than two pipe buffers
    data = os.urandom(size)
    before = set(descendants())
    (echoed, problem), written = await _watching_writes(before, call(
        echo_big, ECHO, data, patience=patience, suspect="deadlocked?",
        stuck="Writing everything before reading fills both pipes. Read while you write: "
              "run(CAT, input=data, text=False) or open_pipe."))
    await _end_new_children(before)  # a wrong answer's CAT must not outlive the check
    if problem is not None:
        # CAT copies in 64 KiB chunks: all but the last chunk echoed = it read everything
        if problem.message.startswith("no answer") and written >= size - 128 * 1024:
            return ExerciseResult(ECHO, False, f"no answer after {patience:g} s: CAT had "
                                  "echoed (nearly) every byte and was waiting for more input",
                                  "Nothing told CAT the input was over: after sending, call "
                                  "`await pipe.close_input()` (end of input), then read to "
                                  "the end.")
        return problem
    if isinstance(echoed, str):
        return ExerciseResult(ECHO, False, "it returned text, not bytes",
                              "The data is binary: pass text=False to run (or use "
                              "pipe.receive()), and return bytes.")
    if not isinstance(echoed, bytes | bytearray):
        return ExerciseResult(ECHO, False, f"it returned {type(echoed).__name__}, not bytes",
                              "Return the echoed bytes (result.stdout with text=False).")
    if bytes(echoed) == data:
        return ExerciseResult(ECHO, True, "megabytes went through and came back intact.")
    if len(echoed) < len(data) and data.startswith(bytes(echoed)):
        return ExerciseResult(ECHO, False, f"only the first {len(echoed)} of {len(data)} "
                              "bytes came back", "Keep reading until the end of output "
                              "(receive() returns b'' at the end), after close_input().")
    return ExerciseResult(ECHO, False, "the bytes that came back differ from what was sent",
                          "Send the data unchanged (bytes, no encoding) and return all of it.")


def _bytes_written(pids: list[int]) -> dict[int, int]:
    import psutil

    written = {}
    for pid in pids:
        try:
            written[pid] = psutil.Process(pid).io_counters().write_chars
        except (psutil.Error, AttributeError):  # gone, or no io_counters on this platform
            pass
    return written


async def _watching_writes(before: set[int], work: Any) -> tuple[Any, int]:
    """Await ``work``; also return the most bytes any new child process had written."""
    most = 0
    value: Any = None
    error: Exception | None = None

    async def sample() -> None:
        nonlocal most
        while True:
            new = [pid for pid in descendants() if pid not in before]
            counts = await anyio.to_thread.run_sync(_bytes_written, new)
            most = max([most, *counts.values()])
            await anyio.sleep(0.1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sample)
        try:
            value = await work
        except Exception as exc:  # NotImplementedError, unwrapped from the task group
            error = exc
        finally:
            tg.cancel_scope.cancel()
    if error is not None:
        raise error
    return value, most


async def _end_new_children(before: set[int]) -> None:
    """Kill the child processes started since ``before`` that are still alive."""
    import psutil

    procs = []
    for pid in set(descendants()) - before:
        try:
            proc = psutil.Process(pid)
            proc.kill()
            procs.append(proc)
        except psutil.NoSuchProcess:
            pass
    if procs:
        await anyio.to_thread.run_sync(lambda: psutil.wait_procs(procs, timeout=3))
