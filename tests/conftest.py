"""Shared fixtures: every async test runs on asyncio and on trio; `spawns` counts spawns.

``ASYNCPROC_KIT_TEST_HIDE="pidfd_open waitid"`` removes those functions from ``os`` before
the kit is imported, so this machine stands in for one that lacks them (macOS with Python
3.11 or 3.12): the kit must then pick another way to watch exits, and nothing may call them.
"""

from __future__ import annotations

import os
import sys

import pytest

HIDE_VAR = "ASYNCPROC_KIT_TEST_HIDE"
HIDDEN = os.environ.get(HIDE_VAR, "").split()
if HIDDEN:
    assert "asyncproc_kit" not in sys.modules, f"{HIDE_VAR} must act before the kit is imported"
    for _name in HIDDEN:
        if hasattr(os, _name):
            delattr(os, _name)

from asyncproc_kit import _exit, _process  # noqa: E402 (after hiding, on purpose)


def pytest_report_header() -> str:
    hidden = f", hidden from os: {', '.join(HIDDEN)}" if HIDDEN else ""
    return (f"exit strategy: {_process.EXIT_STRATEGY.name} (available here: "
            f"{', '.join(_exit.available())}{hidden})")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def spawns(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every command run() tries to spawn, in order, whether or not it starts (spawn is
    wrapped, not replaced)."""
    tried: list[list[str]] = []
    real = _process.spawn

    def counting(cmd, **kwargs):
        tried.append(list(cmd))
        return real(cmd, **kwargs)

    monkeypatch.setattr("asyncproc_kit._run.spawn", counting)
    return tried
