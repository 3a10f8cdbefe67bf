# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Pools and structured concurrency (§3.1–§3.4, §6.3, §7 trap 3)
#
# One process at a time wastes the machine; all of them at once can swamp it. This notebook
# goes from "start a few together" to "a pool of workers that takes jobs", and shows the rule
# that keeps it all safe: **nothing outlives the block that started it**.
#
# You will be able to…
# - start several processes at once in a task group, and know none of them outlives it;
# - wait for a batch and see every success *and* every failure, in input order;
# - limit how many run at once, and *see* the limit on a timeline;
# - build a worker pool from a channel, then use `ProcessPool`;
# - explain why fire-and-forget tasks leak, and what replaces them.

# %%
# %matplotlib inline
import asyncio

import anyio
from asyncproc_kit import (ProcessError, ProcessFailed, ProcessPool, Timeline, exercises,
                           map_limited, plots, read_joblog, run, stopwatch)
from asyncproc_kit.testing import EXIT, SLEEP, SPAWN_GRANDCHILDREN, session_members

# %% [markdown]
# ## Starting several at once (§3.1)
#
# The original spawns three tokio tasks and then awaits each handle:
#
# ```rust
# let tasks = vec![
#     tokio::spawn(run_task("task1")),
#     tokio::spawn(run_task("task2")),
#     tokio::spawn(run_task("task3")),
# ];
# for task in tasks { task.await??; }
# ```
#
# In anyio the tasks live in a **task group**: `start_soon` starts one, and the `async with`
# block ends only when all of them have. Three 0.3 s sleeps, with a timeline to see them:

# %%
timeline = Timeline()
async with stopwatch() as sw:
    async with anyio.create_task_group() as tg:
        for name in ("task1", "task2", "task3"):
            tg.start_soon(lambda name=name: run(SLEEP(0.3), timeline=timeline, label=name))
print(f"three 0.3 s sleeps took {sw.elapsed:.2f} s; together, not one after another: "
      f"{sw.elapsed < 0.6}")

# %%
plots.plot_timeline(timeline)

# %% [markdown]
# ## Waiting for a batch, failures included (§3.2)
#
# `join_all` waits for every future and gives back each `Result`, so the original can print
# a ✅ or ❌ per task. A task group is stricter: when one task raises, it **cancels the
# others** and re-raises. What it raises is not the task's error itself but an
# **`ExceptionGroup`** holding it (several tasks can fail at once, and none is lost). So a
# plain `except ProcessFailed:` misses it:

# %%
try:
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, EXIT(3))
    except ProcessFailed:
        print("not printed: the group did not raise a ProcessFailed")
except ExceptionGroup as eg:
    print("the plain except missed:", type(eg).__name__, [type(e).__name__ for e in eg.exceptions])

# %% [markdown]
# `except* ProcessFailed as group:` (Python 3.11+) matches the ProcessFailed errors *inside*
# the group; `group` is an `ExceptionGroup` of just those, and `group.exceptions[0]` is the
# first one. Here a failing command takes a sleeping sibling down with it:

# %%
timeline = Timeline()
try:
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: run(EXIT(3), timeline=timeline, label="fails"))
        tg.start_soon(lambda: run(SLEEP(0.5), timeline=timeline, label="sleeps"))
except* ProcessFailed as group:
    print("caught", type(group.exceptions[0]).__name__, "from the group")
print({span.label: span.outcome for span in timeline.spans})

# %% [markdown]
# That is right when the batch only makes sense as a whole. When each command stands on its
# own, use `map_limited`: its list holds, **in input order**, each command's
# `ProcessResult` or its error. One failure never loses the other results:

# %%
commands = [EXIT(0), EXIT(3), ["no-such-program"], SLEEP(0.2)]
results = await map_limited(commands, limit=4)

# %%
for i, outcome in enumerate(results):
    if isinstance(outcome, ProcessError):
        print(f"❌ task {i}: {type(outcome).__name__}")
    else:
        print(f"✅ task {i}: exit code {outcome.returncode}")

# %% [markdown]
# Each error is the real exception, with everything it knows:

# %%
print(results[1].returncode, "|", results[2])

# %% [markdown]
# ## Limiting concurrency (§3.3)
#
# Ten commands at once is fine; ten thousand would exhaust processes, memory and file
# descriptors. The original holds a semaphore permit while each process runs:
#
# ```rust
# let semaphore = Arc::new(Semaphore::new(3));
# // in each of 10 tasks:
# let _permit = sem.acquire().await.unwrap();
# let output = Command::new("sleep").arg("1").output().await.unwrap();
# ```
#
# The same in Python, ten 0.2 s sleeps with at most three at a time:

# %%
timeline = Timeline()
semaphore = anyio.Semaphore(3)

async def limited(i):
    async with semaphore:
        await run(SLEEP(0.2), timeline=timeline, label=f"task {i}")

# %%
async with anyio.create_task_group() as tg:
    for i in range(10):
        tg.start_soon(limited, i)
print("at most at once:", timeline.peak_concurrency())
plots.plot_timeline(timeline)

# %% [markdown]
# Four waves: 3 + 3 + 3 + 1. `map_limited(commands, limit=3)` does the same in one line, and
# records how long each command **waited** for its turn (the light part of each bar):

# %%
timeline = Timeline()
results = await map_limited([SLEEP(0.2)] * 10, limit=3, timeline=timeline,
                            labels=[f"task {i}" for i in range(10)])
print("at most at once:", timeline.peak_concurrency(), "| all succeeded:",
      all(r.returncode == 0 for r in results))

# %%
plots.plot_timeline(timeline, title="map_limited(10 x sleep 0.2 s, limit=3)")

# %% [markdown]
# ## A worker pool (§3.4)
#
# A pool turns it around: a fixed set of **workers** takes jobs from one channel. The
# original gives each worker a copy of the channel's receiving end:
#
# ```rust
# let (tx, mut rx) = mpsc::channel::<Task>(100);
# for i in 0..worker_count {
#     let mut task_rx = rx.clone();
#     tokio::spawn(async move {
#         while let Some(task) = task_rx.recv().await { /* run it, send the result back */ }
#     });
# }
# ```
#
# ### What the original gets wrong
#
# That pool **does not compile**. A tokio `mpsc` channel has many senders but exactly one
# receiver, and its `Receiver` cannot be cloned:
#
# ```text
# error[E0599]: no method named `clone` found for struct `tokio::sync::mpsc::Receiver<T>` in the current scope
#   |         let mut task_rx = rx.clone();
#   |                              ^^^^^ method not found in `tokio::sync::mpsc::Receiver<Task>`
# ```
#
# (In Rust the usual fix is to share one receiver behind an `Arc<Mutex<…>>`, or to use a
# multi-consumer channel such as `async-channel`.) anyio's memory object streams are
# multi-consumer: each `receive.clone()` is one more consumer, and each item goes to exactly
# one of them. A worker:

# %%
async def worker(name, jobs, results, timeline):
    async with jobs:  # closes this worker's clone when it leaves
        async for index, command in jobs:
            results[index] = await run(command, timeline=timeline, label=f"{name}: job {index}")

# %% [markdown]
# Four workers, ten jobs. Closing the sending end (`async with send:`) is the shutdown
# signal: each worker's `async for` ends once the channel is empty.

# %%
timeline, results = Timeline(), [None] * 10
send, receive = anyio.create_memory_object_stream(100)
async with anyio.create_task_group() as tg:
    for w in range(4):
        tg.start_soon(worker, f"worker {w}", receive.clone(), results, timeline)
    receive.close()  # the workers hold their clones; we keep none
    async with send:
        for index in range(10):
            await send.send((index, SLEEP(0.2)))
print("at most at once:", timeline.peak_concurrency(), "| results:", len(results))

# %%
plots.plot_timeline(timeline, title="a pool by hand: 4 workers, 10 jobs")

# %% [markdown]
# The kit's `ProcessPool` is that, plus what a real pool needs: a handle per job
# (`await job` is the original's reply channel), errors kept per job, priorities (next
# notebook), a size you can change while it runs, and clean shutdown. The original's
# demo, ten `echo "Task i"` through four workers:

# %%
async with ProcessPool(workers=4) as pool:
    jobs = [await pool.submit(["echo", f"Task {i}"]) for i in range(10)]
print([(await job).stdout.strip() for job in jobs][:4], "...")

# %% [markdown]
# The pool's timeline exports a **joblog** in GNU parallel's format (`parallel --joblog`),
# so you can compare with a tool you may know (`pool.timeline.joblog("jobs.log")` writes
# it to a file). Its columns:

# %%
joblog = pool.timeline.joblog()
print(joblog.splitlines()[0].split("\t"))

# %% [markdown]
# Start times and run times change with every run, so here are the other columns of the
# first three lines:

# %%
for e in read_joblog(joblog)[:3]:
    print(f"Seq {e.seq}  Host {e.host}  Send {e.send}  Receive {e.receive}  "
          f"Exitval {e.exitval}  Signal {e.signal}  Command {e.command}")

# %% [markdown]
# Leaving the block normally lets queued work finish. `await pool.cancel()` (or an
# exception inside the block) terminates running children with their whole process group,
# grandchildren included, and fails the queued jobs:

# %%
async with ProcessPool(workers=2) as pool:
    jobs = [await pool.submit(SPAWN_GRANDCHILDREN(2, 60)) for _ in range(3)]
    await jobs[0].wait_started()
    await jobs[1].wait_started()
    await anyio.sleep(0.3)  # give the shells time to start their children
    await pool.cancel()
print("survivors:", session_members([s.pid for s in pool.timeline.spans if s.pid]))
print([job.state for job in jobs], "|", type(jobs[2].error).__name__)

# %% [markdown]
# ## Nothing outlives its scope (§6.3, §7 trap 3)
#
# The original's resource-leak trap spawns tasks and never waits for them:
#
# ```rust
# for i in 0..1000 {
#     tokio::spawn(async move { Command::new("task").output().await.ok(); });
# }  // the tasks may still be running
# ```
#
# Python can do the same with `asyncio.create_task`: the function returns while its work
# goes on, unowned. Nobody sees its errors, and asyncio keeps only a weak reference, so a
# task can even be garbage-collected half-way.

# %%
leaky = Timeline()

def start_and_forget():
    for i in range(3):
        asyncio.get_running_loop().create_task(run(SLEEP(0.5), timeline=leaky, label=f"{i}"))

# %%
start_and_forget()
await anyio.sleep(0.2)
print("still running after the function returned:", sum(s.ended is None for s in leaky.spans))

# %% [markdown]
# The fix in the original collects the handles and awaits them; the structured version is a
# task group, which *cannot* be left while its tasks run. (We also let the leaked ones end.)

# %%
await anyio.sleep(0.5)
scoped = Timeline()
async with anyio.create_task_group() as tg:
    for i in range(3):
        tg.start_soon(lambda i=i: run(SLEEP(0.2), timeline=scoped, label=f"{i}"))
print("still running after the block:", sum(s.ended is None for s in scoped.spans))

# %% [markdown]
# And if the block is cancelled (a deadline, an error, an interrupted cell), the kit ends
# every child it started there, grandchildren included, before the cancellation goes on:

# %%
scoped = Timeline()
with anyio.move_on_after(0.5):
    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(lambda i=i: run(SPAWN_GRANDCHILDREN(2, 60), timeline=scoped))
print("outcomes:", {s.outcome for s in scoped.spans}, "| survivors:",
      session_members([s.pid for s in scoped.spans]))

# %% [markdown]
# ## Recap
#
# - A **task group** starts tasks together and ends only when all have ended; a failure
#   cancels the siblings. Nothing it started outlives it.
# - A task group raises an **`ExceptionGroup`**: catch its errors with
#   `except* ProcessFailed as group:` (`group.exceptions` lists them); a plain
#   `except ProcessFailed:` misses. Notebook 13 goes deeper into typed errors and `except*`.
# - `await map_limited(commands, limit=N)`: at most N at once, a list in input order,
#   each slot a `ProcessResult` or the error.
# - A semaphore limits concurrency by hand; a timeline (`peak_concurrency()`, the plot)
#   shows that the limit held.
# - A worker pool = N workers on one multi-consumer channel; closing the sending end stops
#   them. `ProcessPool` adds job handles, errors per job, priorities and shutdown.
# - Fire-and-forget (`create_task` and drop it) leaks work and hides errors.
#
# ## Exercises
#
# **04.1** Complete `exit_codes(commands, limit)`: run every command with at most `limit`
# at once and return their exit codes in input order, with `None` for a command that could
# not start (`SpawnError`). A non-zero exit is not an error here: it is a code.

# %% tags=["raises-exception"]
async def exit_codes(commands, limit):
    raise NotImplementedError("run them with map_limited and turn each outcome into a code")

await exercises.check_exit_codes(exit_codes)

# %% jupyter={"source_hidden": true}
# One solution
from asyncproc_kit import SpawnError

async def exit_codes(commands, limit):
    results = await map_limited(commands, limit=limit)
    return [None if isinstance(r, SpawnError) else r.returncode for r in results]

await exercises.check_exit_codes(exit_codes)

# %% [markdown]
# **04.2** Build a pool by hand: complete `pool_by_hand(commands, workers)` so that exactly
# `workers` worker tasks take `(index, command)` pairs from one memory object stream, and
# return each command's stdout in input order. Nothing may still run when it returns.

# %% tags=["raises-exception"]
async def pool_by_hand(commands, workers):
    outputs = [None] * len(commands)
    raise NotImplementedError("start the workers with receive.clone(), then send the jobs")

await exercises.check_pool_by_hand(pool_by_hand)

# %% jupyter={"source_hidden": true}
# One solution
async def pool_by_hand(commands, workers):
    outputs = [None] * len(commands)

    async def work(jobs):
        async with jobs:
            async for index, command in jobs:
                outputs[index] = (await run(command)).stdout

    send, receive = anyio.create_memory_object_stream(len(commands))
    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(work, receive.clone())
        receive.close()
        async with send:
            for job in enumerate(commands):
                await send.send(job)
    return outputs

await exercises.check_pool_by_hand(pool_by_hand)
