"""The batch processor's price: ``process_files`` against ``map_limited`` on the same commands.

1,000 trivial items (``touch PART``, the cheapest command that writes a file), 4 at once:

* ``map_limited`` runs the very argument lists ``process_files`` builds, and nothing else;
* ``process_files`` without a journal adds a stat per input, a part file renamed per
  output and a report;
* ``process_files`` with a journal adds one JSON line per item, flushed and fsynced (group
  commit in a worker thread, so the event loop never waits for the disk).

Then a resume over 10,000 journaled items that are all done: it reads the journal, stats
every input and output, and must spawn nothing. Variants take turns on asyncio and trio.

Targets (issue 11): with the journal >= 0.8x map_limited's rate, without >= 0.95x; the
resume of 10,000 items < 1 s.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import anyio

from asyncproc_kit import ProcessError, Timeline, map_limited
from asyncproc_kit.cases.batch import part_path, process_files

from ._util import Spec, Table, Targets, measure, measure_all, repeats, timed_anyio

COUNT = 1000
RESUME_COUNT = 10_000
WORKERS = 4
TOUCH = shutil.which("touch") or "/usr/bin/touch"
BACKENDS = ("asyncio", "trio")


def touch(source: Path, part: Path) -> list[str]:
    return [TOUCH, str(part)]


def make_inputs(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    inputs = []
    for number in range(count):
        path = folder / f"in{number:05d}.txt"
        path.write_text(str(number))
        inputs.append(path)
    return inputs


class Workspace:
    """A fresh output folder per run, so every variant does the whole work every time."""

    def __init__(self, root: Path, count: int):
        self.root = root
        self.inputs = make_inputs(root / "in", count)
        self.runs = 0

    def out(self) -> Path:
        self.runs += 1
        return self.root / f"out{self.runs}"


async def with_map_limited(space: Workspace) -> int:
    out = space.out()
    out.mkdir()
    commands = [touch(p, part_path(out / f"{p.stem}.dat")) for p in space.inputs]
    results = await map_limited(commands, limit=WORKERS)
    return sum(not isinstance(r, ProcessError) for r in results)


async def with_process_files(space: Workspace, journal: bool) -> int:
    out = space.out()
    report = await process_files(space.inputs, touch, output_for=lambda p: out / f"{p.stem}.dat",
                                 workers=WORKERS,
                                 journal=out / "journal.jsonl" if journal else None)
    return report.counts["ok"]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        space = Workspace(Path(tmp), COUNT)
        specs = []
        for backend in BACKENDS:
            specs += [
                Spec(f"map_limited [{backend}]",
                     lambda b=backend: timed_anyio(lambda: with_map_limited(space), b),
                     COUNT, COUNT),
                Spec(f"process_files, no journal [{backend}]",
                     lambda b=backend: timed_anyio(lambda: with_process_files(space, False),
                                                   b), COUNT, COUNT),
                Spec(f"process_files, journal [{backend}]",
                     lambda b=backend: timed_anyio(lambda: with_process_files(space, True),
                                                   b), COUNT, COUNT),
            ]
        results = {m.name: m for m in measure_all(specs, rounds=repeats(3))}
        targets = Targets()
        for backend in BACKENDS:
            table = Table(f"{COUNT} x touch PART, {WORKERS} at once [{backend}] "
                          "(items/s, higher is better)", "items/s",
                          baseline=f"map_limited [{backend}]")
            for name in (f"map_limited [{backend}]", f"process_files, no journal [{backend}]",
                         f"process_files, journal [{backend}]"):
                table.add(results[name])
            table.print()
            base = results[f"map_limited [{backend}]"].rate
            targets.ratio(f"process_files without journal vs map_limited [{backend}]",
                          results[f"process_files, no journal [{backend}]"].rate, base, 0.95)
            targets.ratio(f"process_files with journal vs map_limited [{backend}]",
                          results[f"process_files, journal [{backend}]"].rate, base, 0.8)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"\n(setting up the resume: {RESUME_COUNT:,} items run once with a journal)",
              file=sys.stderr, flush=True)
        inputs = make_inputs(root / "in", RESUME_COUNT)
        journal = root / "journal.jsonl"

        def output(p: Path) -> Path:
            return root / "out" / f"{p.stem}.dat"

        first = anyio.run(lambda: process_files(inputs, touch, output_for=output,
                                                journal=journal, workers=WORKERS))
        assert first.counts["ok"] == RESUME_COUNT, first

        async def resume() -> tuple[int, int]:
            timeline = Timeline()
            report = await process_files(inputs, touch, output_for=output, journal=journal,
                                         workers=WORKERS, timeline=timeline)
            return report.counts["skipped"], len(timeline)

        table = Table(f"resume of {RESUME_COUNT:,} journaled items, all done (seconds, "
                      "smaller is better)", "s")
        for backend in BACKENDS:
            m = table.add(measure(f"resume [{backend}]",
                                  lambda b=backend: timed_anyio(resume, b),
                                  work=RESUME_COUNT, expect=(RESUME_COUNT, 0),
                                  repeat=repeats(3), note="0 spawned"))
            targets.at_most(f"resume of {RESUME_COUNT:,} items [{backend}]", m.seconds, 1.0)
        table.print()
    targets.print()


if __name__ == "__main__":
    main()
