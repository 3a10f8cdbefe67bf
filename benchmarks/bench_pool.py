"""Bounded concurrency: 1,000 x ``true`` with 16 in flight, six ways, side by side.

``ProcessPool(16)`` and ``map_limited(limit=16)`` against what a Python programmer (or a
shell user) would otherwise write: asyncio with a semaphore around
``create_subprocess_exec`` + ``communicate``, a ``ThreadPoolExecutor(16)`` calling
``subprocess.run``, ``xargs -P16`` and GNU ``parallel -j16``. Every Python variant captures
stdout and stderr and checks the exit status; each must report 1,000 successes. The
variants take turns, one run each per round, so load from elsewhere hits them all alike.

Targets (issue 4): the pool and ``map_limited`` reach at least 0.9x the asyncio semaphore's
rate and at least 5x GNU parallel's.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from asyncproc_kit import ProcessError, ProcessPool, map_limited

from ._util import (
    Measurement,
    Table,
    Targets,
    Variant,
    repeats,
    timed_anyio,
    timed_asyncio,
    timed_sync,
)

COUNT = 1000
IN_FLIGHT = 16
TRUE = shutil.which("true") or "/bin/true"
BACKENDS = ("asyncio", "trio")
BASELINE = "asyncio semaphore"
GNU = f"GNU parallel -j{IN_FLIGHT}"


async def with_pool() -> int:
    async with ProcessPool(IN_FLIGHT) as pool:
        jobs = [await pool.submit([TRUE]) for _ in range(COUNT)]
    return sum([(await job).returncode == 0 for job in jobs])


async def with_map_limited() -> int:
    results = await map_limited([[TRUE]] * COUNT, limit=IN_FLIGHT)
    return sum(not isinstance(r, ProcessError) and r.returncode == 0 for r in results)


async def with_asyncio_semaphore() -> int:
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one() -> bool:
        async with limit:
            proc = await asyncio.create_subprocess_exec(
                TRUE, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            await proc.communicate()
            return proc.returncode == 0

    return sum(await asyncio.gather(*(one() for _ in range(COUNT))))


def with_threads() -> int:
    def one(_: int) -> bool:
        return subprocess.run([TRUE], capture_output=True, check=False).returncode == 0

    with ThreadPoolExecutor(IN_FLIGHT) as executor:
        return sum(executor.map(one, range(COUNT)))


def with_tool(argv: list[str]) -> int:
    items = "".join(f"{i}\n" for i in range(COUNT))
    done = subprocess.run(argv, input=items, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr[-300:]}")
    return COUNT  # both tools exit non-zero if any command failed


def interleaved(variants: dict[str, Variant], rounds: int) -> dict[str, Measurement]:
    """Run every variant once per round, round after round (after one warm-up round).

    The machine's load drifts over a minute; measuring variant after variant would hand
    one of them the quiet moment and another the busy one. Taking turns spreads the drift
    over all of them, so the ratios compare like with like.
    """
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(rounds + 1):
        for name, variant in variants.items():
            seconds, done = variant()
            if done != COUNT:
                raise AssertionError(f"{name}: {done} of {COUNT} processes succeeded")
            if round_:  # round 0 warms up imports, caches and the fd limit
                samples[name].append(seconds)
        print(f"  . round {round_}/{rounds} done", file=sys.stderr, flush=True)
    return {name: Measurement(name, times, COUNT) for name, times in samples.items()}


def main() -> None:
    variants: dict[str, Variant] = {}
    for backend in BACKENDS:
        variants[f"ProcessPool({IN_FLIGHT}) [{backend}]"] = \
            lambda b=backend: timed_anyio(with_pool, b)
        variants[f"map_limited(limit={IN_FLIGHT}) [{backend}]"] = \
            lambda b=backend: timed_anyio(with_map_limited, b)
    variants[BASELINE] = lambda: timed_asyncio(with_asyncio_semaphore)
    variants[f"ThreadPoolExecutor({IN_FLIGHT})"] = lambda: timed_sync(with_threads)
    if xargs := shutil.which("xargs"):
        variants[f"xargs -P{IN_FLIGHT}"] = lambda: timed_sync(
            lambda: with_tool([xargs, f"-P{IN_FLIGHT}", "-n1", TRUE]))
    if parallel := shutil.which("parallel"):
        variants[GNU] = lambda: timed_sync(
            lambda: with_tool([parallel, "--will-cite", f"-j{IN_FLIGHT}", TRUE]))
    else:
        print("GNU parallel is not installed (Debian: apt-get install parallel): "
              "that comparison is skipped", file=sys.stderr)

    results = interleaved(variants, repeats(3))
    table = Table(f"{COUNT} x true, {IN_FLIGHT} in flight (processes/s, higher is better; "
                  "variants take turns)", "processes/s", baseline=BASELINE)
    for measurement in results.values():
        table.add(measurement)
    table.print()

    targets = Targets()
    for name, m in results.items():
        if name.startswith(("ProcessPool", "map_limited")):
            targets.ratio(f"{name} vs {BASELINE}", m.rate, results[BASELINE].rate, 0.9)
            if GNU in results:
                targets.ratio(f"{name} vs GNU parallel", m.rate, results[GNU].rate, 5.0)
    targets.print()


if __name__ == "__main__":
    main()
