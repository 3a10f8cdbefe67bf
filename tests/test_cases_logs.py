"""cases.logs: many children, one tagged stream; order, seq, overflow policies, cleanup, CLI."""

from __future__ import annotations

import io
import itertools
import os
import signal
import subprocess
import sys
import textwrap

import anyio
import pytest

from asyncproc_kit import SpawnError, Timeline
from asyncproc_kit.cases.logs import LogLine, LogView, aggregate, format_line, use_color
from asyncproc_kit.testing import (
    EXIT,
    SLEEP,
    SPAWN_GRANDCHILDREN,
    descendants,
    python,
    session_members,
)

pytestmark = pytest.mark.timeout(120)

# Writes `count` numbered lines to stdout and to stderr, alternating in bursts, as fast as it can.
BOTH = """
    import sys
    for i in range({count}):
        sys.stdout.write(f"{name} out {{i}}\\n")
        if i % 3 == 0:
            sys.stderr.write(f"{name} err {{i // 3}}\\n")
"""


def both(name: str, count: int) -> list[str]:
    return python(BOTH.format(name=name, count=count))


def plain_python(code: str) -> list[str]:
    """A Python child without ``-u``: it block-buffers stdout into a pipe unless told not to."""
    return [sys.executable, "-c", textwrap.dedent(code)]


def by_stream(lines: list[LogLine]) -> dict[tuple[str, str], list[LogLine]]:
    out: dict[tuple[str, str], list[LogLine]] = {}
    for line in lines:
        out.setdefault((line.name, line.source), []).append(line)
    return out


def gaps(lines: list[LogLine], total: int | None = None) -> int:
    """How many seq numbers are missing from 0 to the last one seen (or to ``total - 1``: lines
    dropped after the last one you received show only against the summary's total)."""
    end = total if total is not None else (lines[-1].seq + 1 if lines else 0)
    return end - len(lines)


@pytest.mark.anyio
async def test_order_and_gapless_seq_under_load():
    """Four children writing both streams at full speed: every (name, source) arrives complete,
    in order, numbered 0, 1, 2 ... without gaps, and the summary adds up."""
    count = 20_000
    names = ["a", "b", "c", "d"]
    async with aggregate({n: both(n, count) for n in names}, buffer=256) as logs:
        lines = [line async for line in logs]
    streams = by_stream(lines)
    for name in names:
        out, err = streams[(name, "stdout")], streams[(name, "stderr")]
        assert [x.text for x in out] == [f"{name} out {i}" for i in range(count)]
        assert [x.text for x in err] == [f"{name} err {i}" for i in range((count + 2) // 3)]
        for part in (out, err):
            assert [x.seq for x in part] == list(range(len(part)))
            assert all(a.time <= b.time for a, b in itertools.pairwise(part))
        s = logs.summary[name]
        assert (s.stdout_lines, s.stderr_lines, s.dropped, s.returncode) == (
            len(out), len(err), 0, 0)
        assert s.bytes == sum(len(x.text) + 1 for x in out + err)
    assert logs.peak <= 256


@pytest.mark.anyio
async def test_final_partial_line_long_line_and_invalid_utf8():
    """A last line without a newline arrives; a 150,000-character line arrives in marked
    pieces at open_stream's 64 KiB limit; undecodable bytes become U+FFFD."""
    code = """
        import sys
        sys.stdout.write("x" * 150000 + "\\n")
        sys.stdout.flush()
        sys.stderr.buffer.write(b"ok \\xff\\xfe end\\n")
        sys.stdout.write("last, no newline")
    """
    async with aggregate({"p": python(code)}) as logs:
        lines = [line async for line in logs]
    streams = by_stream(lines)
    out = streams[("p", "stdout")]
    assert [(len(x.text), x.split, x.seq) for x in out] == [
        (65536, True, 0), (65536, True, 1), (150000 - 2 * 65536, False, 2),
        (len("last, no newline"), False, 3)]
    assert "".join(x.text for x in out[:3]) == "x" * 150000
    assert out[-1].text == "last, no newline"
    assert [x.text for x in streams[("p", "stderr")]] == ["ok \ufffd\ufffd end"]
    assert logs.summary["p"].stdout_lines == 4


@pytest.mark.anyio
async def test_block_policy_slows_the_child_and_loses_nothing():
    """overflow="block": while the consumer sleeps, the child cannot finish (its pipe is
    full); afterwards every line is delivered, none dropped, the buffer never over its size."""
    total = 40_000  # lines of 1 KB: 40 MB, more than the pipe and the readers' queues hold
    child = python(f"""
        import sys
        line = "y" * 999 + "\\n"
        for i in range({total}):
            sys.stdout.write(line)
    """)
    async with aggregate({"w": child}, buffer=64, overflow="block") as logs:
        first = await logs.__anext__()
        await anyio.sleep(0.5)  # a very slow consumer
        stalled = logs.summary["w"]
        rest = [line async for line in logs]
    assert stalled.returncode is None
    assert stalled.bytes < total * 1000
    seqs = [first.seq] + [x.seq for x in rest]
    assert seqs == list(range(total))
    s = logs.summary["w"]
    assert (s.stdout_lines, s.dropped, s.bytes, s.returncode) == (total, 0, total * 1000, 0)
    assert 0 < logs.peak <= 64


@pytest.mark.anyio
async def test_drop_oldest_keeps_memory_bounded_and_counts_every_drop():
    """overflow="drop_oldest": the child finishes while the consumer waits; at most `buffer`
    lines are held; delivered + dropped = written, and the drops are exactly the seq gaps."""
    total = 40_000
    child = python(f"""
        import sys
        for i in range({total}):
            sys.stdout.write(f"{{i}}\\n")
    """)
    async with aggregate({"w": child}, buffer=100, overflow="drop_oldest") as logs:
        first = await logs.__anext__()
        async for name, returncode in logs.exits():  # the child ends without waiting for us
            assert (name, returncode) == ("w", 0)
            break
        rest = [line async for line in logs]
    lines = [first, *rest]
    s = logs.summary["w"]
    assert s.stdout_lines == len(lines) <= 101
    assert s.dropped == s.stdout_dropped == total - len(lines) > 0
    assert gaps(lines) == s.dropped
    assert [int(x.text) for x in lines] == [x.seq for x in lines]  # seq is the child's number
    assert lines[-1].seq == total - 1  # the newest are kept
    assert logs.peak <= 100


@pytest.mark.anyio
async def test_drop_oldest_counts_per_child_and_source():
    """Drops with several children are charged to the right (name, source)."""
    async with aggregate({"a": both("a", 30_000), "b": both("b", 30_000)}, buffer=50,
                         overflow="drop_oldest") as logs:
        lines = []
        async for line in logs:
            lines.append(line)
            if len(lines) % 10 == 0:
                await anyio.sleep(0.002)
    streams = by_stream(lines)
    for name in ("a", "b"):
        s = logs.summary[name]
        out, err = streams.get((name, "stdout"), []), streams.get((name, "stderr"), [])
        assert s.stdout_lines + s.stdout_dropped == 30_000
        assert s.stderr_lines + s.stderr_dropped == 10_000
        assert s.stdout_dropped == gaps(out, 30_000)
        assert s.stderr_dropped == gaps(err, 10_000)
        assert gaps(out) <= s.stdout_dropped
        assert [x.seq for x in out] == sorted({x.seq for x in out})  # in order, no repeats
    assert sum(s.dropped for s in logs.summary.values()) > 0


HANDSHAKE = """
    import os, sys, time
    print("first")
    deadline = time.monotonic() + {wait}
    while not os.path.exists({flag!r}) and time.monotonic() < deadline:
        time.sleep(0.01)
    print("saw the flag" if os.path.exists({flag!r}) else "gave up")
"""


@pytest.mark.anyio
async def test_python_children_are_unbuffered_by_default(tmp_path):
    """A plain Python child's first line arrives while it runs: we answer it (by creating a
    file) and the child sees the answer."""
    flag = tmp_path / "flag"
    async with aggregate({"py": plain_python(HANDSHAKE.format(wait=60, flag=str(flag)))}) as logs:
        texts = []
        async for line in logs:
            texts.append(line.text)
            flag.touch()
    assert texts == ["first", "saw the flag"]


@pytest.mark.anyio
async def test_unbuffered_false_adds_nothing_and_python_buffers(tmp_path):
    """With unbuffered=False the child keeps Python's pipe buffering: "first" arrives only at
    its exit, too late for an answer; and PYTHONUNBUFFERED is not in its environment."""
    flag = tmp_path / "flag"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    code = HANDSHAKE.format(wait=1.0, flag=str(flag))
    async with aggregate({"py": plain_python(code)}, unbuffered=False, env=env) as logs:
        texts = []
        async for line in logs:
            texts.append(line.text)
            flag.touch()
    assert texts == ["first", "gave up"]
    show = "import os; print(os.environ.get('PYTHONUNBUFFERED'))"
    async with aggregate({"on": plain_python(show)}, env=env) as on, \
            aggregate({"off": plain_python(show)}, env=env, unbuffered=False) as off:
        seen = [x.text async for x in on] + [x.text async for x in off]
    assert seen == ["1", "None"]


@pytest.mark.anyio
async def test_leaving_early_ends_every_group():
    """break after the first lines: both children and their background grandchildren end."""
    cmds = {"a": SPAWN_GRANDCHILDREN(2), "b": SPAWN_GRANDCHILDREN(2)}
    async with aggregate(cmds, grace=5) as logs:
        ready = set()
        async for line in logs:
            ready.add(line.name)
            if ready == {"a", "b"}:
                break
        pids = [s.pid for s in logs.summary.values()]
    assert session_members(pids) == []
    assert all(s.returncode is not None and s.returncode < 0 for s in logs.summary.values())


@pytest.mark.anyio
async def test_an_error_in_the_block_propagates_unchanged_and_children_end():
    """An exception in the body comes out as itself, and no child is left."""
    logs = aggregate({"s": SLEEP(60), "t": SLEEP(60)})

    async def fail_inside() -> None:
        async with logs:
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await fail_inside()
    pids = [s.pid for s in logs.summary.values()]
    assert all(pids)
    assert session_members(pids) == []


@pytest.mark.anyio
async def test_nonzero_exit_is_in_the_summary_and_does_not_raise():
    """Exit codes land in the summary; logs.exits() reports each child once."""
    async with aggregate({"ok": EXIT(0), "bad": EXIT(3, "oops\n")}) as logs:
        lines = [line async for line in logs]
        exits = sorted([e async for e in logs.exits()])
    assert exits == [("bad", 3), ("ok", 0)]
    assert logs.summary["bad"].returncode == 3
    assert logs.summary["ok"].returncode == 0
    assert [(x.name, x.source, x.text) for x in lines] == [("bad", "stderr", "oops")]


@pytest.mark.anyio
async def test_terminate_ends_the_named_children_and_the_loop():
    """logs.terminate() ends running children; the loop then finishes; they are `stopped`."""
    async with aggregate({"s": SLEEP(60), "quick": EXIT(0)}, grace=5) as logs:
        await logs.terminate("s")
        lines = [line async for line in logs]
    assert lines == []
    assert logs.stopped == {"s"}
    assert logs.summary["s"].returncode < 0


@pytest.mark.anyio
async def test_spawn_error_raises_before_anything_starts():
    """A missing program is found before any child starts: no child is left running."""
    before = descendants()
    with pytest.raises(SpawnError, match="no-such-program-xyz"):
        aggregate({"s": SLEEP(60), "x": ["no-such-program-xyz"]})
    assert descendants() == before


@pytest.mark.anyio
async def test_spawn_error_at_start_ends_the_children_already_started(tmp_path):
    """If exec still fails (the program vanished after the check), the ones already running
    are ended and the SpawnError comes out as itself."""
    prog = tmp_path / "prog"
    prog.write_text("#!/bin/sh\n")
    prog.chmod(0o755)
    logs = aggregate({"s": SLEEP(60), "x": [str(prog)]})
    prog.unlink()
    with pytest.raises(SpawnError):
        async with logs:
            pytest.fail("the block must not run")
    assert session_members([s.pid for s in logs.summary.values() if s.pid]) == []


@pytest.mark.parametrize(("kwargs", "error", "words"), [
    ({"commands": {"web": "python -m http.server"}}, TypeError, "commands['web']"),
    ({"commands": {}}, ValueError, "empty"),
    ({"commands": [["true"]]}, TypeError, "dict of name"),
    ({"commands": {"": ["true"]}}, ValueError, "name"),
    ({"commands": {"a": ["true"]}, "buffer": 0}, ValueError, "buffer"),
    ({"commands": {"a": ["true"]}, "buffer": 1.5}, TypeError, "buffer"),
    ({"commands": {"a": ["true"]}, "overflow": "drop"}, ValueError, "drop_oldest"),
    ({"commands": {"a": ["true"]}, "limit": 0}, ValueError, "limit"),
    ({"commands": {"a": ["true"]}, "unbuffered": "yes"}, TypeError, "unbuffered"),
    ({"commands": {"a": ["true"]}, "grace": -1}, ValueError, "grace"),
    ({"commands": {"a": ["true"]}, "env": {"A": 1}}, TypeError, "env"),
    ({"commands": {"a": ["true"]}, "cwd": "/no/such/dir"}, SpawnError, "does not exist"),
])
def test_bad_arguments_are_refused_with_a_reason(kwargs, error, words):
    """Each bad argument is named in the error, raised by aggregate() itself."""
    with pytest.raises(error) as info:
        aggregate(**kwargs)
    assert words in str(info.value)


@pytest.mark.anyio
async def test_timeline_has_a_span_per_name():
    """A Timeline passed in records each child under its name."""
    tl = Timeline()
    async with aggregate({"one": EXIT(0), "two": EXIT(0)}, timeline=tl) as logs:
        _ = [line async for line in logs]
    assert sorted(s.label for s in tl.spans) == ["one", "two"]
    assert all(s.returncode == 0 for s in tl.spans)


# -- showing ----------------------------------------------------------------------------------


def test_use_color_respects_no_color_force_color_and_tty():
    """NO_COLOR wins; FORCE_COLOR forces; otherwise only a terminal gets colour."""

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert use_color(Tty(), {}) is True
    assert use_color(io.StringIO(), {}) is False
    assert use_color(Tty(), {"NO_COLOR": "1"}) is False
    assert use_color(Tty(), {"NO_COLOR": ""}) is True  # empty means unset (no-color.org)
    assert use_color(io.StringIO(), {"FORCE_COLOR": "1"}) is True
    assert use_color(Tty(), {"NO_COLOR": "1", "FORCE_COLOR": "1"}) is False


def test_format_line_tags_and_colours():
    """Plain text has tags padded to the longest name; colour adds ANSI codes per name."""
    out = LogLine("web", "stdout", 0, 0.0, "hello")
    err = LogLine("web", "stderr", 0, 0.0, "oops", False)
    piece = LogLine("w", "stdout", 1, 0.0, "abc", True)
    assert format_line(out, width=6) == "[web]        hello"
    assert format_line(err) == "[web:err] oops"
    assert format_line(piece) == "[w]    abc…"
    coloured = format_line(out, color=True, index=1)
    assert coloured.startswith("\x1b[35m[web]\x1b[0m")
    assert coloured.endswith("hello")
    assert "\x1b[1;31m:err" in format_line(err, color=True)


def test_log_view_html_escapes_and_colours_each_name():
    """The HTML view colours by name, marks stderr, and escapes the child's text."""
    view = LogView([LogLine("a", "stdout", 0, 0.0, "<b>x</b>"),
                    LogLine("b", "stderr", 0, 0.1, "bad & worse")])
    page = view._repr_html_()
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<b>x" not in page
    assert "bad &amp; worse" in page
    assert ":err" in page
    assert "#0e7490" in page
    assert "#a21caf" in page
    assert repr(view) == "[a]     <b>x</b>\n[b:err] bad & worse"


# -- command line -----------------------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    full = {**base, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
    return subprocess.run([sys.executable, "-m", "asyncproc_kit.cases.logs", *args],
                          capture_output=True, text=True, timeout=timeout, env=full)


PY = sys.executable


def test_cli_tags_lines_and_returns_the_first_failure():
    """Lines come out tagged; the exit status is the failing command's."""
    done = cli(f"ok={PY} -c 'print(\"hi there\")'",
               f"bad={PY} -c 'import sys; print(\"no\", file=sys.stderr); sys.exit(3)'")
    assert done.returncode == 3, done.stderr
    assert sorted(done.stdout.splitlines()) == ["[bad:err] no", "[ok]      hi there"]
    assert "bad: 0 stdout + 1 stderr lines" in done.stderr
    assert "\x1b[" not in done.stdout  # a pipe is not a terminal


def test_cli_success_is_zero_and_no_shell_runs():
    """Commands are split with shlex and run without a shell: `;` is just an argument."""
    done = cli(f"echo={PY} -c 'import sys; print(sys.argv[1:])' a ';' 'b c'")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[echo]     ['a', ';', 'b c']"]


def test_cli_kill_others_stops_the_rest_when_one_exits():
    """--kill-others: the sleeper is stopped when the quick one exits; that is no failure."""
    done = cli(f"quick={PY} -c 'print(1)'", f"slow={PY} -c 'import time; time.sleep(60)'",
               "--kill-others", timeout=30)
    assert done.returncode == 0, done.stderr
    assert "slow: 0 stdout + 0 stderr lines, 0 bytes, 0 dropped, killed by SIGTERM" in done.stderr


def test_cli_kill_others_on_fail_returns_the_failure():
    """--kill-others-on-fail: a failure stops the rest and gives its exit status."""
    done = cli(f"bad={PY} -c 'import sys; sys.exit(4)'",
               f"slow={PY} -c 'import time; time.sleep(60)'", "--kill-others-on-fail",
               timeout=30)
    assert done.returncode == 4, done.stderr


def test_cli_colour_forced_and_no_color_wins():
    """FORCE_COLOR colours a pipe; NO_COLOR turns it off again."""
    args = (f"a={PY} -c 'print(1)'",)
    assert "\x1b[36m[a]" in cli(*args, env={"FORCE_COLOR": "1"}).stdout
    assert "\x1b[" not in cli(*args, env={"FORCE_COLOR": "1", "NO_COLOR": "1"}).stdout
    assert "\x1b[36m[a]" in cli(*args, "--color", "always", env={"NO_COLOR": "1"}).stdout


def test_cli_usage_errors():
    """A missing '=' or a missing program is a clear error before anything runs."""
    done = cli("just-a-command")
    assert done.returncode == 2
    assert "NAME=COMMAND" in done.stderr
    done = cli("x=no-such-program-xyz --flag")
    assert done.returncode == 127
    assert "command not found" in done.stderr


def test_cli_bad_option_value_is_a_usage_error():
    """--buffer 0 is refused with the reason, before anything starts."""
    done = cli("--buffer", "0", f"a={PY} -c 'print(1)'")
    assert done.returncode == 2
    assert "buffer must be at least 1" in done.stderr


def test_cli_ctrl_c_ends_every_child_and_exits_130():
    """SIGINT (Ctrl-C) to the tool: its children's groups end too, exit status 130."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    sleeper = f"{PY} -c 'import time; print(\"ready\", flush=True); time.sleep(60)'"
    with subprocess.Popen([PY, "-m", "asyncproc_kit.cases.logs", f"a={sleeper}", f"b={sleeper}"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env) as tool:
        assert tool.stdout is not None
        first = tool.stdout.readline()
        assert "ready" in first
        children = descendants(tool.pid)
        tool.send_signal(signal.SIGINT)
        assert tool.wait(timeout=30) == 130
    assert children
    assert [pid for pid in children if pid in descendants()] == []
    assert session_members(children) == []
