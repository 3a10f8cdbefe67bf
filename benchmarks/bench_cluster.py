"""The same batch on Dask: ``DaskRunner.map`` over 200 x ``true`` on 2 workers vs ``map_limited``.

Both run at most 2 commands at once. ``map_limited`` spawns them from this process;
``DaskRunner`` ships each one to a worker of a local cluster (2 worker processes, 1 slot
each, started once, outside the timing) and brings its result back. To show where the time
goes, the same 200 tasks are also measured with parts taken away:

* ``Dask no-op task``: an ``async def`` that returns at once, through ``client.map`` and
  ``gather``: the scheduler's round trip alone, the floor any Dask variant stands on;
* ``Dask subprocess.run``: what one would write with plain Dask (a blocking call on the
  worker's thread, no process group, no stop event, uncancellable);
* ``DaskRunner.map, no limit``: the kit on the worker (process group, captured output) and
  the stop event (wait, set, clear: three scheduler calls per command);
* ``DaskRunner.map(limit=2)``: plus the cluster-wide semaphore (acquire and release: two
  more scheduler calls per command).

No target: the issue asks for the ratio and an account of the time, printed at the end.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import anyio

from asyncproc_kit import ProcessError, map_limited
from asyncproc_kit.cases.cluster import DaskRunner

from ._util import Measurement, Table, Variant, repeats, timed_anyio, timed_sync

COUNT = 200
LIMIT = 2
TRUE = shutil.which("true") or "/bin/true"
BASELINE = f"map_limited(limit={LIMIT}) [asyncio]"


async def noop(index: int) -> int:
    """A Dask task that does nothing (it runs on the worker's event loop)."""
    return index


def ok_count(outcomes: list) -> int:
    return sum(not isinstance(o, ProcessError) and o.returncode == 0 for o in outcomes)


def main() -> None:
    runner = DaskRunner(n_workers=2)
    begun = time.perf_counter()
    anyio.run(runner.__aenter__)
    started = time.perf_counter() - begun
    try:
        results = _measure(runner)
    finally:
        anyio.run(runner.__aexit__, None, None, None)
    print(f"\nlocal cluster of 2 workers started in {started:.1f} s (not in the figures)")
    table = Table(f"{COUNT} x true, {LIMIT} at once (processes/s, higher is better; "
                  "variants take turns)", "processes/s", baseline=BASELINE)
    for m in results.values():
        table.add(m)
    table.print()
    _explain(results)


def _measure(runner: DaskRunner) -> dict[str, Measurement]:
    client = runner.client
    commands = [[TRUE]] * COUNT

    async def with_map_limited() -> int:
        return ok_count(await map_limited(commands, limit=LIMIT))

    async def with_runner(limit: int | None) -> int:
        return ok_count(await runner.map(commands, limit=limit))

    def with_noop() -> int:
        return len(client.gather(client.map(noop, range(COUNT), pure=False)))

    def with_subprocess() -> int:
        futures = client.map(subprocess.run, commands, capture_output=True, pure=False)
        return sum(done.returncode == 0 for done in client.gather(futures))

    variants: dict[str, Variant] = {
        BASELINE: lambda: timed_anyio(with_map_limited, "asyncio"),
        "Dask no-op task": lambda: timed_sync(with_noop),
        "Dask subprocess.run": lambda: timed_sync(with_subprocess),
        "DaskRunner.map, no limit [asyncio]": lambda: timed_anyio(
            lambda: with_runner(None), "asyncio"),
    }
    for backend in ("asyncio", "trio"):
        variants[f"DaskRunner.map(limit={LIMIT}) [{backend}]"] = \
            lambda b=backend: timed_anyio(lambda: with_runner(LIMIT), b)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    rounds = repeats(3)
    for round_ in range(rounds + 1):
        for name, variant in variants.items():
            seconds, done = variant()
            if done != COUNT:
                raise AssertionError(f"{name}: {done} of {COUNT} tasks succeeded")
            if round_:  # round 0 warms up imports, worker clients and connections
                samples[name].append(seconds)
        print(f"  . round {round_}/{rounds} done", file=sys.stderr, flush=True)
    return {name: Measurement(name, times, COUNT) for name, times in samples.items()}


def _explain(results: dict[str, Measurement]) -> None:
    base = results[BASELINE].seconds
    floor = results["Dask no-op task"].seconds
    plain = results["Dask subprocess.run"].seconds
    event = results["DaskRunner.map, no limit [asyncio]"].seconds
    full = results[f"DaskRunner.map(limit={LIMIT}) [asyncio]"].seconds
    per = 1000 / COUNT
    print(f"\nDaskRunner.map(limit={LIMIT}) vs map_limited(limit={LIMIT}): "
          f"{base / full:.2f}x the rate ({full / base:.1f}x the time)")
    print("Where DaskRunner's time goes, per command (asyncio, medians):")
    print(f"  Dask's scheduling round trip (no-op task)      {floor * per:6.2f} ms")
    print(f"  + a plain subprocess.run on the worker          {(plain - floor) * per:+6.2f} ms")
    print(f"  + the kit's run and the stop event, not plain  {(event - plain) * per:+6.2f} ms")
    print(f"  + the cluster-wide semaphore                   {(full - event) * per:+6.2f} ms")
    print(f"  = DaskRunner.map(limit={LIMIT})                       {full * per:6.2f} ms "
          f"(map_limited: {base * per:.2f} ms)")


if __name__ == "__main__":
    main()
