"""What watching the loop and logging process events cost.

1. 200 x ``true`` with 16 in flight, per backend: unwatched, under ``watch_loop`` with the
   backend's hook, under the heartbeat, and with the kit's DEBUG records going to a
   handler that drops them (the records are built and formatted, nothing is written).
2. 20,000 task switches (``checkpoint()``) in 10 tasks, per backend: the hook times every
   step, so this is its worst case.
"""

from __future__ import annotations

import logging
import shutil

import anyio
import anyio.lowlevel

from asyncproc_kit import map_limited
from asyncproc_kit.diagnostics import watch_loop

from ._util import Spec, Table, measure_all, repeats, timed_anyio

BACKENDS = ("asyncio", "trio")
SPAWNS = 200
IN_FLIGHT = 16
SWITCHES = 20_000
TASKS = 10
TRUE = [shutil.which("true") or "/bin/true"]


class _Formatted(logging.Handler):
    """Formats each record (the real cost of a configured handler) and keeps nothing."""

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


async def _spawns() -> int:
    results = await map_limited([TRUE] * SPAWNS, limit=IN_FLIGHT)
    return sum(1 for r in results if getattr(r, "returncode", None) == 0)


async def _switches() -> int:
    done = 0

    async def worker() -> None:
        nonlocal done
        for _ in range(SWITCHES // TASKS):
            await anyio.lowlevel.checkpoint()
            done += 1

    async with anyio.create_task_group() as tg:
        for _ in range(TASKS):
            tg.start_soon(worker)
    return done


def _watched(work, method: str):
    async def run():
        async with watch_loop(method=method):
            return await work()
    return run


def _logged(work):
    async def run():
        logger = logging.getLogger("asyncproc_kit")
        handler = _Formatted()
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        try:
            return await work()
        finally:
            logger.removeHandler(handler)
            logger.setLevel(logging.NOTSET)
    return run


def _table(title: str, work, units: int, unit: str, *, logging_row: bool) -> None:
    for backend in BACKENDS:
        table = Table(f"{title} [{backend}]", unit, baseline="unwatched")
        specs = [
            Spec("unwatched", lambda b=backend: timed_anyio(work, b), units, units),
            Spec("watch_loop (hook)", lambda b=backend: timed_anyio(_watched(work, "hook"), b),
                 units, units),
            Spec("watch_loop (heartbeat)",
                 lambda b=backend: timed_anyio(_watched(work, "heartbeat"), b), units, units),
        ]
        if logging_row:
            specs.append(Spec("DEBUG records formatted",
                              lambda b=backend: timed_anyio(_logged(work), b), units, units))
        table.rows = measure_all(specs, rounds=repeats(5))
        table.print()


def main() -> None:
    _table(f"1. Spawn and reap {SPAWNS} x true, {IN_FLIGHT} in flight", _spawns, SPAWNS,
           "processes/s", logging_row=True)
    _table(f"2. {SWITCHES:,} task switches in {TASKS} tasks", _switches, SWITCHES,
           "switches/s", logging_row=False)


if __name__ == "__main__":
    main()
