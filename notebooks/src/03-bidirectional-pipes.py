# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Bidirectional pipes (§2.4, §2.5, §7 trap 2)
#
# Some programs are filters (`grep`, `sort`, a compressor); some hold a conversation (a
# REPL, a language server). Both need you to *write* to the child's stdin and *read* its
# stdout. Done in the wrong order, that deadlocks. This notebook shows both patterns, the
# deadlock (safely, under a timeout) and its fix.
#
# You will be able to…
# - feed a child input while its output is being read;
# - hold a line-by-line conversation with a child;
# - explain why writing everything before reading can hang forever, and avoid it.

# %%
import os
import subprocess
import sys

import anyio
from asyncproc_kit import exercises, open_pipe, run, stopwatch
from asyncproc_kit.testing import CAT, ECHO_STDIN_UPPER, python

# %% [markdown]
# ## Feeding input (§2.4)
#
# The original pipes three lines into `grep pattern`, writing from a separate task:
#
# ```rust
# let mut child = Command::new("grep").arg("pattern")
#     .stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
# let mut stdin = child.stdin.take().unwrap();
# tokio::spawn(async move {
#     stdin.write_all(b"line with pattern\n").await.unwrap();
#     // ...two more lines; stdin is closed when it is dropped
# });
# let output = child.wait_with_output().await?;
# ```
#
# Our `grep` is a few lines of Python, so it runs everywhere:

# %%
GREP = python("""
    import sys
    for line in sys.stdin:
        if "pattern" in line:
            print(line, end="")
""")

# %% [markdown]
# `run(cmd, input=...)` writes the input, closes stdin (end of file) and collects the output:

# %%
text = "line with pattern\nline without\nanother line with pattern\n"
result = await run(GREP, input=text)
print(result.stdout, end="")

# %% [markdown]
# `run` writes the input *while* it reads the output, so the size does not matter. Five
# megabytes through `CAT`, which echoes everything back:

# %%
big = b"0123456789" * 500_000
async with stopwatch() as sw:
    echoed = await run(CAT, input=big, text=False)
print(f"echoed {len(echoed.stdout):,} bytes, intact: {echoed.stdout == big}, in {sw.elapsed:.2f} s")

# %% [markdown]
# ## A conversation (§2.5)
#
# The original starts a Python upper-caser, writes five messages from one task and reads
# the replies in another:
#
# ```rust
# Command::new("python3").arg("-c")
#     .arg("import sys; [print(line.strip().upper()) for line in sys.stdin]")
# ```
#
# A real conversation goes turn by turn: send a line, wait for its answer, decide what to
# send next. `open_pipe` does that. `ECHO_STDIN_UPPER` answers each line as soon as it
# arrives:

# %%
async with open_pipe(ECHO_STDIN_UPPER) as pipe:
    for i in range(1, 4):
        await pipe.send(f"message {i}\n")
        print(f"sent 'message {i}' -> received {await pipe.receive_line()!r}")
    print("exit status:", await pipe.wait())

# %% [markdown]
# `pipe.wait()` closes stdin (the child sees end of file and its loop ends) and returns
# the exit status.
#
# One catch: the original's child would *not* answer turn by turn. Python buffers its
# stdout when it is a pipe, so the replies stay inside the child until it exits. Here is
# the original's child, asked for one reply, with a 1 s deadline. (`PYTHONUNBUFFERED`
# switches the buffering off; some setups define it, so we remove it to see the default.)

# %%
ORIGINAL = [sys.executable, "-c", "import sys; [print(line.strip().upper()) for line in sys.stdin]"]
DEFAULT_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}

# %%
async with open_pipe(ORIGINAL, env=DEFAULT_ENV) as pipe:
    await pipe.send("message 1\n")
    with anyio.move_on_after(1) as scope:
        await pipe.receive_line()
print("waited in vain:", scope.cancelled_caught)

# %% [markdown]
# The original gets away with it only because it reads after closing stdin. For a
# conversation, the child must flush each line (`print(..., flush=True)` or `python3 -u`).
#
# ## The pipe-full deadlock (§7 trap 2)
#
# A pipe holds about 64 KiB. `CAT` reads its stdin and writes to its stdout. If we write a
# megabyte and read nothing: stdout fills, `CAT` blocks writing, stops reading stdin,
# stdin fills, and our write blocks too. Both sides wait for each other, forever.
#
# Here it is with plain `anyio.open_process` (which, like tokio, does exactly what you
# ask), under a 1 s deadline instead of forever:

# %%
data = b"x" * 1_000_000
process = await anyio.open_process(CAT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
with anyio.move_on_after(1) as scope:
    await process.stdin.send(data)
print("hung:", scope.cancelled_caught)

# %% [markdown]
# Left alone, that cell would never finish. The child is still alive, blocked; with plain
# `anyio.open_process`, cleaning up is our job:

# %%
process.kill()
await process.aclose()
process.returncode

# %% [markdown]
# (`-9`: killed by SIGKILL.)
#
# ## What the original gets wrong
#
# §7 trap 2 offers this fix: write from a separate task, then wait for the child.
#
# ```rust
# let mut stdin = child.stdin.take().unwrap();
# tokio::spawn(async move { stdin.write_all(&huge_data).await.ok(); });
# child.wait().await?;
# ```
#
# That works only because its `cat` has no stdout pipe (its output goes to the terminal).
# With stdout piped and nobody reading it, moving the write to another task changes
# nothing: the child still fills its stdout and stops. The same fix, in Python:

# %%
process = await anyio.open_process(CAT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

async def write_all_then_close():
    await process.stdin.send(data)
    await process.stdin.aclose()

# %%
with anyio.move_on_after(1) as scope:
    async with anyio.create_task_group() as tg:
        tg.start_soon(write_all_then_close)
        await process.wait()
print("hung:", scope.cancelled_caught)

# %%
process.kill()
await process.aclose()

# %% [markdown]
# The real fix is to **read while you write**. That is what `run(..., input=...)` did
# above, and what `open_pipe` does: its stdout is read in the background from the start, so
# we can send the whole megabyte before reading a single byte:

# %%
async with open_pipe(CAT) as pipe:
    await pipe.send(data)
    await pipe.close_input()
    received = b""
    while chunk := await pipe.receive():
        received += chunk
print("intact:", received == data, "| exit status:", await pipe.wait())

# %% [markdown]
# Nothing hung, and no child needed killing: the kit ends the child's group anyway when the
# `async with` block is left, whatever happens inside it.
#
# ## Recap
#
# - `await run(cmd, input=...)` feeds a filter and collects its output; any size is fine.
# - `async with open_pipe(cmd) as pipe:` `send`, `receive_line`/`receive`, `close_input`,
#   `wait`: a conversation, turn by turn.
# - A conversation needs a child that flushes each line.
# - Deadlock = you write, nobody reads, both pipes fill. Writing from another task does not
#   help while stdout goes unread; reading and writing at the same time does.
#
# ## Exercises
#
# **03.1** Complete `shout(messages)`: talk to `ECHO_STDIN_UPPER` one line at a time and
# return its replies as a list (e.g. `["hello 1"]` → `["HELLO 1"]`).

# %% tags=["raises-exception"]
async def shout(messages):
    replies = []
    raise NotImplementedError("send each message as a line and collect each reply")

await exercises.check_shout(shout)

# %% jupyter={"source_hidden": true}
# One solution
async def shout(messages):
    replies = []
    async with open_pipe(ECHO_STDIN_UPPER) as pipe:
        for message in messages:
            await pipe.send(message + "\n")
            replies.append(await pipe.receive_line())
    return replies

await exercises.check_shout(shout)

# %% [markdown]
# **03.2** Complete `echo_big(data)`: send `data` (a few megabytes of random bytes) through
# `CAT` and return everything it echoes, as bytes. The check gives up after 10 s, so a
# deadlock shows up as a hint rather than a hung cell.

# %% tags=["raises-exception"]
async def echo_big(data):
    raise NotImplementedError("send data through CAT and return the echo")

await exercises.check_echo_big(echo_big)

# %% jupyter={"source_hidden": true}
# One solution
async def echo_big(data):
    result = await run(CAT, input=data, text=False)
    return result.stdout

await exercises.check_echo_big(echo_big)
