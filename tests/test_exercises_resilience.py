"""The checks of notebooks 06-08 accept right answers and explain wrong ones."""

from __future__ import annotations

import signal
import subprocess

import anyio
import pytest
from helpers import nothing_left_behind  # noqa: F401

from asyncproc_kit import (
    CircuitOpenError,
    ProcessFailed,
    ProcessGroup,
    ProcessTimeout,
    SpawnError,
    run,
    run_with_retries,
    terminate,
)
from asyncproc_kit.exercises import (
    _nb06,
    check_breaker_class,
    check_cancel_all,
    check_drive,
    check_partial_output,
    check_resilient,
    check_worth_retrying,
)
from asyncproc_kit.exercises._nb06 import leftovers

pytestmark = pytest.mark.anyio


@pytest.fixture
def marker(monkeypatch: pytest.MonkeyPatch) -> str:
    """The marker the next 06 check puts in its children's command lines."""
    chosen = _nb06.new_marker()
    monkeypatch.setattr(_nb06, "new_marker", lambda: chosen)
    return chosen


# -- 06.1 keep the partial output -----------------------------------------------------------


async def test_partial_output_right_answer() -> None:
    """Catching ProcessTimeout and returning its stdout passes."""
    async def run_or_partial(cmd, seconds):
        try:
            return (await run(cmd, timeout=seconds)).stdout
        except ProcessTimeout as exc:
            return exc.stdout

    result = await check_partial_output(run_or_partial)
    assert result.passed, result


async def test_partial_output_blocking_subprocess_run_freezes_the_loop() -> None:
    """subprocess.run(timeout=) gives the right text but freezes the event loop: rejected."""
    import subprocess

    async def run_or_partial(cmd, seconds):
        try:
            return subprocess.run(cmd, capture_output=True, text=True,  # noqa: ASYNC221
                                  timeout=seconds).stdout
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout or b""
            return out.decode() if isinstance(out, bytes) else out

    result = await check_partial_output(run_or_partial)
    assert not result.passed
    assert "event loop froze" in result.message
    assert "subprocess.run" in result.hint


async def test_partial_output_with_check_false_and_a_fallback_passes() -> None:
    """Written differently: check=False, the error's stdout with an `or` fallback."""
    async def run_or_partial(cmd, seconds):
        output = ""
        try:
            output = (await run(cmd, timeout=seconds, check=False)).stdout
        except ProcessTimeout as exc:
            output = exc.stdout or ""
        return output

    result = await check_partial_output(run_or_partial)
    assert result.passed, result


async def test_partial_output_escaping_timeout_is_explained() -> None:
    """Letting the ProcessTimeout escape fails with a hint about exc.stdout."""
    async def run_or_partial(cmd, seconds):
        return (await run(cmd, timeout=seconds)).stdout

    result = await check_partial_output(run_or_partial)
    assert not result.passed
    assert "escaped" in result.message
    assert ".stdout" in result.hint


async def test_partial_output_lost_output_is_explained() -> None:
    """Returning nothing on a timeout fails."""
    async def run_or_partial(cmd, seconds):
        try:
            return (await run(cmd, timeout=seconds)).stdout
        except ProcessTimeout:
            return ""

    result = await check_partial_output(run_or_partial)
    assert not result.passed
    assert "exc.stdout" in result.hint


async def test_partial_output_leaving_the_child_running_is_caught(marker: str) -> None:
    """A plain subprocess abandoned at the deadline leaves the child running: caught, cleaned."""
    abandoned: list[subprocess.Popen[str]] = []

    async def run_or_partial(cmd, seconds):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
        abandoned.append(proc)
        with anyio.move_on_after(seconds):
            while proc.poll() is None:  # noqa: ASYNC110
                await anyio.sleep(0.05)
            return proc.stdout.read()
        return "step 0 done\n"  # gives up on the child and forgets it

    result = await check_partial_output(run_or_partial)
    assert not result.passed
    assert "still running" in result.message
    assert leftovers(marker) == []
    for proc in abandoned:  # the check killed it; reap it and close its pipe
        proc.wait()
        proc.stdout.close()


# -- 06.2 cancel a whole group --------------------------------------------------------------


async def test_cancel_all_right_answer() -> None:
    """ProcessGroup + cancel(grace=) passes."""
    async def cancel_all(cmds, after, grace):
        async with ProcessGroup() as group:
            for cmd in cmds:
                group.start(cmd)
            await anyio.sleep(after)
            return [r.how for r in await group.cancel(grace=grace)]

    result = await check_cancel_all(cancel_all)
    assert result.passed, result


async def test_cancel_all_one_after_another_is_too_slow() -> None:
    """Terminating members one at a time is right but slow, and the check says so."""
    async def cancel_all(cmds, after, grace):
        async with ProcessGroup() as group:
            members = [group.start(cmd) for cmd in cmds]
            await anyio.sleep(after)
            return [(await terminate(m, grace=grace)).how for m in members]

    result = await check_cancel_all(cancel_all)
    assert not result.passed
    assert "one child after another" in result.message


async def test_cancel_all_grace_on_the_group_passes() -> None:
    """Written differently: the grace given to ProcessGroup(grace=), reports read after."""
    async def cancel_all(cmds, after, grace):
        async with ProcessGroup(grace=grace) as group:
            for cmd in cmds:
                group.start(cmd)
            await anyio.sleep(after)
            await group.cancel()
        return [report.how for report in group.reports]

    result = await check_cancel_all(cancel_all)
    assert result.passed, result


async def test_cancel_all_without_grace_names_the_default_grace() -> None:
    """cancel() without grace= waits the default grace: the hint says pass grace=."""
    async def cancel_all(cmds, after, grace):
        async with ProcessGroup() as group:
            for cmd in cmds:
                group.start(cmd)
            await anyio.sleep(after)
            return [r.how for r in await group.cancel()]

    result = await check_cancel_all(cancel_all)
    assert not result.passed
    assert "default grace" in result.message
    assert "grace=grace" in result.hint


async def test_cancel_all_killing_only_the_pid_leaves_grandchildren(marker: str) -> None:
    """Killing each pid (the original's child.kill()) leaves grandchildren: caught, cleaned."""
    async def cancel_all(cmds, after, grace):
        procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL) for cmd in cmds]  # noqa: ASYNC220
        await anyio.sleep(after)
        hows = []
        for proc in procs:
            if proc.poll() is not None:
                hows.append("exited")
                continue
            proc.send_signal(signal.SIGTERM)
            with anyio.move_on_after(grace):
                while proc.poll() is None:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            if proc.poll() is None:
                proc.kill()
                hows.append("SIGKILL")
            else:
                hows.append("SIGTERM")
            proc.wait()
        return hows

    result = await check_cancel_all(cancel_all)
    assert not result.passed
    assert "survived" in result.message
    assert leftovers(marker) == []


# -- 07.1 which failures are worth retrying ---------------------------------------------------


async def test_worth_retrying_right_answer() -> None:
    """Exit 75 or 'temporarily unavailable' in stderr, nothing else: passes."""
    def worth_retrying(exc):
        return isinstance(exc, ProcessFailed) and (
            exc.returncode == 75 or "temporarily unavailable" in exc.stderr)

    result = await check_worth_retrying(worth_retrying)
    assert result.passed, result


async def test_worth_retrying_everything_is_the_original_mistake() -> None:
    """Retrying every failure (the original) fails on 'command not found'... or earlier."""
    result = await check_worth_retrying(lambda exc: True)
    assert not result.passed
    assert "expected False" in result.message


async def test_worth_retrying_reading_returncode_of_spawn_error_is_explained() -> None:
    """A predicate that assumes every error has a returncode gets a hint to check the type."""
    def worth_retrying(exc):
        return exc.returncode == 75 or "temporarily unavailable" in exc.stderr

    result = await check_worth_retrying(worth_retrying)
    assert not result.passed
    assert "isinstance" in result.hint


async def test_worth_retrying_async_function_is_refused() -> None:
    """The predicate must be a plain function."""
    async def worth_retrying(exc):
        return False

    result = await check_worth_retrying(worth_retrying)
    assert not result.passed
    assert "not async" in result.message


# -- 07.2 a resilient runner --------------------------------------------------------------------


async def test_resilient_right_answer_with_the_kit() -> None:
    """run_with_retries(on_exit_codes={75}, attempts=4) passes."""
    async def resilient(cmd):
        return await run_with_retries(cmd, on_exit_codes={75}, attempts=4)

    result = await check_resilient(resilient)
    assert result.passed, result


async def test_resilient_right_answer_by_hand() -> None:
    """A hand-written loop with the same rules passes too."""
    async def resilient(cmd):
        for attempt in range(4):
            try:
                return await run(cmd)
            except ProcessFailed as exc:
                if exc.returncode != 75 or attempt == 3:
                    raise
                await anyio.sleep(0.01 * 2 ** attempt)

    result = await check_resilient(resilient)
    assert result.passed, result


async def test_resilient_retrying_a_missing_command_is_caught() -> None:
    """The original's loop retries SpawnError too: caught."""
    async def resilient(cmd):
        for attempt in range(4):
            try:
                return await run(cmd)
            except (ProcessFailed, SpawnError) as exc:
                if getattr(exc, "returncode", 75) != 75 or attempt == 3:
                    raise

    result = await check_resilient(resilient)
    assert not result.passed
    assert "missing command was tried 4 time(s)" in result.message


async def test_resilient_retrying_every_exit_code_is_caught() -> None:
    """Retrying exit code 1 as well fails."""
    async def resilient(cmd):
        return await run_with_retries(cmd, on_exit_codes={1, 75}, attempts=4)

    result = await check_resilient(resilient)
    assert not result.passed
    assert "exiting 1 ran 4 time(s)" in result.message


# -- 08.1 drive a breaker -------------------------------------------------------------------------


async def test_drive_right_answer() -> None:
    """Two failures, advance 5 s, one success: passes."""
    async def drive(breaker, clock, failing, working):
        for _ in range(2):
            try:
                await breaker.call(run, failing)
            except ProcessFailed:
                pass
        clock.advance(5)
        await breaker.call(run, working)

    result = await check_drive(drive)
    assert result.passed, result


async def test_drive_without_moving_the_clock_is_explained() -> None:
    """Probing before the reset timeout is refused: the hint says to advance the clock."""
    async def drive(breaker, clock, failing, working):
        for _ in range(2):
            try:
                await breaker.call(run, failing)
            except ProcessFailed:
                pass
        await breaker.call(run, working)

    result = await check_drive(drive)
    assert not result.passed
    assert "Advance the clock" in result.hint


async def test_drive_with_reset_by_hand_is_refused() -> None:
    """reset() is not driving it."""
    async def drive(breaker, clock, failing, working):
        breaker.trip()
        clock.advance(5)
        breaker.reset()

    result = await check_drive(drive)
    assert not result.passed
    assert "by hand" not in result.hint
    assert "trip() or reset()" in result.message


async def test_drive_a_third_failure_is_named() -> None:
    """Failing three times: the third is refused; the hint says stop at the threshold,
    not merely "advance the clock"."""
    async def drive(breaker, clock, failing, working):
        for _ in range(3):
            try:
                await breaker.call(run, failing)
            except ProcessFailed:
                pass
        clock.advance(5)
        await breaker.call(run, working)

    result = await check_drive(drive)
    assert not result.passed
    assert "third failing call was refused" in result.message
    assert "Stop after 2 failures" in result.hint


# -- 08.2 a breaker with a half-open state ---------------------------------------------------


class GoodBreaker:
    failure_types: type[BaseException] = Exception

    def __init__(self, threshold, reset_timeout, clock):
        self.threshold, self.reset_timeout, self.clock = threshold, reset_timeout, clock
        self.state, self.failures, self.opened_at, self.probing = "closed", 0, 0.0, False

    async def call(self, fn):
        if self.state == "open" and self.clock() >= self.opened_at + self.reset_timeout:
            self.state = "half-open"
        if self.state == "open" or (self.state == "half-open" and self.probing):
            raise CircuitOpenError("mine", 1.0)
        probe = self.probing = self.state == "half-open"
        try:
            result = await fn()
        except self.failure_types:
            self.failures += 1
            if probe or self.failures >= self.threshold:
                self.state, self.opened_at = "open", self.clock()
            raise
        finally:
            if probe:
                self.probing = False
        self.state, self.failures = "closed", 0
        return result


class NoHalfOpen(GoodBreaker):
    """The original: once the timeout passes, everyone goes through."""

    async def call(self, fn):
        if self.failures >= self.threshold and \
                self.clock() < self.opened_at + self.reset_timeout:
            raise CircuitOpenError("original", 1.0)
        try:
            result = await fn()
        except Exception:
            self.failures += 1
            self.opened_at = self.clock()
            raise
        self.failures = 0
        return result


class CountsCancellation(GoodBreaker):
    """`except BaseException:` counts a cancelled call as a failure."""

    failure_types = BaseException


class StuckProbe(GoodBreaker):
    """Clears the probe flag on success and on failure, but not when the probe is cancelled."""

    async def call(self, fn):
        if self.state == "open" and self.clock() >= self.opened_at + self.reset_timeout:
            self.state = "half-open"
        if self.state == "open" or (self.state == "half-open" and self.probing):
            raise CircuitOpenError("mine", 1.0)
        probe = self.probing = self.state == "half-open"
        try:
            result = await fn()
        except Exception:
            self.probing = False
            self.failures += 1
            if probe or self.failures >= self.threshold:
                self.state, self.opened_at = "open", self.clock()
            raise
        self.probing = False
        self.state, self.failures = "closed", 0
        return result


class NeverResets(GoodBreaker):
    """Counts every failure ever, not consecutive ones: a success does not reset the count."""

    async def call(self, fn):
        if self.state == "open" and self.clock() >= self.opened_at + self.reset_timeout:
            self.state = "half-open"
        if self.state == "open" or (self.state == "half-open" and self.probing):
            raise CircuitOpenError("mine", 1.0)
        probe = self.probing = self.state == "half-open"
        try:
            result = await fn()
        except Exception:
            self.failures += 1
            if probe or self.failures >= self.threshold:
                self.state, self.opened_at = "open", self.clock()
            raise
        finally:
            if probe:
                self.probing = False
        if probe:
            self.failures = 0
        self.state = "closed"
        return result


class ReopensOnCancelledProbe(GoodBreaker):
    """Treats a cancelled probe as a failed one (`except BaseException` for the probe)."""

    async def call(self, fn):
        if self.state == "open" and self.clock() >= self.opened_at + self.reset_timeout:
            self.state = "half-open"
        if self.state == "open" or (self.state == "half-open" and self.probing):
            raise CircuitOpenError("mine", 1.0)
        probe = self.probing = self.state == "half-open"
        try:
            result = await fn()
        except BaseException as exc:
            if probe or isinstance(exc, Exception):
                self.failures += 1
                if probe or self.failures >= self.threshold:
                    self.state, self.opened_at = "open", self.clock()
            raise
        finally:
            if probe:
                self.probing = False
        self.state, self.failures = "closed", 0
        return result


class DeadlineBreaker:
    """Written differently: no state names, an `open_until` deadline and a probe token."""

    def __init__(self, threshold, reset_timeout, clock):
        self.threshold, self.reset_timeout, self.clock = threshold, reset_timeout, clock
        self.streak = 0
        self.open_until: float | None = None
        self.probe: object | None = None

    async def call(self, fn):
        token = None
        if self.open_until is not None:
            if self.clock() < self.open_until or self.probe is not None:
                raise CircuitOpenError("deadline", max(0.0, self.open_until - self.clock()))
            token = self.probe = object()
        try:
            value = await fn()
        except Exception:
            self.streak += 1
            if token is not None or self.streak >= self.threshold:
                self.open_until = self.clock() + self.reset_timeout
            raise
        else:
            self.streak, self.open_until = 0, None
            return value
        finally:
            if token is not None and self.probe is token:
                self.probe = None


async def test_breaker_class_right_answer() -> None:
    """A breaker with closed/open/half-open and one probe passes."""
    result = await check_breaker_class(GoodBreaker)
    assert result.passed, result


async def test_breaker_class_without_half_open_is_a_stampede() -> None:
    """The original's design lets all 20 callers through after the timeout."""
    result = await check_breaker_class(NoHalfOpen)
    assert not result.passed
    assert "20 of 20 concurrent callers ran" in result.message


async def test_breaker_class_counting_cancellation_is_caught() -> None:
    """Counting a cancelled call as a failure is caught."""
    result = await check_breaker_class(CountsCancellation)
    assert not result.passed
    assert "cancelled calls opened it" in result.message


async def test_breaker_class_written_differently_passes() -> None:
    """A deadline-and-token breaker with no state names is accepted."""
    result = await check_breaker_class(DeadlineBreaker)
    assert result.passed, result


async def test_breaker_class_stuck_probe_flag_is_caught() -> None:
    """A probe flag not cleared after a cancelled probe refuses every later call."""
    result = await check_breaker_class(StuckProbe)
    assert not result.passed
    assert "cancelled probe every later call was refused" in result.message
    assert "finally" in result.hint


async def test_breaker_class_never_resetting_the_count_is_caught() -> None:
    """fail, fail, success, fail, fail must not open a threshold-3 breaker."""
    result = await check_breaker_class(NeverResets)
    assert not result.passed
    assert "consecutive" in result.message
    assert "success resets the failure count" in result.hint


async def test_breaker_class_cancelled_probe_as_failure_is_caught() -> None:
    """Reopening on a cancelled probe is told apart from a stuck flag."""
    result = await check_breaker_class(ReopensOnCancelledProbe)
    assert not result.passed
    assert "cancelled probe reopened" in result.message
    assert "Cancellation is not a failure" in result.hint


async def test_breaker_class_stub_raises_not_implemented() -> None:
    """The notebook's stub is 'not written yet', not a wrong answer."""
    class Stub:
        def __init__(self, threshold, reset_timeout, clock):
            pass

        async def call(self, fn):
            raise NotImplementedError

    with pytest.raises(NotImplementedError):
        await check_breaker_class(Stub)
