"""The executor's round trip against a local ``run``: what the network and the checks cost.

Per backend, in one event loop: ``echo hi`` through ``ExecutorClient.run`` on loopback
(frame, HMAC both ways, strict parse, allowlist, spawn, capped capture) and the same
``await run([echo, "hi"])`` locally, taking turns call by call so load from elsewhere hits
both alike. A refused request (``not-allowed``: everything but the spawn) shows how much of
the round trip is the protocol itself. Latencies are per call; p50 and p99 are printed with
their ratio to the local run.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time

import anyio

from asyncproc_kit import run
from asyncproc_kit.cases.executor import ExecutorClient, ExecutorError, serve_executor

from ._util import repeats

ECHO = shutil.which("echo") or "/bin/echo"
BACKENDS = ("asyncio", "trio")


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def measure(calls: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"local run": [], "executor": [], "refused": []}
    async with serve_executor({"echo": ECHO}, timeout=10) as server:
        async with ExecutorClient(server.address, server.key) as client:
            for number in range(calls + 20):  # the first 20 warm up
                begun = time.perf_counter()
                local = await run([ECHO, "hi"])
                middle = time.perf_counter()
                remote = await client.run(["echo", "hi"])
                end = time.perf_counter()
                code = None
                try:
                    await client.run(["sh", "-c", "id"])
                except ExecutorError as exc:
                    code = exc.code
                if code != "not-allowed":
                    raise AssertionError(f"sh was not refused as not-allowed: {code}")
                refused = time.perf_counter() - end
                assert local.stdout == remote.stdout == "hi\n"
                if number >= 20:
                    times["local run"].append(middle - begun)
                    times["executor"].append(end - middle)
                    times["refused"].append(refused)
        assert server.stats["spawned"] == calls + 20
    return times


def main() -> None:
    calls = repeats(1) * 300
    print(f"\n{calls} calls of `echo hi` per backend, taking turns (latency per call)")
    print(f"  {'backend':<8}  {'variant':<24}  {'p50':>9}  {'p99':>9}  {'p50 ratio':>9}  "
          f"{'p99 ratio':>9}")
    for backend in BACKENDS:
        times = anyio.run(measure, calls, backend=backend)
        base50 = statistics.median(times["local run"])
        base99 = percentile(times["local run"], 0.99)
        for name, label in (("local run", "local run (baseline)"),
                            ("executor", "executor round trip"),
                            ("refused", "refused (no spawn)")):
            p50, p99 = statistics.median(times[name]), percentile(times[name], 0.99)
            print(f"  {backend:<8}  {label:<24}  {p50 * 1e3:7.2f} ms  {p99 * 1e3:7.2f} ms  "
                  f"{p50 / base50:8.2f}x  {p99 / base99:8.2f}x", flush=True)
        print(f"  . {backend} done", file=sys.stderr, flush=True)
    print("  (ratio = latency relative to the local run; higher is slower. The executor's "
          "extra time is the\n   'refused' row: two frames over loopback, two HMACs, a "
          "strict parse and the checks.)")


if __name__ == "__main__":
    main()
