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
    echoed, problem = await call(
        echo_big, ECHO, data, patience=patience, suspect="deadlocked?",
        stuck="Writing everything before reading fills both pipes. Read while you write: "
              "run(CAT, input=data, text=False) or open_pipe.")
    if problem is not None:
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
