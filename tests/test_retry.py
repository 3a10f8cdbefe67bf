"""Retries on top of stamina: only chosen failures, never a missing command, within a budget.

stamina's testing mode is on for every test (no backoff waits), capped so that each test's
own ``attempts=`` still applies.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import stamina
from helpers import nothing_left_behind  # noqa: F401

from asyncproc_kit import (
    ProcessFailed,
    ProcessTimeout,
    RetryPolicy,
    SpawnError,
    Timeline,
    retry_if,
    retry_process,
    run,
    run_with_retries,
)
from asyncproc_kit._retry import RetryEvent
from asyncproc_kit.testing import SLEEP, python

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


def fails_then_succeeds(counter: Path, failures: int, *, code: int = 3, stderr: str = "",
                        sleep: float = 0.0) -> list[str]:
    """A command that counts its runs in ``counter`` and fails its first ``failures`` runs."""
    return python(f"""
        import pathlib, sys, time
        p = pathlib.Path({str(counter)!r})
        n = int(p.read_text()) if p.exists() else 0
        p.write_text(str(n + 1))
        time.sleep({sleep!r})
        if n < {failures}:
            sys.stderr.write({stderr!r})
            sys.exit({code})
        print("ok after", n + 1)
    """)


def runs(counter: Path) -> int:
    return int(counter.read_text()) if counter.exists() else 0


@pytest.mark.parametrize("k", [0, 1, 3])
async def test_exactly_k_retries_for_a_command_that_fails_k_times(tmp_path: Path, k: int) -> None:
    """A command failing k times with a listed code runs k + 1 times and then succeeds."""
    counter = tmp_path / "runs"
    events: list[RetryEvent] = []
    timeline = Timeline()
    result = await run_with_retries(fails_then_succeeds(counter, k), on_exit_codes={3},
                                    attempts=10, on_retry=events.append, timeline=timeline,
                                    label="flaky")
    assert result.returncode == 0
    assert result.stdout == f"ok after {k + 1}\n"
    assert runs(counter) == k + 1
    assert [e.attempt for e in events] == list(range(2, k + 2))
    assert all(e.error.returncode == 3 for e in events)
    assert [s.label for s in timeline.spans] == [f"flaky #{n}" for n in range(1, k + 2)]
    assert [name for _, name in timeline.marks] == [f"retry {n}: flaky" for n in range(1, k + 1)]


async def test_gives_up_after_attempts_with_the_last_error(tmp_path: Path) -> None:
    """attempts=4 means 4 runs in all; then the last ProcessFailed comes out."""
    counter = tmp_path / "runs"
    with pytest.raises(ProcessFailed) as caught:
        await run_with_retries(fails_then_succeeds(counter, 99), on_exit_codes={3}, attempts=4)
    assert caught.value.returncode == 3
    assert runs(counter) == 4


async def test_no_retry_for_a_missing_command(spawns: list[list[str]]) -> None:
    """'command not found' is never retried, whatever the policy says."""
    events: list[RetryEvent] = []
    with pytest.raises(SpawnError, match="no-such-program-here"):
        await run_with_retries(["no-such-program-here"], on_exit_codes={1, 2, 126, 127},
                               on_stderr=".*", on_timeout=True, attempts=5,
                               on_retry=events.append)
    assert len(spawns) == 1
    assert events == []


async def test_no_retry_for_an_exit_code_not_listed(tmp_path: Path) -> None:
    """A failure that is not worth retrying is raised after one run."""
    counter = tmp_path / "runs"
    with pytest.raises(ProcessFailed) as caught:
        await run_with_retries(fails_then_succeeds(counter, 5, code=2), on_exit_codes={3},
                               attempts=5)
    assert caught.value.returncode == 2
    assert runs(counter) == 1


async def test_retry_on_a_stderr_pattern(tmp_path: Path) -> None:
    """on_stderr retries failures whose stderr matches, and only those."""
    counter = tmp_path / "runs"
    cmd = fails_then_succeeds(counter, 2, code=1, stderr="ssh: Connection refused\n")
    result = await run_with_retries(cmd, on_stderr=r"Connection (refused|reset)", attempts=5)
    assert result.returncode == 0
    assert runs(counter) == 3
    other = tmp_path / "other"
    with pytest.raises(ProcessFailed):
        await run_with_retries(fails_then_succeeds(other, 2, code=1, stderr="Permission denied"),
                               on_stderr=r"Connection (refused|reset)", attempts=5)
    assert runs(other) == 1


async def test_total_budget_is_respected(tmp_path: Path) -> None:
    """timeout= bounds all attempts together: the attempt running at the deadline is cut."""
    counter = tmp_path / "runs"
    begun = time.monotonic()
    with pytest.raises(ProcessTimeout) as caught:
        await run_with_retries(fails_then_succeeds(counter, 99, sleep=0.6), on_exit_codes={3},
                               attempts=50, timeout=1.0, grace=0.5)
    took = time.monotonic() - begun
    assert took <= 1.0 + 0.5 + 0.5
    assert 1 <= runs(counter) <= 2
    assert caught.value.limit == "the retry budget, timeout=1 s for all attempts"
    assert "the retry budget" in str(caught.value)


async def test_attempt_timeout_is_retried_only_when_asked(tmp_path: Path) -> None:
    """A per-attempt timeout is retried with on_timeout=True; otherwise it is raised at once."""
    counter = tmp_path / "runs"
    slow_once = python(f"""
        import pathlib, time
        p = pathlib.Path({str(tmp_path / "runs")!r})
        n = int(p.read_text()) if p.exists() else 0
        p.write_text(str(n + 1))
        if n == 0:
            print("stuck", flush=True)
            time.sleep(60)
    """)
    with pytest.raises(ProcessTimeout) as caught:
        await run_with_retries(slow_once, on_exit_codes={3}, attempt_timeout=0.5, grace=0.5)
    assert caught.value.limit == "attempt_timeout=0.5 s"
    assert caught.value.stdout == "stuck\n"
    assert runs(counter) == 1
    counter.unlink()
    result = await run_with_retries(slow_once, on_timeout=True, attempt_timeout=0.5, grace=0.5)
    assert result.returncode == 0
    assert runs(counter) == 2


async def test_hold_is_released_while_waiting_to_retry(tmp_path: Path) -> None:
    """hold= is held during each attempt only: a pool slot is free during every backoff."""
    limiter = anyio.CapacityLimiter(1)
    held_during_retry: list[float] = []
    await run_with_retries(fails_then_succeeds(tmp_path / "a", 2), on_exit_codes={3},
                           hold=limiter,
                           on_retry=lambda e: held_during_retry.append(limiter.borrowed_tokens))
    assert held_during_retry == [0, 0]

    log: list[str] = []

    class Slot:
        async def __aenter__(self) -> None:
            log.append("take")

        async def __aexit__(self, *exc: object) -> None:
            log.append("give back")

    await run_with_retries(fails_then_succeeds(tmp_path / "b", 2), on_exit_codes={3},
                           hold=Slot, on_retry=lambda e: log.append("backoff"))
    assert log == ["take", "give back", "backoff"] * 2 + ["take", "give back"]


async def test_cancelling_the_caller_ends_the_attempt_and_retries_nothing(
        tmp_path: Path) -> None:
    """A cancelled caller: the running attempt's process is ended, no further attempt runs."""
    counter = tmp_path / "runs"
    with anyio.move_on_after(0.5) as scope:
        await run_with_retries(fails_then_succeeds(counter, 0, sleep=60), on_timeout=True,
                               on_exit_codes={-15, -9}, attempts=5, grace=0.5)
    assert scope.cancelled_caught
    assert runs(counter) == 1


async def test_retry_if_with_stamina_and_the_retry_process_decorator(tmp_path: Path) -> None:
    """retry_if() is a predicate for stamina.retry; retry_process() decorates the same way."""
    first, second = tmp_path / "a", tmp_path / "b"

    @stamina.retry(on=retry_if(exit_codes={75}), attempts=3)
    async def with_stamina() -> str:
        return (await run(fails_then_succeeds(first, 2, code=75))).stdout

    @retry_process(on_exit_codes={75}, attempts=3)
    async def with_kit() -> str:
        return (await run(fails_then_succeeds(second, 2, code=75))).stdout

    assert await with_stamina() == "ok after 3\n"
    assert await with_kit() == "ok after 3\n"
    assert runs(first) == runs(second) == 3


async def test_policy_is_reusable_and_validated() -> None:
    """A RetryPolicy runs many commands; a policy that retries nothing is refused."""
    policy = RetryPolicy(on_exit_codes={3}, attempts=2)
    assert (await policy.run(SLEEP(0))).returncode == 0
    assert policy.should_retry(ProcessTimeout(["x"], 1.0)) is False
    assert repr(retry_if(exit_codes={75, 3}, stderr="refused")) == \
        "retry_if(exit_codes=[3, 75], stderr='refused')"
    with pytest.raises(ValueError, match="say which failures are worth retrying"):
        RetryPolicy()
    with pytest.raises(ValueError, match="exit code 0"):
        retry_if(exit_codes={0})
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(on_exit_codes={3}, attempts=0)
    with pytest.raises(TypeError, match="check= is set by the policy"):
        await policy.run(SLEEP(0), check=False)


async def test_giving_up_is_explained_in_a_note(tmp_path: Path) -> None:
    """The last error says why retrying stopped: attempts used up, or the budget spent."""
    with pytest.raises(ProcessFailed) as caught:
        await run_with_retries(fails_then_succeeds(tmp_path / "a", 99), on_exit_codes={3},
                               attempts=3, timeout=None)
    assert caught.value.__notes__ == ["gave up after 3 attempts (stamina's testing mode)"]
    with stamina.set_testing(False), pytest.raises(ProcessFailed) as caught:
        await run_with_retries(fails_then_succeeds(tmp_path / "c", 99), on_exit_codes={3},
                               attempts=2, timeout=None, wait_initial=0, wait_jitter=0)
    assert caught.value.__notes__ == ["gave up after 2 attempts (attempts=2, no budget)"]
    with pytest.raises(ProcessFailed) as caught:
        await run_with_retries(fails_then_succeeds(tmp_path / "b", 2, code=2),
                               on_exit_codes={3})
    assert not hasattr(caught.value, "__notes__")  # not retryable: nothing was given up


async def test_budget_spent_between_attempts_is_explained(tmp_path: Path) -> None:
    """A budget that runs out while waiting for a slot ends with the last error and a note."""
    counter = tmp_path / "runs"
    entered = 0

    class BusyPool:
        """A slot that is free at once the first time and takes 1.1 s the second time."""

        async def __aenter__(self) -> None:
            nonlocal entered
            entered += 1
            if entered > 1:
                await anyio.sleep(1.1)

        async def __aexit__(self, *exc: object) -> None:
            pass

    with pytest.raises(ProcessFailed) as caught:
        await run_with_retries(fails_then_succeeds(counter, 99), on_exit_codes={3},
                               attempts=50, timeout=1.0, hold=BusyPool)
    assert runs(counter) == 1
    assert caught.value.__notes__ == [
        "gave up: the retry budget, timeout=1 s, ran out after 1 attempts"]
    with pytest.raises(ProcessTimeout, match="spent waiting for a slot"):
        await run_with_retries(SLEEP(0), on_exit_codes={3}, timeout=0.2,
                               hold=_slow_slot(0.3))


def _slow_slot(seconds: float):
    """An async context manager that takes ``seconds`` to enter."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def slot():
        await anyio.sleep(seconds)
        yield

    return slot
