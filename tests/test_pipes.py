"""open_pipe(): a conversation with a child, writing and reading independently."""

from __future__ import annotations

import os
import signal
import time

import anyio
import pytest
from helpers import (  # noqa: F401
    FileReopener,
    eventually,
    interrupted,
    members_at_least,
    nothing_left_behind,
    open_fds,
)

from asyncproc_kit import open_pipe
from asyncproc_kit.testing import (
    CAT,
    ECHO_STDIN_UPPER,
    SPAWN_GRANDCHILDREN,
    python,
    session_members,
)

pytestmark = pytest.mark.anyio


async def test_ten_mib_round_trip_writing_everything_before_reading() -> None:
    """10 MiB sent to CAT before reading a byte comes back byte-exact, without deadlock."""
    data = os.urandom(10 * 1024 * 1024)
    received = bytearray()
    with anyio.fail_after(30):
        async with open_pipe(CAT) as pipe:
            await pipe.send(data)
            await pipe.close_input()
            while chunk := await pipe.receive():
                received += chunk
            assert await pipe.wait() == 0
    assert received == data


async def test_line_conversation_with_an_upper_casing_child() -> None:
    """Each line sent is answered before the next is sent; the end is None and exit 0."""
    with anyio.fail_after(20):
        async with open_pipe(ECHO_STDIN_UPPER) as pipe:
            for word in ["hello", "größe", "", "last one"]:
                await pipe.send(word + "\n")
                assert await pipe.receive_line() == word.upper()
            assert await pipe.wait() == 0
            assert await pipe.receive_line() is None
    assert pipe.returncode == 0


async def test_receive_line_returns_a_final_line_without_newline() -> None:
    """The last line of output is returned even without a newline, then None."""
    async with open_pipe(python("import sys; sys.stdout.write('a\\nb')")) as pipe:
        assert await pipe.receive_line() == "a"
        assert await pipe.receive_line() == "b"
        assert await pipe.receive_line() is None


async def test_receive_respects_max_bytes_and_ends_with_empty_bytes() -> None:
    """receive(n) returns at most n bytes, and b'' once the output has ended."""
    async with open_pipe(CAT) as pipe:
        await pipe.send(b"0123456789")
        await pipe.close_input()
        parts = []
        while part := await pipe.receive(4):
            assert len(part) <= 4
            parts.append(part)
    assert b"".join(parts) == b"0123456789"


async def test_send_to_an_exited_child_raises_broken_pipe_naming_it() -> None:
    """send() after the child exited raises BrokenPipeError that names the command."""
    cmd = python("import sys; sys.exit(3)")
    async with open_pipe(cmd) as pipe:
        assert await pipe.receive_line() is None  # its stdout closed: it has exited
        await eventually(lambda: pipe.returncode is not None)
        with pytest.raises(BrokenPipeError) as caught:
            await pipe.send(b"x" * 100_000)
    message = str(caught.value)
    assert "is no longer reading its input" in message
    assert repr(cmd[0]) in message
    assert pipe.returncode == 3


async def test_send_after_close_input_is_a_clear_error() -> None:
    """send() after close_input() raises RuntimeError saying the input is closed."""
    async with open_pipe(CAT) as pipe:
        await pipe.close_input()
        with pytest.raises(RuntimeError, match="already closed"):
            await pipe.send("late")


async def test_send_rejects_other_types() -> None:
    """send() takes str or bytes only."""
    async with open_pipe(CAT) as pipe:
        with pytest.raises(TypeError, match="str or bytes"):
            await pipe.send(42)  # type: ignore[arg-type]


async def test_stderr_is_collected() -> None:
    """What the child writes to stderr is available in pipe.stderr after wait()."""
    async with open_pipe(python("import sys; sys.stderr.write('warning: x\\n')")) as pipe:
        assert await pipe.wait() == 0
        assert pipe.stderr == "warning: x\n"


async def test_leaving_early_terminates_the_child_and_grandchildren() -> None:
    """Leaving the block while the child runs ends its whole group, promptly."""
    begun = time.monotonic()
    async with open_pipe(SPAWN_GRANDCHILDREN(2)) as pipe:
        assert await pipe.receive_line() == "ready"
        await members_at_least([pipe.pid], 3)
    assert time.monotonic() - begun < 10
    assert pipe.returncode == -signal.SIGTERM
    assert session_members([pipe.pid]) == []


async def test_error_in_the_block_propagates_unwrapped() -> None:
    """An exception raised inside the block reaches the caller as itself; the child is ended."""
    with pytest.raises(KeyError):
        async with open_pipe(CAT) as pipe:
            raise KeyError("x")
    assert pipe.returncode is not None


async def test_cancelled_by_move_on_after_within_grace() -> None:
    """An enclosing deadline ends a waiting conversation within grace + 0.5 s."""
    begun = time.monotonic()
    with anyio.move_on_after(0.5) as scope:
        async with open_pipe(CAT, grace=1.0) as pipe:
            await pipe.receive_line()  # CAT never answers: we wait until cancelled
    assert scope.cancelled_caught
    assert time.monotonic() - begun < 0.5 + 1.0 + 0.5
    assert pipe.returncode is not None


async def test_fds_unchanged_after_conversations() -> None:
    """Finished and abandoned pipes leave no descriptor open."""
    async with open_pipe(CAT) as pipe:  # warm up lazily created resources
        await pipe.wait()
    before = open_fds()
    for _ in range(5):
        async with open_pipe(ECHO_STDIN_UPPER) as pipe:
            await pipe.send("x\n")
            assert await pipe.receive_line() == "X"
        async with open_pipe(CAT) as pipe:
            await pipe.send("y")
            assert await pipe.wait() == 0
    assert open_fds() == before


# Reads and discards stdin as fast as it can, so a big send keeps writing.
DISCARD = python("""
    import sys
    while sys.stdin.buffer.read(1 << 16):
        pass
""")


async def test_leaving_the_block_stops_a_send_in_flight_and_writes_nowhere_else(
        tmp_path) -> None:
    """Leaving the block while another task is inside send() stops that send with a
    BrokenPipeError naming the command; no byte lands in a file that reused the descriptor
    number of the closed stdin (a task opening files throughout would get it)."""
    big = b"x" * (256 << 20)
    caught: list[BaseException] = []
    files = FileReopener(tmp_path)

    async def sender(pipe) -> None:
        try:
            await pipe.send(big)
        except BaseException as exc:
            caught.append(exc)
            if not isinstance(exc, Exception):
                raise

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(files)
            async with open_pipe(DISCARD, grace=0.5) as pipe:
                tg.start_soon(sender, pipe)
                await anyio.sleep(0.2)  # the sender is well inside its 256 MiB
            await eventually(lambda: caught != [])
            files.stop.set()
    assert len(caught) == 1
    assert isinstance(caught[0], BrokenPipeError), caught
    message = str(caught[0])
    assert "closed while sending" in message
    assert repr(DISCARD[0]) in message
    assert files.written() == 0


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_while_awaiting_a_pipe_is_a_plain_keyboard_interrupt(backend) -> None:
    """Ctrl-C inside an open_pipe block is KeyboardInterrupt on both
    backends; the child is ended."""
    code, out, children = interrupted("""
        async with open_pipe(SLEEP(60)) as pipe:
            await pipe.wait()
    """, backend)
    assert (code, out) == (130, "KeyboardInterrupt")
    assert session_members(children) == []


async def test_receive_line_treats_crlf_as_a_line_end() -> None:
    """receive_line() returns lines without \\r when the child ends them with \\r\\n."""
    cmd = python(r"import sys; sys.stdout.buffer.write(b'a\r\nb\r\n'); "
                 r"sys.stderr.buffer.write(b'e\r\n')")
    async with open_pipe(cmd) as pipe:
        assert await pipe.receive_line() == "a"
        assert await pipe.receive_line() == "b"
        assert await pipe.receive_line() is None
        await pipe.wait()
        assert pipe.stderr == "e\n"
