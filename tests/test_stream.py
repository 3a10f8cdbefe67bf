"""open_stream() and the LineSplitter beneath it: order, long lines, encodings, leaving early."""

from __future__ import annotations

import os
import signal
import time

import anyio
import pytest
from helpers import (  # noqa: F401
    SLEEPER,
    FileReopener,
    interrupted,
    members_at_least,
    nothing_left_behind,
    open_fds,
)

from asyncproc_kit import OutputLine, open_stream
from asyncproc_kit._lines import LineSplitter
from asyncproc_kit.testing import (
    CAT,
    EXIT,
    PRINT_LINES,
    SLEEP,
    SPAWN_GRANDCHILDREN,
    python,
    session_members,
)

# -- LineSplitter (synchronous unit tests) ----------------------------------------------------

SAMPLE = "first\n\nzweite Zeile: größer ✓\n日本語のテキスト\nno newline at the end".encode()


def split_all(chunks: list[bytes], **options) -> list[tuple[str | bytes, bool]]:
    splitter = LineSplitter(**options)
    out: list[tuple[str | bytes, bool]] = []
    for chunk in [*chunks, None]:
        lines, flags = splitter.finish() if chunk is None else splitter.feed(chunk)
        out.extend(zip(lines, flags or [False] * len(lines), strict=True))
    return out


def test_splitter_whole_input_in_one_chunk() -> None:
    """One chunk gives every line, empty lines kept, the unterminated tail from finish()."""
    assert split_all([SAMPLE]) == [
        ("first", False), ("", False), ("zweite Zeile: größer ✓", False),
        ("日本語のテキスト", False), ("no newline at the end", False),
    ]


@pytest.mark.parametrize("text", [True, False])
def test_splitter_every_two_and_three_way_cut_gives_the_same_lines(text: bool) -> None:
    """Cutting the input anywhere (inside a UTF-8 character, around a newline) changes nothing."""
    expected = split_all([SAMPLE], text=text)
    n = len(SAMPLE)
    for i in range(n + 1):
        assert split_all([SAMPLE[:i], SAMPLE[i:]], text=text) == expected, i
    for i in range(0, n + 1, 3):
        for j in range(i, n + 1):
            assert split_all([SAMPLE[:i], SAMPLE[i:j], SAMPLE[j:]], text=text) == expected
    assert split_all([bytes([b]) for b in SAMPLE], text=text) == expected


def test_splitter_newline_at_chunk_edges() -> None:
    """A chunk that is only newlines, or that ends or starts with one, splits exactly."""
    chunks = [b"a", b"\n", b"\n\n", b"b\n", b"\nc", b"\n"]
    assert split_all(chunks) == [(x, False) for x in ["a", "", "", "b", "", "c"]]


def test_splitter_cuts_long_lines_into_marked_pieces() -> None:
    """A line over the limit comes out in pieces of at most limit, all but the last marked."""
    assert split_all([b"abcdefghij\nxy\n"], limit=4) == [
        ("abcd", True), ("efgh", True), ("ij", False), ("xy", False),
    ]


def test_splitter_hands_out_a_growing_line_before_its_end() -> None:
    """A long unfinished line is delivered in pieces as it grows, so memory stays bounded."""
    splitter = LineSplitter(limit=4)
    assert splitter.feed(b"abcdefghij") == (["abcd", "efgh"], [True, True])
    assert splitter.feed(b"kl") == ([], None)  # "ijkl": exactly the limit, still unfinished
    assert splitter.feed(b"mn\nok\n") == (["ijkl", "mn", "ok"], [True, False, False])
    assert splitter.finish() == ([], None)


def test_splitter_finish_delivers_the_tail_and_resets() -> None:
    """finish() returns the unterminated tail (cut if long) and a cut UTF-8 char as U+FFFD."""
    splitter = LineSplitter(limit=3)
    assert splitter.feed(b"ab\xc3") == ([], None)
    assert splitter.finish() == (["ab\ufffd"], None)
    assert splitter.finish() == ([], None)
    splitter = LineSplitter(limit=3)
    splitter.feed(b"abcdefg")
    assert splitter.finish() == (["g"], None)  # "abc" and "def" were handed out by feed()


def test_splitter_counts_characters_not_bytes_in_text_mode() -> None:
    """The limit counts characters in text mode (a multi-byte character is never cut)."""
    assert split_all(["ééééé\n".encode()], limit=2) == [
        ("éé", True), ("éé", True), ("é", False),
    ]
    assert split_all(["éé\n".encode()], limit=3, text=False) == [
        (b"\xc3\xa9\xc3", True), (b"\xa9", False),
    ]


def test_splitter_replaces_invalid_utf8_or_keeps_bytes() -> None:
    """Invalid UTF-8 becomes U+FFFD by default; errors= and text=False are honoured."""
    raw = [b"bad \xff\xfe\n", b"\xe2\x82"]
    assert split_all(raw) == [("bad \ufffd\ufffd", False), ("\ufffd", False)]
    assert split_all(raw, errors="backslashreplace")[0] == ("bad \\xff\\xfe", False)
    assert split_all(raw, text=False) == [(b"bad \xff\xfe", False), (b"\xe2\x82", False)]


def test_splitter_rejects_a_bad_limit() -> None:
    """limit must be a positive int."""
    with pytest.raises(ValueError, match="at least 1"):
        LineSplitter(limit=0)
    with pytest.raises(TypeError, match="must be an int"):
        LineSplitter(limit=2.5)  # type: ignore[arg-type]


# -- open_stream ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_stream_tags_sources_and_sets_returncode() -> None:
    """Lines carry their source and have no newline; returncode is set after the loop."""
    code = "import sys; print('out'); sys.stderr.write('err\\n'); sys.exit(4)"
    async with open_stream(python(code)) as stream:
        lines = [line async for line in stream]
    assert sorted((line.source, line.text) for line in lines) == [
        ("stderr", "err"), ("stdout", "out")]
    assert all(isinstance(line, OutputLine) and not line.split for line in lines)
    assert stream.returncode == 4  # a non-zero exit does not raise: the caller decides


@pytest.mark.anyio
async def test_stream_keeps_the_exact_order_within_each_source() -> None:
    """50,000 lines to each of stdout and stderr, interleaved: each source in exact order."""
    code = """
        import sys
        for i in range(50_000):
            sys.stdout.write(f"o{i}\\n")
            sys.stderr.write(f"e{i}\\n")
    """
    out: list[str] = []
    err: list[str] = []
    with anyio.fail_after(30):
        async with open_stream(python(code)) as stream:
            async for line in stream:
                (out if line.source == "stdout" else err).append(line.text)
    assert out == [f"o{i}" for i in range(50_000)]
    assert err == [f"e{i}" for i in range(50_000)]
    assert stream.returncode == 0


@pytest.mark.anyio
async def test_stream_delivers_a_final_line_without_newline() -> None:
    """The last line is delivered even when the child never printed a newline after it."""
    code = "import sys; sys.stdout.write('one\\ntwo'); sys.stderr.write('only')"
    async with open_stream(python(code)) as stream:
        lines = [(line.source, line.text) async for line in stream]
    assert [t for s, t in lines if s == "stdout"] == ["one", "two"]
    assert [t for s, t in lines if s == "stderr"] == ["only"]


@pytest.mark.anyio
async def test_stream_splits_a_200_kb_line_and_reassembles_it_exactly() -> None:
    """A 200 kB line comes in marked pieces of at most the limit that join to the original."""
    code = """
        import sys
        sys.stdout.write("".join(chr(0x41 + i % 26) for i in range(200_000)) + "\\nafter\\n")
    """
    expected = "".join(chr(0x41 + i % 26) for i in range(200_000))
    async with open_stream(python(code)) as stream:
        lines = [line async for line in stream]
    pieces = lines[:-1]
    assert len(pieces) == 4  # 65536 * 3 + 3392
    assert all(len(p.text) <= 65536 for p in pieces)
    assert [p.split for p in pieces] == [True, True, True, False]
    assert "".join(p.text for p in pieces) == expected
    assert (lines[-1].text, lines[-1].split) == ("after", False)


@pytest.mark.anyio
async def test_stream_limit_applies_to_each_long_line() -> None:
    """With limit=1000, every long line splits on its own and short lines stay whole."""
    code = """
        import sys
        for n in (2500, 10, 1000, 1001):
            sys.stdout.write("x" * n + "\\n")
    """
    async with open_stream(python(code), limit=1000) as stream:
        lines = [(len(line.text), line.split) async for line in stream]
    assert lines == [(1000, True), (1000, True), (500, False), (10, False), (1000, False),
                     (1000, True), (1, False)]


@pytest.mark.anyio
async def test_stream_replaces_invalid_utf8_and_bytes_mode_is_exact() -> None:
    """Undecodable bytes become U+FFFD; with text=False the bytes come through untouched."""
    raw = b"caf\xc3\xa9 \xff\n\x00\x01\xfe\nend"
    async with open_stream(CAT, input=raw) as stream:
        assert [line.text async for line in stream] == ["café \ufffd", "\x00\x01\ufffd", "end"]
    async with open_stream(CAT, input=raw, text=False) as stream:
        assert b"\n".join([line.text async for line in stream]) == raw


@pytest.mark.anyio
async def test_stream_stdin_is_closed_by_default() -> None:
    """A streamed child reading stdin sees end of file at once."""
    with anyio.fail_after(10):
        async with open_stream(python("import sys; print(len(sys.stdin.read()))")) as stream:
            assert [line.text async for line in stream] == ["0"]


@pytest.mark.anyio
async def test_stream_input_and_merge_stderr() -> None:
    """input= feeds stdin; merge_stderr=True sends stderr into stdout like 2>&1."""
    code = "import sys; data = sys.stdin.read(); print(data.upper()); print('e', file=sys.stderr)"
    async with open_stream(python(code), input="abc", merge_stderr=True) as stream:
        lines = [(line.source, line.text) async for line in stream]
    assert sorted(lines) == [("stdout", "ABC"), ("stdout", "e")]


@pytest.mark.anyio
async def test_stream_batches_give_the_same_lines() -> None:
    """batches() yields LineBatch objects whose lines, joined, equal per-line iteration."""
    async with open_stream(PRINT_LINES(100_000)) as stream:
        batches = [batch async for batch in stream.batches()]
    assert len(batches) > 1
    assert {batch.source for batch in batches} == {"stdout"}
    assert all(batch.split is None for batch in batches)
    assert [line for batch in batches for line in batch.lines] == [
        f"line {i}" for i in range(100_000)]
    assert stream.returncode == 0


@pytest.mark.anyio
async def test_stream_batches_mark_pieces_of_long_lines() -> None:
    """A line over the limit arrives in batches as pieces flagged in ``split``."""
    async with open_stream(python("print('x' * 25)"), limit=10) as stream:
        batches = [batch async for batch in stream.batches()]
    lines = [line for batch in batches for line in batch.lines]
    flags = [flag for batch in batches for flag in (batch.split or [False] * len(batch.lines))]
    assert lines == ["x" * 10, "x" * 10, "x" * 5]
    assert flags == [True, True, False]


@pytest.mark.anyio
async def test_stream_switching_from_lines_to_batches_loses_nothing() -> None:
    """Lines left from a read that per-line iteration started come first in batches()."""
    async with open_stream(PRINT_LINES(50_000)) as stream:
        first = await stream.__anext__()
        rest = [line async for batch in stream.batches() for line in batch.lines]
    assert [first.text, *rest] == [f"line {i}" for i in range(50_000)]


@pytest.mark.anyio
async def test_stream_times_are_monotonic_since_start() -> None:
    """Line times are seconds since the start and never go backwards within a source."""
    code = "import time\nfor i in range(3):\n    print(i, flush=True); time.sleep(0.1)"
    async with open_stream(python(code)) as stream:
        times = [line.time async for line in stream]
    assert times == sorted(times)
    assert 0 <= times[0] < times[-1] < 10
    assert times[-1] - times[0] >= 0.15


@pytest.mark.anyio
async def test_stream_wait_discards_unread_output_without_blocking() -> None:
    """wait() without reading a 2 MB output returns the exit code and counts unread lines."""
    with anyio.fail_after(20):
        async with open_stream(PRINT_LINES(200_000)) as stream:
            assert await stream.wait() == 0
    assert stream.unread_lines == 200_000


@pytest.mark.anyio
async def test_stream_stopping_early_in_a_large_output_is_fast() -> None:
    """Leaving after ~1 KiB of a 2 MB output ends the child in well under a second."""
    begun = time.monotonic()
    received = 0
    async with open_stream(PRINT_LINES(200_000)) as stream:
        async for line in stream:
            received += len(line.text) + 1
            if received >= 1024:
                break
    elapsed = time.monotonic() - begun
    assert elapsed < 1.0
    assert stream.returncode in (0, -signal.SIGTERM)  # it may have finished writing already
    assert session_members([stream.pid]) == []


@pytest.mark.anyio
async def test_stream_stopping_early_ends_a_still_running_child() -> None:
    """Breaking out while the child still runs terminates it with SIGTERM, promptly."""
    code = "import time\nprint('hello', flush=True)\ntime.sleep(60)"
    begun = time.monotonic()
    async with open_stream(python(code)) as stream:
        async for _ in stream:
            break
    assert time.monotonic() - begun < 2.0
    assert stream.returncode == -signal.SIGTERM


@pytest.mark.anyio
async def test_stream_leaving_early_kills_grandchildren() -> None:
    """Leaving the block while background jobs run leaves no member of the session."""
    async with open_stream(SPAWN_GRANDCHILDREN(2)) as stream:
        async for line in stream:
            assert line.text == "ready"
            break
        await members_at_least([stream.pid], 3)
    assert session_members([stream.pid]) == []


@pytest.mark.anyio
async def test_stream_ends_when_the_leader_exits_leaving_a_background_job() -> None:
    """A shell that exits leaving a job holding stdout: the loop ends and the job is gone."""
    begun = time.monotonic()
    with anyio.fail_after(10):
        async with open_stream(["sh", "-c", f"{SLEEPER} & echo done"]) as stream:
            assert [line.text async for line in stream] == ["done"]
    assert time.monotonic() - begun < 5
    assert stream.returncode == 0
    assert session_members([stream.pid]) == []


@pytest.mark.anyio
async def test_stream_error_in_the_body_terminates_and_propagates() -> None:
    """An exception inside the block ends the child and reaches the caller unchanged."""
    with pytest.raises(LookupError, match="boom"):
        async with open_stream(SLEEP(60)) as stream:
            raise LookupError("boom")
    assert stream.returncode == -signal.SIGTERM


@pytest.mark.anyio
async def test_stream_cancelled_by_move_on_after_returns_within_grace() -> None:
    """An enclosing deadline ends the stream and its child within grace + 0.5 s."""
    begun = time.monotonic()
    with anyio.move_on_after(0.5) as scope:
        async with open_stream(SLEEP(60), grace=1.0) as stream:
            async for _ in stream:
                pass
    assert scope.cancelled_caught
    assert time.monotonic() - begun < 0.5 + 1.0 + 0.5
    assert stream.returncode == -signal.SIGTERM


@pytest.mark.anyio
async def test_stream_over_a_non_zero_exit_and_empty_output() -> None:
    """A child that prints nothing ends the loop at once with its exit code."""
    async with open_stream(EXIT(2)) as stream:
        assert [line async for line in stream] == []
    assert stream.returncode == 2


@pytest.mark.anyio
async def test_stream_fd_count_unchanged_after_use() -> None:
    """A finished stream and an abandoned one leave no descriptor open."""
    async with open_stream(PRINT_LINES(10)) as stream:  # warm up lazily created resources
        [line async for line in stream]
    before = open_fds()
    for _ in range(5):
        async with open_stream(PRINT_LINES(100_000)) as stream:
            async for _ in stream:
                break
        async with open_stream(CAT, input=os.urandom(1000)) as stream:
            [line async for line in stream]
    assert open_fds() == before


@pytest.mark.anyio
async def test_stream_leaving_while_feeding_input_writes_nowhere_else(tmp_path) -> None:
    """Leaving the block while its input is still being written stops the feeding task
    before stdin is closed: no byte reaches a file that reused the descriptor number."""
    files = FileReopener(tmp_path)
    discard = python("import sys\nwhile sys.stdin.buffer.read(1 << 16): pass")
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(files)
            async with open_stream(discard, input=b"x" * (512 << 20), grace=0.5):
                await anyio.sleep(0.2)
            await anyio.sleep(0.1)
            files.stop.set()
    assert files.written() == 0


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_while_iterating_a_stream_is_a_plain_keyboard_interrupt(backend) -> None:
    """Ctrl-C inside an open_stream block is KeyboardInterrupt on both
    backends; the child is ended."""
    code, out, children = interrupted("""
        async with open_stream(SLEEP(60)) as stream:
            async for line in stream:
                pass
    """, backend)
    assert (code, out) == (130, "KeyboardInterrupt")
    assert session_members(children) == []


CRLF = python(r"""
    import sys
    sys.stdout.buffer.write(b"a\r\nb\r")
    sys.stdout.buffer.flush()
    import time; time.sleep(0.1)  # the \r and its \n arrive in two reads
    sys.stdout.buffer.write(b"\nc\r\n\rprogress\r")
""")


def test_splitter_treats_crlf_as_a_line_end_in_text_mode_only() -> None:
    """Text mode: \\r\\n ends a line like \\n, also cut between two chunks; a lone \\r stays.
    Bytes mode is exact."""
    chunks = [b"a\r\nb\r", b"\nc\r\n\rprogress\r"]
    assert split_all(chunks) == [("a", False), ("b", False), ("c", False),
                                 ("\rprogress\r", False)]
    assert [line for line, _ in split_all(chunks, text=False)] == [
        b"a\r", b"b\r", b"c\r", b"\rprogress\r"]


@pytest.mark.anyio
async def test_stream_crlf_lines_have_no_carriage_return_and_bytes_are_exact() -> None:
    """A child writing \\r\\n line ends streams 'a', 'b', 'c' as subprocess's text mode
    would; text=False keeps every byte."""
    async with open_stream(CRLF) as stream:
        texts = [line.text async for line in stream]
    assert texts == ["a", "b", "c", "\rprogress\r"]
    async with open_stream(CRLF, text=False) as stream:
        raw = [line.text async for line in stream]
    assert raw == [b"a\r", b"b\r", b"c\r", b"\rprogress\r"]
