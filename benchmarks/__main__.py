"""``python -m benchmarks [NAME ...]``: run every ``benchmarks/bench_*.py`` module's ``main()``.

Modules run in name order; ``python -m benchmarks core`` runs only ``bench_core``.
``BENCH_REPEAT=N`` sets the repetitions of every measurement (the median is reported).
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    names = available()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all of {', '.join(names)})")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n.removeprefix("bench_") not in names]
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)}; choose from {', '.join(names)}")
    chosen = [n.removeprefix("bench_") for n in args.names] or names
    print(f"Python {platform.python_version()}, anyio {_version('anyio')}, "
          f"trio {_version('trio')}, {platform.system()} {platform.release()}, "
          f"{_cpus()} CPUs; medians of several interleaved runs (progress on stderr)")
    _load("before")
    begun = time.monotonic()
    for name in chosen:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"\n=== {name} ===", flush=True)
        module.main()
        sys.stdout.flush()
    print(f"\n(all benchmarks took {time.monotonic() - begun:.0f} s)")
    _load("after")
    return 0


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _load(when: str) -> None:
    """Print the load average: other work on the machine skews every figure."""
    import os
    if not hasattr(os, "getloadavg"):
        return
    one, five, _ = os.getloadavg()
    busy = one > _cpus()
    print(f"load average {when}: {one:.2f} (1 min), {five:.2f} (5 min)"
          + (f" -- the machine is busy ({_cpus()} CPUs): figures are noisy" if busy else ""))


def _cpus() -> int:
    import os
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())
