# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Retries (§4.5)
#
# Some failures go away on their own: a busy server, a lock held for a moment, a network
# hiccup. Trying again is worth it. Others never go away: a typo in the command, a missing
# program. Trying again only wastes time. This notebook builds a retry loop by hand, sees
# what goes wrong with the original's, and then does it properly in one line.
#
# You will be able to…
# - decide which failures are worth retrying, and never retry "command not found";
# - compute exponential backoff with jitter, and see why the jitter matters;
# - bound retries by attempts *and* by a total time budget;
# - retry with stamina and the kit, with schedules that are deterministic in tests;
# - let a job that waits to retry give its worker slot to someone else.

# %%
# %matplotlib inline
import random
import tempfile
from functools import partial
from pathlib import Path

import anyio
import stamina

from asyncproc_kit import (ProcessFailed, ProcessTimeout, SpawnError, Timeline, exercises, plots,
                           retry_if, run, run_with_retries, stopwatch)
from asyncproc_kit.testing import SLEEP, python

# %% [markdown]
# Our flaky command stands for a service that is busy for a while: it fails its first
# `failures` runs with exit code 75 (`EX_TEMPFAIL`, "try again later") and a message on
# stderr, then succeeds. It counts its runs in a file, so every run really is a new process.

# %%
def flaky(failures):
    counter = Path(tempfile.mkdtemp()) / "runs"
    return python(f"""
        import pathlib, sys
        p = pathlib.Path({str(counter)!r})
        n = int(p.read_text()) if p.exists() else 0
        p.write_text(str(n + 1))
        if n < {failures}:
            sys.stderr.write("service temporarily unavailable\\n")
            sys.exit(75)
        print(f"done after {{n + 1}} runs")
    """)

# %% [markdown]
# ## The original (Rust, §4.5)
#
# ```rust
# for attempt in 0..max_retries {
#     match Command::new(cmd).args(args).output().await {
#         Ok(output) if output.status.success() => return Ok(output),
#         Ok(output) => { eprintln!("❌ Failed with status: {}", output.status);
#                         if attempt < max_retries - 1 { sleep(delay).await; } }
#         Err(e)     => { eprintln!("❌ Error: {}", e);
#                         if attempt < max_retries - 1 { sleep(delay).await; }
#                         else { return Err(format!("All {} attempts failed", max_retries)); } }
#     }
# }
# ```
#
# Mirrored in Python: every failure is retried alike, after the same delay.

# %%
async def retry_command(cmd, max_retries, delay):
    for attempt in range(max_retries):
        print(f"🔄 Attempt {attempt + 1}/{max_retries}")
        try:
            return await run(cmd)
        except Exception as error:              # every failure alike
            print("❌", type(error).__name__)
            if attempt < max_retries - 1:
                await anyio.sleep(delay)        # the same delay every time
    raise RuntimeError(f"All {max_retries} attempts failed")

# %% [markdown]
# For a failure that goes away, it works:

# %%
result = await retry_command(flaky(2), max_retries=3, delay=0.1)
result.stdout

# %% [markdown]
# For a program that does not exist, it tries three times, sleeps in between, and then
# reports "All 3 attempts failed", without saying *why*:

# %% tags=["raises-exception"]
await retry_command(["backup-tool", "--now"], max_retries=3, delay=0.1)

# %% [markdown]
# ## Which failures are worth another try?
#
# Decide from what the failure says. Exit code 75 means "try again later" by convention
# (`sysexits.h`); some programs only say it on stderr. A `SpawnError` ("command not found",
# "permission denied") will fail the same way every time:

# %%
def worth_retrying(error):
    if not isinstance(error, ProcessFailed):    # SpawnError, ValueError, ...: never
        return False
    return error.returncode == 75 or "temporarily unavailable" in error.stderr

# %% [markdown]
# ## How long to wait: exponential backoff with jitter
#
# Waiting the same time after every failure has two problems. A service that is down for a
# while gets hammered at a steady rate; and when many clients failed at the same moment,
# they all come back at the same moment. The usual answer: wait twice as long after each
# failure, up to a maximum, plus a random *jitter*:

# %%
def backoff(attempt, *, initial=0.1, maximum=2.0, jitter=0.1, rng=random):
    """Seconds to wait before retry number `attempt` (1, 2, ...)."""
    return min(maximum, initial * 2 ** (attempt - 1)) + rng.uniform(0, jitter)

# %% [markdown]
# A seeded random generator makes a schedule you can print, test and reproduce:

# %%
rng = random.Random(7)
[round(backoff(n, rng=rng), 3) for n in range(1, 8)]

# %% [markdown]
# 0.1, 0.2, 0.4, 0.8, 1.6, then the 2.0 cap, each plus up to 0.1 of jitter. With both
# pieces, the loop by hand:

# %%
async def run_retrying(cmd, *, attempts=4, rng=random, **run_options):
    for attempt in range(1, attempts + 1):
        try:
            return await run(cmd, **run_options)
        except ProcessFailed as error:
            if not worth_retrying(error) or attempt == attempts:
                raise
            await anyio.sleep(backoff(attempt, rng=rng))

# %%
(await run_retrying(flaky(2))).stdout

# %% [markdown]
# And the missing program fails at once, with its own message:

# %% tags=["raises-exception"]
await run_retrying(["backup-tool", "--now"])

# %% [markdown]
# ## Why the jitter: four clients and a busy service
#
# Four clients hit a service at the same moment; it answers "busy" every time. Each client
# tries three times. First with a fixed delay of 0.2 s, like the original:

# %%
BUSY = python("import sys; sys.stderr.write('temporarily unavailable'); sys.exit(75)")


async def four_clients(wait):
    timeline = Timeline()

    async def client(i):
        for attempt in (1, 2, 3):
            try:
                await run(BUSY, timeline=timeline, label=f"client {i} #{attempt}")
            except ProcessFailed:
                await anyio.sleep(wait(attempt))

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(client, i)
    return timeline

# %%
plots.plot_timeline(await four_clients(lambda attempt: 0.2), title="fixed delay: in lockstep")

# %% [markdown]
# Every retry arrives in a wave of four. Now with jittered exponential backoff (jitter 0.3 s
# to make it visible):

# %%
rng = random.Random(1)
jittered = await four_clients(lambda attempt: backoff(attempt, jitter=0.3, rng=rng))
plots.plot_timeline(jittered, title="backoff with jitter: spread out")

# %% [markdown]
# The waves are gone: the service sees the same clients, spread over time.
#
# ## The same with stamina
#
# [stamina](https://stamina.hynek.me) wraps all of this: exponential backoff with jitter, a
# limit on attempts, a total time budget, and no default for *what* to retry (you must
# say). `retry_if` from the kit turns "exit code 75" into the predicate stamina wants:

# %%
cmd = flaky(2)


@stamina.retry(on=retry_if(exit_codes={75}), attempts=4, wait_initial=0.1, wait_jitter=0.1)
async def nightly_backup():
    return await run(cmd)

# %% [markdown]
# stamina reports every retry it schedules through *instrumentation hooks* (by default to
# `logging`). Our own hook prints one line per retry:

# %%
def show_retry(details):
    error = details.caused_by
    print(f"retry {details.retry_num} in {details.wait_for:.2f} s (exit code {error.returncode})")


stamina.instrumentation.set_on_retry_hooks([show_retry])
(await nightly_backup()).stdout

# %% [markdown]
# For the rest of this notebook we switch stamina's instrumentation off (`None` would
# restore the default, which logs a warning per retry):

# %%
stamina.instrumentation.set_on_retry_hooks([])

# %% [markdown]
# `retry_if` never says yes to a `SpawnError`, whatever you list. It also takes a stderr
# pattern (`stderr=r"temporarily unavailable"`) and `timeouts=True`.
#
# **Tests without waiting.** `stamina.set_testing(True, attempts=n)` turns every backoff into
# 0 and fixes the number of attempts, so a test of the retry *logic* runs in milliseconds and
# always the same way. When the kit gives up, a note on the error says why:

# %%
with stamina.set_testing(True, attempts=3):
    async with stopwatch() as sw:
        try:
            await run_with_retries(BUSY, on_exit_codes={75}, attempts=10)
        except ProcessFailed as error:
            print("exit code", error.returncode, "|", *error.__notes__, "| waited:", sw.elapsed > 0.5)

# %% [markdown]
# ## One line with the kit
#
# `run_with_retries` is the common case as a single call: which failures, how many
# attempts, how long in total. `on_retry` sees each retry as it starts:

# %%
def report(event):
    print(f"attempt {event.attempt} after exit code {event.error.returncode}")


result = await run_with_retries(flaky(2), on_exit_codes={75}, attempts=5, timeout=10,
                                wait_initial=0.1, wait_jitter=0.1, on_retry=report)
result.stdout

# %% [markdown]
# A missing program is not retried, and the error is the real one:

# %%
try:
    await run_with_retries(["backup-tool", "--now"], on_exit_codes={75}, on_stderr=".*")
except SpawnError as error:
    print(error.reason)

# %% [markdown]
# **A total budget.** `timeout=` bounds all attempts and waits together; an attempt still
# running when the budget ends is terminated, and the error says which limit fired:

# %%
SLOW_BUSY = python("import sys, time; time.sleep(0.6); sys.exit(75)")
try:
    await run_with_retries(SLOW_BUSY, on_exit_codes={75}, attempts=50, timeout=1.0,
                           wait_initial=0.1, wait_jitter=0)
except ProcessTimeout as error:
    print(error.limit)

# %% [markdown]
# ## Giving the slot back while waiting
#
# In a pool with a fixed number of workers, a job that sleeps between attempts should not
# keep its worker busy doing nothing. `hold=` takes the pool's limiter (here one slot): it
# is held during each attempt and released during each wait, so another job runs in the gap.

# %%
slot = anyio.CapacityLimiter(1)
timeline = Timeline()


async def other_job():
    async with slot:
        await run(SLEEP(0.1), timeline=timeline, label="other job")

# %%
async with anyio.create_task_group() as tg:
    tg.start_soon(partial(run_with_retries, flaky(2), on_exit_codes={75}, wait_initial=0.5,
                          wait_max=0.5, wait_jitter=0, hold=slot, timeline=timeline,
                          label="flaky job"))
    await anyio.sleep(0.05)
    tg.start_soon(other_job)
print([span.label for span in sorted(timeline.spans, key=lambda s: s.started)])

# %%
plots.plot_timeline(timeline, title="the other job runs while the flaky one waits")

# %% [markdown]
# ## What the original gets wrong
#
# - **Every failure is retried alike**, "command not found" included: shown above, three
#   attempts and two sleeps for a program that does not exist.
# - **The error is thrown away.** "All 3 attempts failed" says nothing about why; keep the
#   last exception and raise it.
# - **A fixed delay, no jitter**: clients that failed together retry together (the
#   lockstep chart above), and a service that is down for a while gets no breathing room.
# - **No budget**: attempts bound the *number* of tries but not the *time*; with slow
#   failures, three attempts can take minutes.
#
# ## Recap
#
# - Retry only what can succeed next time: chosen exit codes or stderr patterns; never a
#   `SpawnError`.
# - Back off exponentially up to a cap and add jitter; a seeded generator or stamina's
#   testing mode makes the schedule reproducible.
# - Bound retries by attempts *and* time (`timeout=`); the error says which limit fired.
# - `@stamina.retry(on=retry_if(...))` for your own functions; `run_with_retries(cmd, ...)`
#   for a single command; `hold=` frees a pool slot during the waits.
#
# ## Exercises
#
# **07.1** Complete `worth_retrying_07(error)`: return `True` when the command exited with
# code 75 or said "temporarily unavailable" on stderr; `False` for everything else,
# including a command that could not start and a timeout.

# %% tags=["raises-exception"]
def worth_retrying_07(error):
    raise NotImplementedError("return True only for the two temporary failures")

await exercises.check_worth_retrying(worth_retrying_07)

# %% jupyter={"source_hidden": true}
# One solution
def worth_retrying_07(error):
    if not isinstance(error, ProcessFailed):
        return False
    return error.returncode == 75 or "temporarily unavailable" in error.stderr

await exercises.check_worth_retrying(worth_retrying_07)

# %% [markdown]
# **07.2** Complete `resilient(cmd)`: run `cmd`, retrying exit code 75 with backoff, 4
# attempts in all; raise any other failure at once; never retry a missing command. (By hand
# or with the kit: the check counts the runs.)

# %% tags=["raises-exception"]
async def resilient(cmd):
    raise NotImplementedError("retry exit code 75, 4 attempts in all")

await exercises.check_resilient(resilient)

# %% jupyter={"source_hidden": true}
# One solution
async def resilient(cmd):
    return await run_with_retries(cmd, on_exit_codes={75}, attempts=4)

await exercises.check_resilient(resilient)
