"""The kit's core against what Python already offers: spawning, streaming lines, concurrency.

1. Spawn and reap 500 x ``true`` with 16 in flight, output captured.
2. Stream 2,000,000 short lines from ``cat FILE``; every variant counts the lines and sums
   their lengths in the same loop body, and must arrive at the same totals.
3. 10 and 100 x ``sleep 1``: one after another vs all at once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from pathlib import Path

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

from asyncproc_kit import OutputLine, ProcessError, map_limited, open_stream, run
from asyncproc_kit._lines import LineSplitter

from ._util import (
    Spec,
    Table,
    Targets,
    fmt_rate,
    measure_all,
    repeats,
    timed_anyio,
    timed_asyncio,
    timed_sync,
)

BACKENDS = ("asyncio", "trio")
SPAWNS = 500
IN_FLIGHT = 16
LINES = 2_000_000
SLEEPERS = (10, 100)

TRUE = [shutil.which("true") or "/bin/true"]
CAT = shutil.which("cat") or "/bin/cat"
SLEEP = shutil.which("sleep") or "/bin/sleep"


# -- 1. spawn and reap --------------------------------------------------------------------------


async def spawn_kit() -> int:
    limit = anyio.Semaphore(IN_FLIGHT)
    done = 0

    async def one() -> None:
        nonlocal done
        async with limit:
            result = await run(TRUE)
        done += result.returncode == 0 and result.stdout == "" and result.stderr == ""

    async with anyio.create_task_group() as tg:
        for _ in range(SPAWNS):
            tg.start_soon(one)
    return done


async def spawn_anyio() -> int:
    limit = anyio.Semaphore(IN_FLIGHT)
    done = 0

    async def one() -> None:
        nonlocal done
        async with limit:
            result = await anyio.run_process(TRUE)  # captures stdout and stderr by default
        done += result.returncode == 0 and result.stdout == b"" and result.stderr == b""

    async with anyio.create_task_group() as tg:
        for _ in range(SPAWNS):
            tg.start_soon(one)
    return done


async def spawn_asyncio() -> int:
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one() -> bool:
        async with limit:
            proc = await asyncio.create_subprocess_exec(
                *TRUE, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = await proc.communicate()
        return proc.returncode == 0 and out == b"" and err == b""

    return sum(await asyncio.gather(*(one() for _ in range(SPAWNS))))


def _spawn_sync(_: object = None) -> bool:
    result = subprocess.run(TRUE, capture_output=True, stdin=subprocess.DEVNULL)
    return result.returncode == 0 and result.stdout == b"" and result.stderr == b""


def spawn_threads() -> int:
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        return sum(pool.map(_spawn_sync, range(SPAWNS)))


def spawn_sequential() -> int:
    return sum(_spawn_sync() for _ in range(SPAWNS))


def bench_spawn(targets: Targets) -> Table:
    table = Table(f"1. Spawn and reap {SPAWNS} x true, {IN_FLIGHT} in flight, output captured",
                  "processes/s", baseline="anyio.run_process [asyncio]")
    specs = []
    for backend in BACKENDS:
        specs.append(Spec(f"kit run [{backend}]",
                          lambda b=backend: timed_anyio(spawn_kit, b), SPAWNS, SPAWNS))
        specs.append(Spec(f"anyio.run_process [{backend}]",
                          lambda b=backend: timed_anyio(spawn_anyio, b), SPAWNS, SPAWNS))
    specs += [
        Spec("asyncio create_subprocess_exec", lambda: timed_asyncio(spawn_asyncio),
             SPAWNS, SPAWNS, "+ communicate, Semaphore(16)"),
        Spec(f"ThreadPoolExecutor({IN_FLIGHT}) + subprocess.run",
             lambda: timed_sync(spawn_threads), SPAWNS, SPAWNS),
        Spec("sequential subprocess.run", lambda: timed_sync(spawn_sequential),
             SPAWNS, SPAWNS, "one at a time"),
    ]
    table.rows = measure_all(specs, rounds=repeats(5))
    table.print()
    for backend in BACKENDS:
        targets.ratio(f"spawn: kit run vs anyio.run_process [{backend}]",
                      table.get(f"kit run [{backend}]").rate,
                      table.get(f"anyio.run_process [{backend}]").rate, 1.0)
    return table


# -- 2. streaming lines -------------------------------------------------------------------------


def make_lines(directory: str) -> tuple[str, int]:
    """A file of LINES short lines ("line 0" ... each ending in a newline); (path, bytes)."""
    path = os.path.join(directory, "lines.txt")
    data = b"".join(b"line %d\n" % i for i in range(LINES))
    Path(path).write_bytes(data)
    return path, len(data)


def stream_kit_lines(path: str, text: bool = True):
    async def work() -> tuple[int, int]:
        count = total = 0
        async with open_stream([CAT, path], text=text) as stream:
            async for line in stream:
                count += 1
                total += len(line.text)
        assert stream.returncode == 0
        return count, total
    return work


def stream_kit_batches(path: str, text: bool = True):
    async def work() -> tuple[int, int]:
        count = total = 0
        async with open_stream([CAT, path], text=text) as stream:
            async for batch in stream.batches():
                for line in batch.lines:
                    count += 1
                    total += len(line)
        assert stream.returncode == 0
        return count, total
    return work


def stream_asyncio(path: str, text: bool = False):
    """readline as is (bytes with the newline), or turned into what the kit's text mode
    delivers (str without the newline), which is what a program reading lines needs."""
    async def work() -> tuple[int, int]:
        count = total = 0
        proc = await asyncio.create_subprocess_exec(CAT, path, stdin=subprocess.DEVNULL,
                                                    stdout=subprocess.PIPE)
        assert proc.stdout is not None
        if text:
            while raw := await proc.stdout.readline():
                line = raw.decode("utf-8", "replace")
                if line.endswith("\n"):
                    line = line[:-1]
                count += 1
                total += len(line)
        else:
            while raw := await proc.stdout.readline():
                count += 1
                total += len(raw) - 1  # readline keeps the newline
        assert await proc.wait() == 0
        return count, total
    return work


def stream_anyio(path: str):
    async def work() -> tuple[int, int]:
        count = total = 0
        async with await anyio.open_process([CAT, path], stdin=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL) as proc:
            assert proc.stdout is not None
            reader = BufferedByteReceiveStream(proc.stdout)
            try:
                while True:
                    line = await reader.receive_until(b"\n", 65536)
                    count += 1
                    total += len(line)
            except (anyio.IncompleteRead, anyio.EndOfStream):
                pass  # a last line without a newline would be lost here; this file has none
        assert proc.returncode == 0
        return count, total
    return work


def stream_popen(path: str, text: bool):
    def work() -> tuple[int, int]:
        count = total = 0
        with subprocess.Popen([CAT, path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              text=text) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                count += 1
                total += len(line)
        assert proc.returncode == 0
        return count, total - count
    return work


def in_process_floor(path: str, objects: bool):
    """No child, no pipe, no event loop: 64 KiB reads of the file, the kit's splitter and
    (with ``objects``) one OutputLine per line, built the kit's way. What is left of the
    per-line cost once every async and I/O cost is gone."""
    make = tuple.__new__

    def work() -> tuple[int, int]:
        count = total = 0
        splitter = LineSplitter()
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(65536):
                lines, _ = splitter.feed(chunk)
                if objects:
                    for line in map(make, repeat(OutputLine),
                                    zip(repeat("stdout"), lines, repeat(0.0), repeat(False))):
                        count += 1
                        total += len(line.text)
                else:
                    for text in lines:
                        count += 1
                        total += len(text)
        return count, total
    return work


def pipe_limit(path: str):
    def work() -> int:
        return subprocess.run(["sh", "-c", 'cat "$1" | cat > /dev/null', "sh", path],
                              check=True).returncode
    return work


def bench_stream(targets: Targets) -> Table:
    with tempfile.TemporaryDirectory(prefix="asyncproc-bench-") as tmp:
        path, size = make_lines(tmp)
        expect = (LINES, size - LINES)
        table = Table(f"2. Stream {LINES:,} short lines ({size / 1e6:.0f} MB) from cat; "
                      "count them and sum their lengths", "lines/s",
                      baseline="asyncio StreamReader.readline")
        specs = []
        for backend in BACKENDS:
            for kind in ("text", "bytes"):
                t = kind == "text"
                specs.append(Spec(f"kit per-line [{backend}] ({kind})",
                                  lambda b=backend, t=t: timed_anyio(stream_kit_lines(path, t), b),
                                  LINES, expect, "OutputLine (str)" if t else "OutputLine (bytes)"))
                specs.append(Spec(f"kit batches [{backend}] ({kind})",
                                  lambda b=backend, t=t: timed_anyio(
                                      stream_kit_batches(path, t), b),
                                  LINES, expect, "LineBatch: list of str" if t else
                                  "LineBatch: list of bytes"))
        specs.append(Spec("asyncio StreamReader.readline",
                          lambda: timed_asyncio(stream_asyncio(path)), LINES, expect, "bytes"))
        specs.append(Spec("asyncio readline + decode (the kit's text output)",
                          lambda: timed_asyncio(stream_asyncio(path, True)), LINES, expect,
                          "str"))
        for backend in BACKENDS:
            specs.append(Spec(f"anyio receive_until [{backend}]",
                              lambda b=backend: timed_anyio(stream_anyio(path), b),
                              LINES, expect, "bytes"))
        for kind in ("bytes", "text"):
            specs.append(Spec(f"sync for line in Popen.stdout ({kind})",
                              lambda k=kind: timed_sync(stream_popen(path, k == "text")),
                              LINES, expect, "bytes" if kind == "bytes" else "str"))
        specs.append(Spec("floor: splitter + OutputLine, in-process",
                          lambda: timed_sync(in_process_floor(path, True)), LINES, expect,
                          "reference: no pipe, no loop"))
        specs.append(Spec("floor: splitter only (str), in-process",
                          lambda: timed_sync(in_process_floor(path, False)), LINES, expect,
                          "reference: no pipe, no loop"))
        specs.append(Spec("pipe limit: cat F | cat > /dev/null",
                          lambda: timed_sync(pipe_limit(path)), LINES, 0,
                          "reference: no line splitting"))
        table.rows = measure_all(specs, rounds=repeats(4), warmup=False)
    table.print()
    asyncio_rate = table.get("asyncio StreamReader.readline").rate
    floor = table.get("floor: splitter + OutputLine, in-process").rate
    popen = [table.get(f"sync for line in Popen.stdout ({k})").rate for k in ("bytes", "text")]
    print(f"  Ceiling for the kit as designed (one OutputLine per line): the in-process floor, "
          f"{fmt_rate(floor)} lines/s,\n  is {floor / asyncio_rate:.2f}x asyncio readline and "
          f"{floor / popen[0]:.2f}x / {floor / popen[1]:.2f}x sync Popen iteration (bytes / text).")
    asyncio_text = table.get("asyncio readline + decode (the kit's text output)").rate
    for backend in BACKENDS:
        targets.ratio(f"stream: kit per-line [{backend}] (text) vs asyncio readline + decode",
                      table.get(f"kit per-line [{backend}] (text)").rate, asyncio_text, 4.0)
        targets.ratio(f"stream: kit per-line [{backend}] (bytes) vs asyncio readline (bytes)",
                      table.get(f"kit per-line [{backend}] (bytes)").rate, asyncio_rate, 4.0)
    for backend in BACKENDS:
        for kind in ("bytes", "text"):
            targets.ratio(f"stream: kit batches [{backend}] ({kind}) vs sync Popen ({kind})",
                          table.get(f"kit batches [{backend}] ({kind})").rate,
                          table.get(f"sync for line in Popen.stdout ({kind})").rate, 1.0)
    return table


# -- 3. concurrency -----------------------------------------------------------------------------


async def sleep_sequential(count: int) -> int:
    ok = 0
    for _ in range(count):
        result = await run([SLEEP, "1"])
        ok += result.returncode == 0
    return ok


async def sleep_concurrent(count: int) -> int:
    ok = 0

    async def one() -> None:
        nonlocal ok
        result = await run([SLEEP, "1"])  # awaited first: ``ok += await ...`` would race
        ok += result.returncode == 0

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(one)
    return ok


async def sleep_map_limited(count: int) -> int:
    results = await map_limited([[SLEEP, "1"]] * count, limit=count)
    return sum(not isinstance(r, ProcessError) and r.returncode == 0 for r in results)


def bench_sleep(targets: Targets, spawn: Table) -> Table:
    table = Table("3. N x sleep 1: one after another vs all at once (wall time, lower is better)",
                  "s")
    first = SLEEPERS[0]
    table.rows = measure_all([Spec(f"kit run sequential, {first} x",
                                   lambda: timed_anyio(lambda: sleep_sequential(first), "asyncio"),
                                   first, first, "measured once")], rounds=1, warmup=False)
    specs = [Spec(f"kit map_limited, {count} x [{backend}]",
                  lambda c=count, b=backend: timed_anyio(lambda: sleep_map_limited(c), b),
                  count, count, f"limit={count}: all at once")
             for count in SLEEPERS for backend in BACKENDS]
    specs += [Spec(f"kit run in a task group, {SLEEPERS[-1]} x [{backend}]",
                   lambda b=backend: timed_anyio(lambda: sleep_concurrent(SLEEPERS[-1]), b),
                   SLEEPERS[-1], SLEEPERS[-1], "all at once")
              for backend in BACKENDS]
    table.rows += measure_all(specs, rounds=repeats(3), warmup=False)
    table.print()
    seq = table.rows[0]
    for count in SLEEPERS[1:]:
        print(f"  kit run sequential, {count} x: not run; extrapolated from {first} x: "
              f"{seq.seconds * count / first:.0f} s")
    for backend in BACKENDS:
        rate = spawn.get(f"kit run [{backend}]").rate
        count = SLEEPERS[-1]
        print(f"  [{backend}] {count} x at once: the floor is about 1 s + {count} spawns at the "
              f"kit's rate above ({rate:.0f}/s) = {1 + count / rate:.2f} s")
    for m in table.rows:
        if m.name.startswith("kit") and f" {SLEEPERS[-1]} x" in m.name:
            targets.at_most(f"concurrency: {m.name}", m.seconds, 1.15)
    return table


# -- summary ------------------------------------------------------------------------------------


def distances(spawn: Table, stream: Table) -> None:
    print("\nDistance from the limits (kit figure as a share of the best measured)")
    best = max((m for m in spawn.rows), key=lambda m: m.rate)
    for m in spawn.rows:
        if m.name.startswith("kit"):
            print(f"  {m.name}: {fmt_rate(m.rate)} processes/s = {m.rate / best.rate:.0%} of the "
                  f"spawn limit ({best.name}, {fmt_rate(best.rate)}/s)")
    pipe = stream.get("pipe limit: cat F | cat > /dev/null")
    for m in stream.rows:
        if m.name.startswith("kit"):
            print(f"  {m.name}: {fmt_rate(m.rate)} lines/s = {m.rate / pipe.rate:.1%} of the pipe "
                  f"limit (cat | cat, {fmt_rate(pipe.rate)} lines/s)")


def main() -> None:
    targets = Targets()
    spawn = bench_spawn(targets)
    stream = bench_stream(targets)
    bench_sleep(targets, spawn)
    distances(spawn, stream)
    targets.print()
