"""The checks of notebook 12 accept right answers and explain wrong ones."""

from __future__ import annotations

import subprocess

import anyio
import pytest
from helpers import nothing_left_behind  # noqa: F401

from asyncproc_kit import ProcessTimeout, SpawnError, run
from asyncproc_kit.cases.health import ServiceHealth
from asyncproc_kit.exercises import check_decider, check_probe

# -- 12.1 the decider -------------------------------------------------------------------------


class Decider:
    """The notebook's solution."""

    def __init__(self, failure_threshold, success_threshold):
        self.failure_threshold, self.success_threshold = failure_threshold, success_threshold
        self.status, self.failures, self.successes = "unknown", 0, 0

    def record(self, ok):
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.status != "up" and self.successes >= self.success_threshold:
                kind = "recovered" if self.status == "down" else "up"
                self.status = "up"
                return kind
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.status != "down" and self.failures >= self.failure_threshold:
                self.status = "down"
                return "down"
        return None


class TableDecider:
    """Right, written differently: one run counter and a transition table."""

    def __init__(self, failure_threshold, success_threshold):
        self.need = {True: success_threshold, False: failure_threshold}
        self.status, self.last, self.run = "unknown", None, 0

    def record(self, ok):
        self.run = self.run + 1 if ok == self.last else 1
        self.last = ok
        target = "up" if ok else "down"
        if self.run < self.need[ok] or self.status == target:
            return None
        kind = {("down", True): "recovered", ("unknown", True): "up"}.get((self.status, ok),
                                                                          "down")
        self.status = target
        return kind


class WrapsTheKit:
    """Right, by delegating to ServiceHealth."""

    def __init__(self, failure_threshold, success_threshold):
        self.health = ServiceHealth(failure_threshold=failure_threshold,
                                    success_threshold=success_threshold, clock=lambda: 0.0)

    @property
    def status(self):
        return self.health.status

    def record(self, ok):
        event = self.health.record(ok)
        return None if event is None else event.kind


class TheOriginal:
    """The tutorial's logic: DOWN on every failure past the threshold, recovered after any."""

    def __init__(self, failure_threshold, success_threshold):
        self.threshold, self.status, self.failures = failure_threshold, "unknown", 0

    def record(self, ok):
        if ok:
            had, self.failures = self.failures, 0
            if had:
                self.status = "up"
                return "recovered"
            return None
        self.failures += 1
        if self.failures >= self.threshold:
            self.status = "down"
            return "down"
        return None


class RepeatsDown(Decider):
    """Right thresholds, but says "down" on every failure while down."""

    def record(self, ok):
        kind = super().record(ok)
        if not ok and kind is None and self.status == "down":
            return "down"
        return kind


class FailuresNeverReset(Decider):
    """Counts failures in total, not in a row: a flapping service alerts."""

    def record(self, ok):
        if ok:
            failures = self.failures
            kind = super().record(ok)
            self.failures = failures
            return kind
        return super().record(ok)


class OneSuccessIsEnough(Decider):
    """Ignores success_threshold."""

    def __init__(self, failure_threshold, success_threshold):
        super().__init__(failure_threshold, 1)


class AlwaysUp(Decider):
    """Says "up" where it should say "recovered"."""

    def record(self, ok):
        kind = super().record(ok)
        return "up" if kind == "recovered" else kind


class NeverDown(Decider):
    """Never decides down (a threshold compared with > instead of >=)."""

    def record(self, ok):
        if not ok:
            self.failures, self.successes = self.failures + 1, 0
            if self.status != "down" and self.failures > self.failure_threshold:
                self.status = "down"
                return "down"
            return None
        return super().record(ok)


class ForgetsStatus(Decider):
    def record(self, ok):
        kind = super().record(ok)
        self.status = "unknown"
        return kind


class StartsAsNone(Decider):
    def __init__(self, failure_threshold, success_threshold):
        super().__init__(failure_threshold, success_threshold)
        self.status = None


class Crashes(Decider):
    def record(self, ok):
        raise KeyError("oops")


class NotWritten(Decider):
    def record(self, ok):
        raise NotImplementedError("count in a row")


@pytest.mark.parametrize("answer", [Decider, TableDecider, WrapsTheKit])
def test_decider_accepts_right_answers_written_differently(answer: type) -> None:
    """Three different right deciders pass, with the same fixed message."""
    result = check_decider(answer)
    assert result, str(result)
    assert str(result) == ("✅ 12.1 thresholds that alert exactly once: 55 results in 4 "
                           "scenarios: each transition announced once, flapping never alerts.")


@pytest.mark.parametrize(("answer", "message", "hint"), [
    (TheOriginal, "record() returned None, expected 'up'", "never announced a healthy"),
    (RepeatsDown, "returned 'down', expected None", "say 'down' once per outage"),
    (FailuresNeverReset, "returned 'down', expected None", "Count *consecutive* failures"),
    (OneSuccessIsEnough, "returned 'up', expected None", "One success is not enough"),
    (AlwaysUp, "returned 'up', expected 'recovered'", "'up' is only the first decision"),
    (NeverDown, "record() returned None, expected 'down'", "3 in a row reached the threshold"),
    (ForgetsStatus, "status is 'unknown', expected 'up'", "Set status"),
    (StartsAsNone, "a new one has status None", "Start as 'unknown'"),
    (Crashes, "record() raised KeyError", "traceback"),
    ("Decider", "expected a class", "Pass the class itself"),
])
def test_decider_rejects_wrong_answers_with_the_real_cause(answer, message: str,
                                                           hint: str) -> None:
    """Each wrong decider is named by what it did and gets a hint about its real bug."""
    result = check_decider(answer)
    assert result is not None
    assert not result
    assert message in result.message
    assert hint in result.hint


def test_the_original_repeating_down_is_caught_once_its_early_bug_is_fixed() -> None:
    """The original with success_threshold=1 scenarios still fails on its repeated DOWN."""

    class OriginalWithThresholds(TheOriginal):
        def __init__(self, failure_threshold, success_threshold):
            super().__init__(failure_threshold, success_threshold)
            self.inner = Decider(failure_threshold, success_threshold)

        def record(self, ok):
            kind = self.inner.record(ok)
            self.status = self.inner.status
            if kind is None and not ok and self.inner.status == "down":
                return "down"  # the original's repeated alert
            return kind

    result = check_decider(OriginalWithThresholds)
    assert not result
    assert "once per outage" in result.hint


def test_decider_lets_not_implemented_through() -> None:
    """The stub's NotImplementedError is not turned into a verdict."""
    with pytest.raises(NotImplementedError):
        check_decider(NotWritten)


# -- 12.2 the probe ---------------------------------------------------------------------------

async def probe(cmd, seconds):
    """The notebook's solution."""
    try:
        result = await run(cmd, timeout=seconds, check=False)
    except ProcessTimeout:
        return False, "timeout"
    except SpawnError as error:
        return False, f"cannot start: {error.reason}"
    return result.returncode == 0, f"exit {result.returncode}"


async def probe_with_a_scope(cmd, seconds):
    """Right, written differently: a cancel scope around run() (which then ends the group)."""
    with anyio.move_on_after(seconds) as scope:
        try:
            result = await run(cmd, check=False)
        except SpawnError:
            return False, "missing"
    if scope.cancelled_caught:
        return False, "timeout"
    return not result.returncode, "ok" if not result.returncode else "failed"


async def no_timeout(cmd, seconds):
    try:
        result = await run(cmd, check=False)
    except SpawnError:
        return False, "missing"
    return result.returncode == 0, "done"


async def checked(cmd, seconds):
    try:
        await run(cmd, timeout=seconds)
    except SpawnError:
        return False, "missing"
    return True, "ok"


async def spawn_error_escapes(cmd, seconds):
    result = await run(cmd, timeout=seconds, check=False)
    return result.returncode == 0, "done"


async def timeout_escapes(cmd, seconds):
    try:
        result = await run(cmd, timeout=seconds, check=False)
    except SpawnError:
        return False, "missing"
    return result.returncode == 0, "done"


async def wrong_reason(cmd, seconds):
    ok, reason = await probe(cmd, seconds)
    return ok, "timed out" if reason == "timeout" else reason


async def only_a_bool(cmd, seconds):
    ok, _ = await probe(cmd, seconds)
    return ok


async def inverted(cmd, seconds):
    ok, reason = await probe(cmd, seconds)
    return not ok, reason


async def kills_only_the_pid(cmd, seconds):
    """Times out correctly but kills only the direct child: its grandchild survives."""
    try:
        proc = await anyio.open_process(cmd, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return False, "missing"
    with anyio.move_on_after(seconds) as scope:
        code = await proc.wait()
    if scope.cancelled_caught:
        proc.kill()
        await proc.wait()
        return False, "timeout"
    return code == 0, "done"


def not_async(cmd, seconds):
    return True, "ok"


async def not_written(cmd, seconds):
    raise NotImplementedError("run it under the timeout")


@pytest.mark.anyio
@pytest.mark.parametrize("answer", [probe, probe_with_a_scope])
async def test_probe_accepts_right_answers_written_differently(answer) -> None:
    """Two right probes pass with the fixed message; nothing is left running."""
    result = await check_probe(answer)
    assert result, str(result)
    assert "a hung check is a timeout with nothing left running" in result.message


@pytest.mark.anyio
@pytest.mark.parametrize(("answer", "message", "hint"), [
    (no_timeout, "no answer after 7.5 s: the check hung", "Give run() the timeout"),
    (checked, "on a check that exits 1: ProcessFailed escaped", "check=False"),
    (spawn_error_escapes, "on a missing program: SpawnError escaped", "catch SpawnError"),
    (timeout_escapes, "on a hung check: ProcessTimeout escaped", "Catch ProcessTimeout"),
    (wrong_reason, "returned (False, 'timed out')", "(False, 'timeout')"),
    (only_a_bool, "returned True", "Return a pair"),
    (inverted, "returned ok=False", "exit code is 0"),
    (kills_only_the_pid, "1 of its processes were still running", "End the whole group"),
    (not_async, "not async", "async def"),
])
async def test_probe_rejects_wrong_answers_with_the_real_cause(answer, message: str,
                                                               hint: str) -> None:
    """Each wrong probe is named by what went wrong, with a hint at its real cause."""
    result = await check_probe(answer)
    assert result is not None
    assert not result
    assert message in result.message
    assert hint in result.hint


@pytest.mark.anyio
async def test_probe_lets_not_implemented_through() -> None:
    """The stub's NotImplementedError is not turned into a verdict."""
    with pytest.raises(NotImplementedError):
        await check_probe(not_written)
