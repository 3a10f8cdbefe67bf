# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Welcome (学习目标 = learning goals)
#
# This workbook teaches **asynchronous process management** in Python: starting many
# programs at once, reading what they print while they run, talking to them, and stopping
# them cleanly. It follows a Chinese Rust/tokio tutorial, *Tier 2: async process management*
# (*Tier 2: 异步进程管理*), section by section; "§3.4" in a title is a section of the
# original. It runs every example for real and points out where the original goes wrong.
#
# You will be able to…
# - run a cell, and `await` directly in a cell;
# - do an exercise and have it checked;
# - stop a cell that hangs, without leaving processes behind;
# - find the Python counterpart of a tokio name;
# - tell whether this kernel can run the whole workbook.

# %%
import anyio
from asyncproc_kit import exercises, open_pipe, open_stream, run, terminate
from asyncproc_kit.testing import SLEEP, python, session_members

# %% [markdown]
# ## Running cells
#
# Select a cell and press **Shift+Enter** to run it and move to the next one;
# **Run → Run All Cells** runs the notebook top to bottom (each one takes seconds).
# The cell above imported the *kit*, `asyncproc_kit`, which every notebook uses.
#
# A cell can `await` directly: the kernel already runs an asyncio event loop. This runs a
# child process (another Python) and waits for it without blocking the loop:

# %%
result = await run(python("print('hello from a child process')"))
result.stdout

# %% [markdown]
# The result carries the exit status too. `0` means success, as in the shell.

# %%
result.returncode

# %% [markdown]
# In a script you would write `anyio.run(main)` once at the bottom. In a notebook that
# fails, because the loop is already running; just `await`:

# %% tags=["raises-exception"]
anyio.run(anyio.sleep, 0)

# %% [markdown]
# ## Exercises and checks
#
# Every notebook ends with exercises. Each one is a cell with a function to complete; it
# raises `NotImplementedError` until you replace that line with your code. Run it: the last
# line asks a **check** (`exercises.check_...`) to try your function for real. The check
# answers `✅` or `❌` with a hint; try again as often as you like.
#
# Below each exercise a **hidden solution** cell (click the `⋯` to expand it) shows one
# answer, checked the same way. Try first!
#
# ## When a cell hangs
#
# A cell that waits for a child that never ends looks like `[*]` forever. Press
# **Kernel → Interrupt Kernel** (or the ■ button, or `I`, `I` in command mode). The
# interrupt arrives as *cancellation*: the kit then ends the child's whole process group
# (SIGTERM, a short grace, then SIGKILL), grandchildren included. Restart the kernel only if
# the interrupt does not help.
#
# A timeout cancels the same way an interrupt does, so we can watch it here without pressing
# anything. This child would sleep for a minute:

# %%
with anyio.move_on_after(0.3) as scope:
    async with open_stream(SLEEP(60)) as stream:
        sleeper = stream.pid
        await stream.wait()
print("cancelled:", scope.cancelled_caught, "| exit status:", stream.returncode)

# %% [markdown]
# `-15` means "ended by SIGTERM". Nothing from its session is left running:

# %%
session_members([sleeper])

# %% [markdown]
# An interrupt you press yourself ends the cell with a red `CancelledError` traceback,
# ending with lines like these. **That is expected**: it is the cancellation arriving,
# and the child is already gone. Run the next cell as usual.
#
# ```text
# CancelledError                            Traceback (most recent call last)
# ...
# CancelledError: Cancelled by cancel scope 7f3a2c1d9e50
# ```

# %% [markdown]
# ## tokio → Python
#
# The original tutorial uses Rust's tokio. Here is what plays the same role in this workbook:
# [anyio](https://anyio.readthedocs.io) (which runs on asyncio and on trio) and the kit.
#
# | tokio (Rust) | Python (anyio / `asyncproc_kit`) | notebook |
# |---|---|---|
# | `#[tokio::main] async fn main()` | a notebook cell with `await`; in a script `anyio.run(main)` | 00 |
# | `Command::new("echo").arg("hi").output().await` | `await run(["echo", "hi"])` → `ProcessResult` | 01 |
# | `.stdout(Stdio::piped())` + `BufReader::new(out).lines()` | `async with open_stream(cmd) as s:` `async for line in s:` | 02 |
# | `child.stdin.take()` + `child.stdout.take()` | `async with open_pipe(cmd) as p:` `await p.send(...)`, `await p.receive_line()` | 03 |
# | `tokio::spawn(fut)` | `tg.start_soon(fn, *args)` in `async with anyio.create_task_group() as tg:` | 04 |
# | `futures::future::join_all(handles)` | `await map_limited(cmds, limit=...)` (results in input order) | 04 |
# | `tokio::sync::Semaphore::new(n)` | `anyio.Semaphore(n)` or `anyio.CapacityLimiter(n)` | 04 |
# | `mpsc::channel(n)` | `send, receive = anyio.create_memory_object_stream(n)` (both ends can be cloned) | 04 |
# | `oneshot::channel()` | a pool job: `job = await pool.submit(cmd)`, then `await job` | 04 |
# | `broadcast::channel` (a stop signal) | set an `anyio.Event` (every waiter wakes), or `tg.cancel_scope.cancel()` | 00 (below) |
# | `tokio::select!` | a task group whose first finisher cancels the others | 00 (below) |
# | `tokio::time::timeout(d, fut)` | `with anyio.fail_after(d):` (raises) / `move_on_after(d)` (does not); `run(cmd, timeout=d)` | 06 |
# | `tokio::time::sleep(d)` | `await anyio.sleep(seconds)` | 01 |
# | `child.kill().await` | `await terminate(stream_or_pipe)` (SIGTERM, grace, SIGKILL, whole group) | 00 (below), 06 |
# | `.kill_on_drop(true)` | built in: leaving `async with`, an error or a cancellation ends the child's group | 02 |
# | `tokio::task::spawn_blocking(f)` | `await anyio.to_thread.run_sync(f)` | 13 |
# | `Result<T, E>` + `?` | typed errors: `except ProcessFailed`; a task group's `except* ProcessFailed` | 04, 13 |
# | `tracing` / `log` | `logging`, and never a blocking call on the event loop | 13 |
#
# One difference matters everywhere: a tokio task started with `tokio::spawn` may outlive
# the code that started it. An anyio task group does not let that happen: the `async with`
# block ends only when every task in it has ended (*structured concurrency*, notebook 04).
#
# Three rows run nowhere else, so here: two children race (`select!`); the winner sets an
# `Event` (`broadcast`: every task in `await stop.wait()` wakes) and cancels the loser.
# Then one child is ended with `terminate` (`child.kill()`):

# %%
stop = anyio.Event()
async with anyio.create_task_group() as tg:
    async def race(seconds):
        await run(SLEEP(seconds))
        stop.set()
        tg.cancel_scope.cancel()  # the first to finish cancels the others
    tg.start_soon(race, 0.2)
    tg.start_soon(race, 30)
print("stop signal set:", stop.is_set())

# %%
async with open_stream(SLEEP(60)) as stream:
    ended = await terminate(stream, grace=0.5)
print("ended by", ended.how, "| still running:", session_members([stream.pid]))

# %% [markdown]
# ## Can this kernel run everything?
#
# This check tries each thing for real: widgets and plots, starting and reaping a child,
# ending a child's whole group, the open-file limit, and the trio backend. It also names your
# platform and how the kit learns that a child exited without reaping it (a *pidfd* on Linux,
# *kqueue* on macOS), which is what lets it end a child's whole group safely.

# %%
await exercises.environment_report()

# %% [markdown]
# If a line shows ❌, do what it says, then **Kernel → Restart Kernel** and run this
# notebook again.
#
# ## The notebooks
#
# Work through them in order; each one builds on the one before.
#
# <!-- notebook-index -->

# %% [markdown]
# ## Recap
#
# - Run cells with Shift+Enter; `await` works at the top level of a cell.
# - Exercises raise `NotImplementedError` until you fill them in; checks answer ✅ or ❌.
# - A hung cell: **Kernel → Interrupt**. The kit ends the child's whole group for you.
# - Every tokio idea has an anyio or kit counterpart (table above).
#
# ## Exercises
#
# **00.1** Complete `first_command` so that it runs a child that prints `hello, workbook`
# and returns the result of `run`. `python(code)` builds a command that runs `code`.

# %% tags=["raises-exception"]
async def first_command():
    raise NotImplementedError("return await run(...) here")

await exercises.check_first_command(first_command)

# %% jupyter={"source_hidden": true}
# One solution
async def first_command():
    return await run(python("print('hello, workbook')"))

await exercises.check_first_command(first_command)

# %% [markdown]
# **00.2** Fill in the Python object (not a string) that plays each tokio role, using the
# table above. Everything you need was imported in the first cell.

# %% tags=["raises-exception"]
answers = {
    "tokio::process::Command::output": run,
    "BufReader::lines on child.stdout": ...,
    "child.stdin + child.stdout together": ...,
    "tokio::spawn": ...,
    "tokio::sync::Semaphore": ...,
    "tokio::sync::mpsc::channel": ...,
    "tokio::time::timeout": ...,
    "tokio::time::sleep": ...,
    "child.kill": ...,
}
raise NotImplementedError("replace each ... above, then delete this line")
exercises.check_rosetta(answers)

# %% jupyter={"source_hidden": true}
# One solution
answers = {
    "tokio::process::Command::output": run,
    "BufReader::lines on child.stdout": open_stream,
    "child.stdin + child.stdout together": open_pipe,
    "tokio::spawn": anyio.create_task_group,
    "tokio::sync::Semaphore": anyio.Semaphore,
    "tokio::sync::mpsc::channel": anyio.create_memory_object_stream,
    "tokio::time::timeout": anyio.fail_after,
    "tokio::time::sleep": anyio.sleep,
    "child.kill": terminate,
}
exercises.check_rosetta(answers)
