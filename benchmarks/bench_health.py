"""The health monitor's schedule: 20 services checked every 0.25 s for 3 s, two ways.

``HealthMonitor`` (ticks on ``start + k * interval``, on asyncio and trio) against the loop a
programmer writes first (run the check, then ``sleep(interval)``: each check's duration is
added to every later tick). Each check is a real child (``true``). Reported per variant: the
checks done against the 12 ticks a service is owed, and how late the checks started
(median and worst), in milliseconds. No target in the issue; the figures show what "does
not drift" buys on this machine.
"""

from __future__ import annotations

import shutil
import statistics

import anyio

from asyncproc_kit import run
from asyncproc_kit.cases.health import HealthMonitor

SERVICES = 20
INTERVAL = 0.25
RUN_FOR = 3.0
TRUE = shutil.which("true") or "/bin/true"
OWED = int(RUN_FOR / INTERVAL)  # ticks at 0, 0.25, ... 2.75


async def with_monitor() -> tuple[list[list[float]], int]:
    monitor = HealthMonitor()
    for i in range(SERVICES):
        monitor.add(f"s{i}", [TRUE], interval=INTERVAL, timeout=5)
    async with monitor:
        await anyio.sleep(RUN_FOR - 0.01)
    overruns = sum(e.kind == "overrun" for e in monitor.events)
    return [[r.time for r in monitor.history(f"s{i}")] for i in range(SERVICES)], overruns


async def with_sleep_loop() -> tuple[list[list[float]], int]:
    starts: list[list[float]] = [[] for _ in range(SERVICES)]
    origin = anyio.current_time()

    async def service(i: int) -> None:
        while True:
            starts[i].append(anyio.current_time() - origin)
            await run([TRUE], timeout=5)
            await anyio.sleep(INTERVAL)

    with anyio.move_on_after(RUN_FOR - 0.01):
        async with anyio.create_task_group() as tg:
            for i in range(SERVICES):
                tg.start_soon(service, i)
    return starts, 0  # it cannot overrun: it never starts a check before the last ended


def lateness(starts: list[list[float]]) -> list[float]:
    """Seconds each check started after the tick it was owed (the k-th check: k * interval)."""
    return [t - k * INTERVAL for service in starts for k, t in enumerate(service)]


def main() -> None:
    rows = []
    for name, work, backend in (("HealthMonitor, asyncio", with_monitor, "asyncio"),
                                ("HealthMonitor, trio", with_monitor, "trio"),
                                ("run + sleep(interval), asyncio", with_sleep_loop, "asyncio")):
        starts, overruns = anyio.run(work, backend=backend)
        late = lateness(starts)
        done = statistics.mean(len(s) for s in starts)
        rows.append((name, done, statistics.median(late) * 1000, max(late) * 1000, overruns))
    print(f"{SERVICES} services x `true` every {INTERVAL:g} s for {RUN_FOR:g} s "
          f"({OWED} ticks owed per service)")
    print(f"{'variant':34} {'checks/service':>15} {'median late':>12} {'worst late':>11} "
          f"{'overruns':>9}")
    for name, done, median, worst, overruns in rows:
        print(f"{name:34} {done:15.1f} {median:10.1f} ms {worst:8.1f} ms {overruns:9d}")
    print("(a check slower than the interval makes the monitor skip a tick, an overrun: the "
          "checks after it are then a whole interval 'late' against the tick they were owed)")
    monitor, naive = rows[0], rows[2]
    print(f"checks done, monitor / sleep loop: {monitor[1] / naive[1]:.2f}x; worst lateness, "
          f"sleep loop / monitor: {naive[3] / max(monitor[3], 0.1):.1f}x")


if __name__ == "__main__":
    main()
