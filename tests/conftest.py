"""Shared fixtures: every async test runs on asyncio and on trio; `spawns` counts spawns."""

from __future__ import annotations

import pytest

from asyncproc_kit import _process


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
