# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Circuit breaker (§4.6)
#
# Retrying helps with a hiccup. When something is *down*, retrying from every caller makes
# it worse: each call waits for its own timeout, and the struggling service gets hammered.
# A circuit breaker notices the run of failures and stops calling for a while, then lets
# a single test call through to see whether it is back.
#
# You will be able to…
# - name the three states (closed, open, half-open) and drive a breaker through them with a
#   clock you move by hand;
# - guard a flaky command so that, while it is down, calls fail in microseconds and start
#   nothing;
# - see the original's missing half-open state as a stampede;
# - explain why a cancelled call is not a failure, and keep one breaker per command or host.

# %%
# %matplotlib inline
import anyio

from asyncproc_kit import (BreakerRegistry, CircuitBreaker, CircuitOpenError, ProcessFailed,
                           Timeline, exercises, plots, run, stopwatch)
from asyncproc_kit.testing import EXIT, SLEEP, python

# %% [markdown]
# ## The original (Rust, §4.6)
#
# ```rust
# async fn is_open(&self) -> bool {
#     let count = self.failure_count.load(Ordering::Relaxed);
#     if count >= self.threshold {
#         let last = self.last_failure.lock().await;
#         if let Some(time) = *last {
#             return time.elapsed() < self.timeout;
#         }
#     }
#     false
# }
#
# async fn execute<F, T>(&self, f: F) -> Result<T, String> where F: Future<Output = Result<T, String>> {
#     if self.is_open().await {
#         return Err("Circuit breaker is open".to_string());
#     }
#     match f.await {
#         Ok(result) => { self.record_success().await; Ok(result) }
#         Err(e)     => { self.record_failure().await; Err(e) }
#     }
# }
# ```
#
# Two states: open while the last failure is recent, closed otherwise. We will come back to
# what that misses.
#
# ## A clock you move by hand
#
# A breaker is about time: "30 s after it opened, try again". Waiting 30 s in a notebook (or
# a test) is no fun, so the kit's breaker takes a `clock`: any function that returns
# seconds. Ours moves only when we say so:

# %%
class HandClock:
    """Seconds that move only when you call advance()."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds

# %% [markdown]
# ## The three states
#
# A breaker for a backup command: three failures in a row open it; after 30 s it lets one
# probe through. `listeners=[print]` prints every change of state:

# %%
clock = HandClock()
breaker = CircuitBreaker("backup", failure_threshold=3, reset_timeout=30, clock=clock,
                         listeners=[print])
FAILS, WORKS = EXIT(1), EXIT(0)

# %% [markdown]
# A small helper runs a command through the breaker and says what happened:

# %%
async def attempt(cmd):
    try:
        await breaker.call(run, cmd)
        return "ran: ok"
    except ProcessFailed:
        return "ran: failed"
    except CircuitOpenError as error:
        return f"refused, a probe in {error.retry_after:.0f} more seconds"

# %% [markdown]
# **Closed**: calls go through. Three failures in a row, one second apart:

# %%
for _ in range(3):
    print(await attempt(FAILS))
    clock.advance(1)

# %% [markdown]
# **Open**: calls are refused at once, without starting anything. Ten seconds after it
# opened:

# %%
clock.advance(9)
print(await attempt(WORKS))

# %% [markdown]
# **Half-open**: once `reset_timeout` has passed, the next caller is the *probe*:

# %%
clock.advance(20)
breaker.state

# %% [markdown]
# A second later the probe runs and succeeds, so the breaker closes. (Had it failed, the
# breaker would open for another 30 s.) Then life goes on:

# %%
clock.advance(1)
print(await attempt(WORKS))
clock.advance(2)
print(await attempt(WORKS))

# %% [markdown]
# The whole story, drawn from the breaker's history (▬ state, ● ✕ | the calls):

# %%
plots.plot_breaker(breaker)

# %% [markdown]
# ## Failing fast
#
# While it is open, a refusal costs no process, no timeout, no waiting: it is a comparison
# of two numbers. A thousand refused calls, with a timeline counting what was started:

# %%
timeline = Timeline()
breaker.trip()                      # open it by hand, as an operator would
async with stopwatch() as sw:
    for _ in range(1000):
        try:
            await breaker.call(run, WORKS, timeline=timeline)
        except CircuitOpenError:
            pass
print(f"1000 refusals in {sw.elapsed * 1000:.1f} ms; processes started: {len(timeline.spans)}")
print("each under a millisecond:", sw.elapsed / 1000 < 0.001)

# %% [markdown]
# ## A flaky service
#
# Now a service that is down from t = 5 s to t = 20 s on our clock. We call it once per
# (hand-moved) second for 30 seconds, through a breaker that opens after 3 failures and
# probes every 5 s:

# %%
def service():
    """The command to run now: it fails while the service is down."""
    return EXIT(1) if 5 <= clock.now < 20 else EXIT(0)


clock = HandClock()
guarded = CircuitBreaker("service", failure_threshold=3, reset_timeout=5, clock=clock)
timeline = Timeline()

# %%
for second in range(30):
    try:
        await guarded.call(run, service(), timeline=timeline)
    except (ProcessFailed, CircuitOpenError):
        pass
    clock.advance(1)
print(f"30 calls, {len(timeline.spans)} processes started")

# %%
plots.plot_breaker(guarded)

# %% [markdown]
# Three failures open it at t = 7; every 5 s one probe tests the service (t = 12, 17), and
# the probe at t = 22, after the service came back at t = 20, closes it. The other calls
# while it was down were refused without starting a process.
#
# ## The original's missing half-open: a stampede
#
# Here is §4.6 translated line by line. There is no half-open state: once the timeout has
# passed, the breaker simply reads as closed again.

# %%
class OriginalBreaker:
    def __init__(self, threshold, timeout, clock):
        self.threshold, self.timeout, self.clock = threshold, timeout, clock
        self.failure_count, self.last_failure = 0, None

    async def is_open(self):
        if self.failure_count >= self.threshold and self.last_failure is not None:
            return self.clock() - self.last_failure < self.timeout
        return False

    async def execute(self, fn, *args, **kwargs):
        if await self.is_open():
            raise RuntimeError("Circuit breaker is open")
        try:
            result = await fn(*args, **kwargs)
        except Exception:
            self.failure_count += 1
            self.last_failure = self.clock()
            raise
        self.failure_count = 0
        return result

# %% [markdown]
# Twenty callers are waiting when the timeout passes, and the service is still down (each
# call takes 0.2 s to fail). The original lets all of them through at once:

# %%
STILL_DOWN = python("import sys, time; time.sleep(0.2); sys.exit(1)")


async def twenty_callers(call):
    timeline = Timeline()

    async def caller(i):
        try:
            await call(run, STILL_DOWN, timeline=timeline, label=f"caller {i}")
        except (ProcessFailed, CircuitOpenError, RuntimeError):
            pass

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(caller, i)
    return timeline

# %%
clock = HandClock()
original = OriginalBreaker(threshold=3, timeout=30, clock=clock)
original.failure_count, original.last_failure = 3, 0.0   # it has just opened
clock.advance(30)
stampede = await twenty_callers(original.execute)
print("original breaker, processes started:", len(stampede.spans))

# %% [markdown]
# The same moment with the kit's breaker: one probe, nineteen refusals.

# %%
clock = HandClock()
kit_breaker = CircuitBreaker("service", failure_threshold=3, reset_timeout=30, clock=clock)
kit_breaker.trip()
clock.advance(30)
probe = await twenty_callers(kit_breaker.call)
print("kit breaker, processes started:", len(probe.spans), "| state now:", kit_breaker.state)

# %%
plots.plot_timeline(stampede, title="the original after its timeout: 20 calls at once")

# %% [markdown]
# The stampede is exactly what a breaker is meant to prevent: the moment the service might
# be recovering, it gets the full load. The kit's breaker decides *who probes* without
# awaiting anything between the check and the decision, so concurrent callers cannot both
# see "half-open, nobody probing" and both go. The original checks `is_open().await`, then
# acts; everything between the two awaits is a window for another caller.
#
# ## Cancellation is not a failure
#
# A caller that gives up (a deadline, a user pressing stop) says nothing about the service.
# The kit does not count it; some breaker libraries do, and then a few impatient users
# open the circuit for everyone:

# %%
impatient = CircuitBreaker("db", failure_threshold=2, clock=HandClock())
for _ in range(4):
    with anyio.move_on_after(0.1):
        await impatient.call(run, SLEEP(10))
print(impatient.state, "| failures counted:", impatient.failures)

# %% [markdown]
# ## One breaker per thing that fails
#
# A breaker should guard one thing that fails as a unit: a command, a host. If one database
# host is down, calls to the others should go on. `BreakerRegistry` creates one breaker per
# key, with the same settings:

# %%
clock = HandClock()
breakers = BreakerRegistry(failure_threshold=2, reset_timeout=30, clock=clock)
hosts = {"db-1": EXIT(1), "db-2": EXIT(0)}          # db-1 is down
for _ in range(3):
    for host, cmd in hosts.items():
        try:
            await breakers[host].call(run, cmd)
        except (ProcessFailed, CircuitOpenError):
            pass
breakers

# %% [markdown]
# `breakers.for_command(cmd)` keys by the program's name instead.
#
# ## What the original gets wrong
#
# - **No half-open state**: after the timeout every waiting caller goes through at once,
#   shown above as a stampede of 20 processes against a service that is still down.
# - **Check, then act, across an `await`**: `is_open().await` and the call are separate
#   steps; the state can change in between, and several callers can act on the same stale
#   answer. (The failure count is also a relaxed atomic read separately from a mutex-held
#   timestamp: two pieces of state that can disagree.)
# - **It does not compile as printed**: `Mutex` and `Future` are used but never imported.
# - **No clock to inject**: `Instant::now()` is hard-wired, so testing "after 30 s" means
#   sleeping 30 s.
#
# ## Recap
#
# - Closed: count consecutive failures. Open: refuse at once with `CircuitOpenError` (which
#   says when it will try again). Half-open: exactly one probe; success closes, failure
#   reopens.
# - Inject the clock (`clock=`) and move it by hand in notebooks and tests.
# - Cancellation is not a failure; only the probe decides in half-open.
# - `async with breaker:` or `await breaker.call(run, cmd)`; `plots.plot_breaker` shows the
#   history; `BreakerRegistry` keeps one breaker per command or host.
#
# ## Exercises
#
# **08.1** Complete `drive(breaker, clock, failing, working)`: the breaker is closed, opens
# after 2 failures, and probes after 5 s on `clock`. Using only `await breaker.call(run,
# ...)` with the two commands and `clock.advance(...)`, take it through open and half-open
# and back to closed.

# %% tags=["raises-exception"]
async def drive(breaker, clock, failing, working):
    raise NotImplementedError("two failures, wait for the reset timeout, one success")

await exercises.check_drive(drive)

# %% jupyter={"source_hidden": true}
# One solution
async def drive(breaker, clock, failing, working):
    for _ in range(2):
        try:
            await breaker.call(run, failing)
        except ProcessFailed:
            pass
    clock.advance(5)
    await breaker.call(run, working)

await exercises.check_drive(drive)

# %% [markdown]
# **08.2** Build your own breaker with a half-open state. `SimpleBreaker(threshold,
# reset_timeout, clock)` must offer `await breaker.call(fn)`, which awaits `fn()` or raises
# `CircuitOpenError(name, retry_after)` without calling it. Open after `threshold`
# consecutive failures (`Exception`s; a cancelled call is not one); after `reset_timeout`,
# exactly one probe; close on its success, reopen on its failure.

# %% tags=["raises-exception"]
class SimpleBreaker:
    def __init__(self, threshold, reset_timeout, clock):
        self.threshold, self.reset_timeout, self.clock = threshold, reset_timeout, clock
        self.state, self.failures, self.opened_at, self.probing = "closed", 0, 0.0, False

    async def call(self, fn):
        raise NotImplementedError("closed -> open -> half-open with one probe")

await exercises.check_breaker_class(SimpleBreaker)

# %% jupyter={"source_hidden": true}
# One solution
class SimpleBreaker:
    def __init__(self, threshold, reset_timeout, clock):
        self.threshold, self.reset_timeout, self.clock = threshold, reset_timeout, clock
        self.state, self.failures, self.opened_at, self.probing = "closed", 0, 0.0, False

    async def call(self, fn):
        # Decide without awaiting anything, so no other caller can slip in between.
        if self.state == "open" and self.clock() >= self.opened_at + self.reset_timeout:
            self.state = "half-open"
        if self.state == "open" or (self.state == "half-open" and self.probing):
            wait = max(0.0, self.opened_at + self.reset_timeout - self.clock())
            raise CircuitOpenError("simple", wait)
        probe = self.probing = self.state == "half-open"
        try:
            result = await fn()
        except Exception:                      # cancellation is a BaseException: not counted
            self.failures += 1
            if probe or self.failures >= self.threshold:
                self.state, self.opened_at = "open", self.clock()
            raise
        finally:
            if probe:
                self.probing = False
        self.state, self.failures = "closed", 0
        return result

await exercises.check_breaker_class(SimpleBreaker)
