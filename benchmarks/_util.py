"""Timing, medians, tables and target lines shared by every ``bench_*`` module.

A benchmark is a set of *variants* doing the same work; each variant is a function that
returns ``(seconds, check)``: the time it measured around the work only (no interpreter or
event-loop start-up) and a value proving the work was done (e.g. lines and bytes counted).
:func:`measure_all` runs the variants round-robin several times (:func:`measure` runs one),
checks every run gave the expected value and keeps each variant's samples; tables report the
median.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

Variant = Callable[[], "tuple[float, Any]"]


def repeats(default: int) -> int:
    """How many repetitions to take; ``BENCH_REPEAT=N`` overrides every default."""
    value = os.environ.get("BENCH_REPEAT")
    return max(1, int(value)) if value else default


def timed_sync(work: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``work()`` and return ``(seconds, its result)``."""
    begun = time.perf_counter()
    result = work()
    return time.perf_counter() - begun, result


def timed_anyio(work: Callable[[], Awaitable[Any]], backend: str) -> tuple[float, Any]:
    """Run ``await work()`` under ``anyio.run`` on ``backend``, timing only the work."""

    async def main() -> tuple[float, Any]:
        begun = time.perf_counter()
        result = await work()
        return time.perf_counter() - begun, result

    return anyio.run(main, backend=backend)


def timed_asyncio(work: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """Run ``await work()`` under plain ``asyncio.run``, timing only the work."""

    async def main() -> tuple[float, Any]:
        begun = time.perf_counter()
        result = await work()
        return time.perf_counter() - begun, result

    return asyncio.run(main())


@dataclass
class Measurement:
    name: str
    samples: list[float]
    work: float  # units of work per run (processes, lines): rate = work / seconds
    note: str = ""

    @property
    def seconds(self) -> float:
        return statistics.median(self.samples)

    @property
    def rate(self) -> float:
        return self.work / self.seconds


def measure_all(specs: list[Spec], *, rounds: int, warmup: bool = True) -> list[Measurement]:
    """Run every variant once per round, round after round, and keep each one's samples.

    Interleaving spreads a noisy machine's slow moments over all variants instead of
    punishing whichever ran at the wrong time. Every run must return the variant's
    ``expect`` value, so a variant that skips work fails loudly instead of looking fast.
    """
    samples: dict[str, list[float]] = {spec.name: [] for spec in specs}
    for number in range(rounds + (1 if warmup else 0)):
        for spec in specs:
            seconds, check = spec.variant()
            if spec.expect is not None and check != spec.expect:
                raise AssertionError(f"{spec.name}: did different work: got {check!r}, "
                                     f"expected {spec.expect!r}")
            if warmup and number == 0:
                continue
            samples[spec.name].append(seconds)
            print(f"  . round {number + (0 if warmup else 1)}/{rounds} {spec.name}: "
                  f"{_fmt_seconds(seconds)}", file=sys.stderr, flush=True)
    return [Measurement(spec.name, samples[spec.name], spec.work, spec.note) for spec in specs]


def measure(name: str, variant: Variant, *, work: float, expect: Any = None,
            repeat: int = 3, warmup: bool = False, note: str = "") -> Measurement:
    """One variant alone: ``repeat`` timed runs (after one untimed run if ``warmup``)."""
    return measure_all([Spec(name, variant, work, expect, note)], rounds=repeat,
                       warmup=warmup)[0]


@dataclass
class Spec:
    """One variant to measure: ``variant()`` returns ``(seconds, check)``."""

    name: str
    variant: Variant
    work: float
    expect: Any = None
    note: str = ""


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def fmt_rate(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:.2f} M"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f} k"
    return f"{rate:.0f}"


@dataclass
class Table:
    """Rows of measurements printed with their median, spread and ratio to a baseline."""

    title: str
    unit: str  # "processes/s", "lines/s" or "s" (wall time: smaller is better)
    baseline: str | None = None
    rows: list[Measurement] = field(default_factory=list)

    def add(self, m: Measurement) -> Measurement:
        self.rows.append(m)
        return m

    def get(self, name: str) -> Measurement:
        for m in self.rows:
            if m.name == name:
                return m
        raise KeyError(name)

    def print(self) -> None:
        width = max(len(m.name) for m in self.rows)
        base = self.get(self.baseline) if self.baseline else None
        print(f"\n{self.title}")
        if base is not None:
            print(f"  (ratio = speed relative to {base.name}; higher is faster)")
        head = f"  {'variant':<{width}}  {'median':>10}  {self.unit:>12}  {'min-max (s)':>15}"
        if base is not None:
            head += f"  {'ratio':>7}"
        print(head)
        for m in self.rows:
            lo, hi = min(m.samples), max(m.samples)
            rate = m.seconds if self.unit == "s" else m.rate
            shown = f"{rate:.2f}" if self.unit == "s" else fmt_rate(rate)
            line = (f"  {m.name:<{width}}  {_fmt_seconds(m.seconds):>10}  {shown:>12}  "
                    f"{lo:7.3f}-{hi:<7.3f}")
            if base is not None:
                ratio = (base.seconds / m.seconds)
                line += f"  {ratio:>6.2f}x"
            if m.note:
                line += f"  {m.note}"
            print(line)


@dataclass
class Targets:
    """PASS/MISS lines, collected across sections and printed together at the end."""

    lines: list[tuple[bool, str]] = field(default_factory=list)

    def ratio(self, what: str, value: float, reference: float, at_least: float,
              detail: str = "") -> bool:
        ratio = value / reference
        ok = ratio >= at_least
        self.lines.append((ok, f"{what}: {ratio:.2f}x (target >= {at_least:g}x){detail}"))
        return ok

    def at_most(self, what: str, value: float, limit: float, unit: str = "s") -> bool:
        ok = value <= limit
        self.lines.append((ok, f"{what}: {value:.3f} {unit} (target <= {limit:g} {unit})"))
        return ok

    def print(self) -> None:
        print("\nTargets")
        for ok, text in self.lines:
            print(f"  {'PASS' if ok else 'MISS'}  {text}")
