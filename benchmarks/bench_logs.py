"""The log aggregator (``cases.logs``): its throughput, and its memory with a slow consumer.

1. Throughput: 8 children x 100,000 lines. ``aggregate`` reads all eight at once into one
   stream; the baseline reads the same children with ``open_stream``, one after another.
   Both loops count the lines and sum their lengths per line, and must reach the same totals.
   Target (issue 13): the aggregator at least 0.8x the baseline's rate, in one run.
2. Memory: 2 children x 100,000 lines of 100 bytes (20 MB) and a consumer that sleeps 1 ms
   every 100 lines, under ``overflow="block"`` and ``"drop_oldest"`` with ``buffer=1024``;
   the peak of Python allocations (tracemalloc) against collecting everything first.
"""

from __future__ import annotations

import sys
import tracemalloc

import anyio

from asyncproc_kit import open_stream
from asyncproc_kit.cases.logs import aggregate
from asyncproc_kit.testing import python

from ._util import Spec, Table, Targets, measure_all, repeats, timed_anyio

CHILDREN = 8
LINES = 100_000
BACKENDS = ("asyncio", "trio")


def writer(name: str, count: int, width: int = 0) -> list[str]:
    pad = "." * width
    return python(f"""
        import sys
        sys.stdout.writelines(f"{name} {{i}} {pad}\\n" for i in range({count}))
    """)


COMMANDS = {f"c{i}": writer(f"c{i}", LINES) for i in range(CHILDREN)}
EXPECT = (CHILDREN * LINES,
          sum(len(f"c{i} {n} ") for i in range(CHILDREN) for n in range(LINES)))


async def one_by_one() -> tuple[int, int]:
    count = chars = 0
    for cmd in COMMANDS.values():
        async with open_stream(cmd) as stream:
            async for line in stream:
                count += 1
                chars += len(line.text)
    return count, chars


async def aggregated() -> tuple[int, int]:
    count = chars = 0
    async with aggregate(COMMANDS) as logs:
        async for line in logs:
            count += 1
            chars += len(line.text)
    if any(s.returncode or s.dropped for s in logs.summary.values()):
        raise AssertionError(f"a child failed or lines were dropped: {logs.summary}")
    return count, chars


def throughput(targets: Targets) -> None:
    specs = []
    for backend in BACKENDS:
        specs.append(Spec(f"open_stream one by one [{backend}]",
                          lambda b=backend: timed_anyio(one_by_one, b), EXPECT[0], EXPECT))
        specs.append(Spec(f"aggregate, all at once [{backend}]",
                          lambda b=backend: timed_anyio(aggregated, b), EXPECT[0], EXPECT))
    results = {m.name: m for m in measure_all(specs, rounds=repeats(3))}
    for backend in BACKENDS:
        base = f"open_stream one by one [{backend}]"
        table = Table(f"{CHILDREN} children x {LINES:,} lines [{backend}] (lines/s)",
                      "lines/s", baseline=base)
        table.add(results[base])
        agg = table.add(results[f"aggregate, all at once [{backend}]"])
        table.print()
        targets.ratio(f"aggregate vs open_stream one by one [{backend}]", agg.rate,
                      results[base].rate, 0.8)


MEM_COMMANDS = {f"m{i}": writer(f"m{i}", 100_000, width=90) for i in range(2)}


async def slow_consumer(overflow: str) -> tuple[int, int, int]:
    seen = 0
    async with aggregate(MEM_COMMANDS, buffer=1024, overflow=overflow) as logs:
        async for _ in logs:
            seen += 1
            if seen % 100 == 0:
                await anyio.sleep(0.001)
    dropped = sum(s.dropped for s in logs.summary.values())
    return seen, dropped, logs.peak


async def collect_all() -> tuple[int, int, int]:
    kept = []
    async with aggregate(MEM_COMMANDS, buffer=1 << 30) as logs:
        kept = [line async for line in logs]
    return len(kept), 0, logs.peak


def memory() -> None:
    print("\nMemory with a slow consumer: 2 children x 100,000 lines of ~100 bytes, "
          "buffer=1024 [asyncio]")
    print(f"  {'variant':<34} {'peak (MB)':>10} {'delivered':>10} {'dropped':>9} "
          f"{'most buffered':>14} {'time':>7}")
    for name, work in (("overflow='block'", lambda: slow_consumer("block")),
                       ("overflow='drop_oldest'", lambda: slow_consumer("drop_oldest")),
                       ("keep every line (a list)", collect_all)):
        tracemalloc.start()
        try:
            seconds, (seen, dropped, peak_lines) = timed_anyio(work, "asyncio")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        print(f"  {name:<34} {peak / 1e6:>10.1f} {seen:>10,} {dropped:>9,} "
              f"{peak_lines:>14,} {seconds:>6.1f}s", flush=True)
        print(f"  . {name} done", file=sys.stderr, flush=True)


def main() -> None:
    targets = Targets()
    throughput(targets)
    memory()
    targets.print()


if __name__ == "__main__":
    main()
