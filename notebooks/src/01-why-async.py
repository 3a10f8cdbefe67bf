# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Why async? (学习目标 = learning goals, §1, §2.1, §2.6)
#
# A program that starts other programs spends most of its time *waiting* for them. Async
# code waits for many at once. This notebook runs one command, then measures, here and now,
# how much waiting concurrently saves, and when it saves nothing.
#
# You will be able to…
# - run a command with `await run([...])` and read every field of its result;
# - measure sequential against concurrent runs yourself (`%time` cannot `await`: the kit
#   has a `stopwatch`);
# - explain why "100 processes take ~2 s" is really ~1 s plus start-up overhead;
# - say when async does not help: one process, or CPU-bound work.

# %%
# %matplotlib inline
import subprocess
import time
from functools import partial

import anyio
from asyncproc_kit import Timeline, exercises, plots, run, stopwatch, timed, widgets
from asyncproc_kit.testing import SLEEP

# %% [markdown]
# ## When async pays off (§1)
#
# The original lists where async fits: **many child processes at once**, **I/O-bound
# work** (waiting on pipes, networks, disks), **timeouts**, and code that already lives in
# an async framework. And where it does not: **a single, simple process**, and
# **CPU-bound work**. We will check each claim by measuring.
#
# ## One command (§2.1)
#
# ```rust
# let output = Command::new("echo").arg("Hello Async!").output().await?;
# println!("stdout: {}", String::from_utf8_lossy(&output.stdout));
# println!("status: {}", output.status);
# ```
#
# In Python a command is a list of arguments. `run` starts it, waits without blocking the
# event loop, and returns a `ProcessResult`:

# %%
result = await run(["echo", "Hello Async!"])
result

# %% [markdown]
# It has the fields of `subprocess.CompletedProcess`, plus timing facts:

# %%
print("stdout:", repr(result.stdout))
print("stderr:", repr(result.stderr))
print("returncode:", result.returncode)

# %%
print(f"pid {result.pid} ran for {result.duration:.3f} s")

# %% [markdown]
# A non-zero exit raises `ProcessFailed` (as `subprocess.run(..., check=True)` does), with
# the end of stderr in the message, so a failure is never silently ignored:

# %% tags=["raises-exception"]
await run(["sh", "-c", "echo 'disk full' >&2; exit 3"])

# %% [markdown]
# `check=False` returns the result instead; the exit code is then yours to look at.
#
# ## Sync against async (§2.6)
#
# The original runs `sleep 1` ten times, one after another (~10 s) and then all at once
# (~1 s):
#
# ```rust
# for i in 0..10 { Command::new("sleep").arg("1").output().unwrap(); }            // sync
# let tasks: Vec<_> = (0..10).map(|_| tokio::spawn(async {
#     Command::new("sleep").arg("1").output().await.unwrap() })).collect();   // async
# ```
#
# We do the same with ten 0.15 s sleeps (`SLEEP(0.15)` is a tiny Python program that
# sleeps). First the blocking way, with `subprocess.run`:

# %%
with stopwatch() as sync_watch:
    for _ in range(10):
        subprocess.run(SLEEP(0.15), check=True)
print(f"one after another: {sync_watch.elapsed:.2f} s")

# %% [markdown]
# `async` alone does not change that: awaiting in a loop still waits for each process
# before starting the next. A `Timeline` records when each one ran:

# %%
in_a_loop = Timeline()
for i in range(10):
    await run(SLEEP(0.15), timeline=in_a_loop, label=f"#{i + 1}")
in_a_loop

# %% [markdown]
# To run them at the same time, start each one as a task in a **task group** (the
# counterpart of `tokio::spawn` + waiting for all handles). The `async with` block ends
# when every task has finished:

# %%
together = Timeline()
async with stopwatch() as async_watch:
    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(partial(run, SLEEP(0.15), timeline=together, label=f"#{i + 1}"))
print(f"concurrently: {async_watch.elapsed:.2f} s")

# %% [markdown]
# (`start_soon` passes only positional arguments; `functools.partial` adds the keyword
# ones.) The facts, rounded so they do not change from run to run:

# %%
speedup = sync_watch.elapsed / async_watch.elapsed
print("async was faster:", async_watch.elapsed < sync_watch.elapsed)
print("more than 3x faster:", speedup > 3)
print("peak concurrency:", together.peak_concurrency(), "| in a loop:", in_a_loop.peak_concurrency())

# %%
plots.plot_sync_vs_async(sync_watch.elapsed, async_watch.elapsed, count=10)

# %% [markdown]
# The two timelines side by side: a staircase, then ten bars that overlap.

# %%
figure = plots.PlotFigure(figsize=(10, 3.4), layout="constrained")
left, right = figure.subplots(1, 2)
plots.plot_timeline(in_a_loop, ax=left, title="await in a loop")
plots.plot_timeline(together, ax=right, title="task group")
right.set_xlim(left.get_xlim())  # the same time scale on both sides
figure

# %% [markdown]
# Why not exactly 10x? Each child is a fresh Python interpreter that needs some
# milliseconds of CPU to start; ten of them starting together share this machine's cores.
#
# ## What the original gets wrong: "100 processes ~2 s"
#
# The original's table claims 100 × `sleep 1` take "~2 s" asynchronously. Measure it: here
# is the real `sleep` program, a hundred times, all at once.

# %%
hundred = Timeline()
async with stopwatch() as watch:
    async with anyio.create_task_group() as tg:
        for i in range(100):
            tg.start_soon(partial(run, ["sleep", "1"], timeline=hundred, label=f"#{i + 1}"))
print(f"100 x sleep 1: {watch.elapsed:.2f} s")

# %%
last_start = max(span.started for span in hundred.spans)
print("faster than the claimed ~2 s:", watch.elapsed < 2)
print("all 100 ran at once:", hundred.peak_concurrency() == 100)
print(f"starting all 100 took {last_start:.2f} s, then each slept 1 s")

# %% [markdown]
# So it is 1 s of sleeping plus the time it takes to start (and reap) a hundred
# processes: milliseconds each on a quiet machine, more on a busy one. The sleeps overlap
# completely. The overhead grows with the number of processes and with how heavy each
# program is to start, which is why it is worth measuring rather than trusting a table.

# %%
plots.plot_timeline(hundred)

# %% [markdown]
# ## Explore it yourself
#
# Move the sliders and press **Run**: how many processes, how long each sleeps, and how
# many may run at once (the concurrency limit, notebook 04). It shows the timeline and the
# speedup over running them one after another. Try 100 processes with a limit of 10.

# %%
widgets.timing_explorer()

# %% [markdown]
# ## When async does not help
#
# **One process.** There is nothing to overlap: awaiting one child takes as long as
# waiting for it the blocking way. `timed` is the async twin of `%time`:

# %%
_, async_one = await timed(run(SLEEP(0.3)))
with stopwatch() as sync_one:
    subprocess.run(SLEEP(0.3), check=True)
print(f"async {async_one:.2f} s, sync {sync_one.elapsed:.2f} s")
print("about the same (within 0.15 s):", abs(async_one - sync_one.elapsed) < 0.15)

# %% [markdown]
# **CPU-bound work.** Async code shares one thread: a task that computes without ever
# awaiting keeps every other task waiting. Three tasks that each compute for 0.2 s:

# %%
async def compute(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:  # busy: no await, so no other task can run
        pass

# %%
async with stopwatch() as cpu_watch:
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(compute, 0.2)
print(f"3 x 0.2 s of computing in a task group: {cpu_watch.elapsed:.2f} s")
print("no faster than one after another:", cpu_watch.elapsed > 0.55)

# %% [markdown]
# For CPU-bound work use processes (each child gets its own core, up to the number of
# cores) or threads for libraries that release the GIL; async is for *waiting*.
#
# ## Recap
#
# - `await run([...])` returns a `ProcessResult`: `args`, `returncode`, `stdout`, `stderr`,
#   `pid`, `duration`. A non-zero exit raises `ProcessFailed` unless `check=False`.
# - `await` in a loop is still one after another; a task group runs them at the same time.
# - Ten 0.15 s sleeps: 1.5 s and more one after another, a fraction of a second
#   concurrently. A hundred 1 s sleeps: ~1 s plus overhead, not "~2 s".
# - Async saves waiting time. One process, or computing, gains nothing.
# - Measure with `stopwatch()` / `timed(...)`; plot with a `Timeline`.
#
# ## Exercises
#
# **01.1** `cmd` prints a word, complains on stderr and exits with a non-zero code.
# Complete `run_anyway(cmd)` so that it returns the `ProcessResult` instead of raising.

# %% tags=["raises-exception"]
async def run_anyway(cmd):
    raise NotImplementedError("return the result of running cmd, even though it fails")

await exercises.check_failed_result(run_anyway)

# %% jupyter={"source_hidden": true}
# One solution
async def run_anyway(cmd):
    return await run(cmd, check=False)

await exercises.check_failed_result(run_anyway)

# %% [markdown]
# **01.2** Complete `run_all(commands)`: run all commands *at the same time* and return
# their results as a list **in the order of `commands`** (the first command is the slowest,
# so the order in which they finish is different).

# %% tags=["raises-exception"]
async def run_all(commands):
    results = [None] * len(commands)
    raise NotImplementedError("start every run in a task group; store results[i]")

await exercises.check_run_all(run_all)

# %% jupyter={"source_hidden": true}
# One solution
async def run_all(commands):
    results = [None] * len(commands)

    async def run_one(i, cmd):
        results[i] = await run(cmd)

    async with anyio.create_task_group() as tg:
        for i, cmd in enumerate(commands):
            tg.start_soon(run_one, i, cmd)
    return results

await exercises.check_run_all(run_all)
