"""Timeline.joblog(): the columns and conventions of GNU parallel's --joblog."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import anyio
import pytest
from helpers import nothing_left_behind  # noqa: F401

from asyncproc_kit import JoblogEntry, ProcessPool, Timeline, map_limited, read_joblog
from asyncproc_kit.testing import CAT, PRINT_LINES, SLEEP

pytestmark = pytest.mark.anyio

HEADER = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand"
SELF_TERM = ["sh", "-c", "kill -TERM $$"]


async def test_header_and_one_tab_separated_line_per_process() -> None:
    """The header is parallel's; each line has nine fields in its formats."""
    timeline = Timeline()
    await map_limited([["sh", "-c", "exit 0"], ["sh", "-c", "exit 3"]], limit=1,
                      timeline=timeline, check=False)
    text = timeline.joblog()
    lines = text.splitlines()
    assert lines[0] == HEADER
    assert text.endswith("\n")
    assert len(lines) == 3
    fields = lines[2].split("\t")
    assert len(fields) == 9
    seq, host, start, runtime, send, receive, exitval, sig, command = fields
    assert (seq, host, send, receive, exitval, sig) == ("2", ":", "0", "0", "3", "0")
    assert command == "sh -c 'exit 3'"
    assert len(runtime) == 10
    assert runtime == f"{float(runtime):10.3f}"
    whole, _, decimals = start.partition(".")
    assert len(decimals) == 3
    assert abs(int(whole) - timeline.epoch) < 60


async def test_exitval_and_signal_follow_parallel() -> None:
    """Exit code; 0 + signal when killed by one; -1 when the kit killed it; 127 unstartable."""
    timeline = Timeline()
    await map_limited([["sh", "-c", "exit 2"], SELF_TERM, SLEEP(30), ["no-such-program-xyz"]],
                      limit=4, timeline=timeline, timeout=0.5, grace=1.0)
    entries = read_joblog(timeline.joblog())
    by_seq = {e.seq: (e.exitval, e.signal) for e in entries}
    assert by_seq == {1: (2, 0), 2: (0, 15), 3: (-1, 15), 4: (127, 0)}


async def test_send_and_receive_count_bytes() -> None:
    """Send is what went to stdin, Receive what came from stdout and stderr."""
    timeline = Timeline()
    await map_limited([CAT, PRINT_LINES(3)], limit=2, timeline=timeline, input="hello")
    first, second = read_joblog(timeline.joblog())
    assert (first.send, first.receive) == (5, 5)
    assert second.receive == len("line 0\nline 1\nline 2\n")


async def test_runtime_and_start_match_the_spans() -> None:
    """JobRuntime is the span's duration truncated to ms; Starttime is epoch + start."""
    timeline = Timeline()
    await map_limited([SLEEP(0.2)], limit=1, timeline=timeline)
    (entry,) = read_joblog(timeline.joblog())
    span = timeline.spans[0]
    assert entry.runtime == int(span.duration * 1000) / 1000  # type: ignore[operator]
    assert entry.runtime >= 0.2
    assert abs(entry.starttime - (timeline.epoch + span.started)) < 0.001  # type: ignore[operator]


async def test_seq_is_submission_order_and_unfinished_jobs_are_left_out() -> None:
    """A pool's Seq follows submission; jobs that never ran are not listed."""
    async with ProcessPool(workers=1) as pool:
        await pool.submit(["sh", "-c", "exit 0"], priority=5)
        await pool.submit(["sh", "-c", "exit 1"], check=False, priority=5)
    entries = read_joblog(pool.timeline.joblog())
    assert [(e.seq, e.exitval) for e in entries] == [(1, 0), (2, 1)]

    async with ProcessPool(workers=1) as pool:
        running = await pool.submit(SLEEP(30))
        await pool.submit(SLEEP(30))  # still queued when the pool is cancelled
        await running.wait_started()
        await pool.cancel()
    entries = read_joblog(pool.timeline.joblog())
    assert [(e.seq, e.exitval, e.signal) for e in entries] == [(1, -1, 15)]


async def test_joblog_is_written_to_a_path(tmp_path: Path) -> None:
    """joblog(path) writes the same text it returns."""
    timeline = Timeline()
    await map_limited([["true"]], limit=1, timeline=timeline)
    path = tmp_path / "jobs.log"
    text = timeline.joblog(str(path))
    assert path.read_text() == text


def test_newlines_in_a_command_are_written_as_nul() -> None:
    """As parallel does, so that every job stays on one line."""
    timeline = Timeline()
    span = timeline.add(["sh", "-c", "echo a\necho b"])
    span.started, span.ended, span.returncode = 0.0, 0.5, 0
    (line,) = timeline.joblog().splitlines()[1:]
    assert line.endswith("'echo a\0echo b'")


def test_read_joblog_rejects_what_is_not_a_joblog() -> None:
    """A wrong header or a malformed field is a ValueError naming the line."""
    with pytest.raises(ValueError, match="first line must be"):
        read_joblog("Seq\tHost\n")
    with pytest.raises(ValueError, match="line 2 is malformed"):
        read_joblog(HEADER + "\nx\t:\t1.0\t0.1\t0\t0\t0\t0\ttrue\n")
    assert read_joblog(HEADER + "\n") == []


@pytest.mark.skipif(shutil.which("parallel") is None, reason="GNU parallel is not installed")
async def test_same_columns_and_values_as_gnu_parallel(tmp_path: Path) -> None:
    """The same four commands through parallel and through the kit agree field by field."""
    shells = ["exit 0", "exit 3", "kill -TERM $$", "echo hi"]
    log = tmp_path / "parallel.log"
    argv = ["parallel", "--will-cite", "-j1", "--joblog", str(log), "sh", "-c", ":::", *shells]
    await anyio.to_thread.run_sync(
        lambda: subprocess.run(argv, capture_output=True, check=False))
    theirs = read_joblog(log.read_text())
    timeline = Timeline()
    await map_limited([["sh", "-c", s] for s in shells], limit=1, timeline=timeline,
                      check=False)
    ours = read_joblog(timeline.joblog())
    assert log.read_text().splitlines()[0] == timeline.joblog().splitlines()[0]

    def comparable(e: JoblogEntry) -> tuple[int, str, int, int, str]:
        return e.seq, e.host, e.exitval, e.signal, e.command

    assert [comparable(e) for e in ours] == [comparable(e) for e in theirs]
