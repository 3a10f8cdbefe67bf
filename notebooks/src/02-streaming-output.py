# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Streaming output (§2.2, §2.3)
#
# `run` hands you the output when the child has finished. Often you want it *while* the
# child runs: a build log, a download's progress, a server saying "ready". This notebook
# reads output line by line as it arrives, from stdout and stderr at the same time.
#
# You will be able to…
# - iterate a child's lines as they arrive, not after it exits;
# - read stdout and stderr together, each line tagged with its source;
# - handle the awkward cases: a last line without newline, a 200 kB line, bytes that are
#   not UTF-8;
# - stop reading early and know the child is gone.

# %%
import asyncio
import os

from asyncproc_kit import exercises, open_stream, run, stopwatch
from asyncproc_kit.testing import python, session_members

# %% [markdown]
# ## The original (Rust, §2.2 and §2.3)
#
# ```rust
# let mut child = Command::new("cat").arg("large_file.txt")
#     .stdout(Stdio::piped())
#     .spawn()?;
# let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
# while let Some(line) = lines.next_line().await? {
#     println!("📥 Line: {}", line);
# }
# ```
#
# §2.3 does the same for stderr with a second `tokio::spawn`ed task, so that neither pipe
# can fill up while the other is being read. In Python, `open_stream` does both for you.
#
# ## Lines as they arrive
#
# This child prints a line every 0.2 s:

# %%
TICKS = python("""
    import time
    for i in range(3):
        print(f"tick {i}")
        time.sleep(0.2)
""")

# %% [markdown]
# `async for` gives each line as soon as the child writes it. `line.time` is the number of
# seconds since the child started:

# %%
async with open_stream(TICKS) as stream:
    async for line in stream:
        print(f"{line.time:.2f} s  {line.text}")
stream.returncode

# %% [markdown]
# The times grow by about 0.2 s: we saw each line while the child was still sleeping.
#
# **That needs the child's help.** `python()` from `asyncproc_kit.testing` starts Python
# with `-u` (unbuffered). A plain `python script.py` writing into a pipe keeps its output in
# a buffer and delivers it all at exit. The same child without `-u` (and without
# `PYTHONUNBUFFERED`, in case your environment sets it):

# %%
buffered = [arg for arg in TICKS if arg != "-u"]
plain_env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
async with open_stream(buffered, env=plain_env) as stream:
    times = [line.time async for line in stream]
print(f"{len(times)} lines, all within {max(times) - min(times):.1f} s of each other, at the end")

# %% [markdown]
# No reader can fix that from outside: the child must flush (`print(..., flush=True)`,
# `-u`, or `PYTHONUNBUFFERED=1`). Notebook 03 meets it again in conversations, and
# notebook 11 (the log aggregator) sets `PYTHONUNBUFFERED` for its children.
#
# With `run` the output arrives all at once, at the end, whatever the child does:

# %%
async with stopwatch() as sw:
    result = await run(TICKS)
print(f"run took {sw.elapsed:.2f} s and returned {len(result.stdout.splitlines())} lines at once")

# %% [markdown]
# ## stdout and stderr together
#
# Programs write results to stdout and complaints to stderr. Both are pipes, and each must
# be read: a child blocks as soon as one of them is full. `open_stream` reads both at once
# and tags every line with `line.source`:

# %%
BOTH = python("""
    import sys, time
    for i in range(2):
        print(f"result {i}", flush=True); time.sleep(0.1)
        print(f"warning {i}", file=sys.stderr, flush=True); time.sleep(0.1)
""")

# %%
async with open_stream(BOTH) as stream:
    async for line in stream:
        print(f"[{line.source}] {line.text}")

# %% [markdown]
# Within one source the order is exactly the child's. Between the two sources, lines come
# in the order they were read (the pause of 0.1 s makes that order reliable here).
# `merge_stderr=True` sends stderr into stdout, like `2>&1` in the shell.
#
# ## The awkward cases
#
# **A last line without a newline** is still a line:

# %%
async with open_stream(python("import sys; sys.stdout.write('first\\nno newline at the end')")) as stream:
    print([line.text async for line in stream])

# %% [markdown]
# **A very long line** (here 200 000 characters, no newline until the end) arrives in
# pieces of at most `limit` characters (default 65 536). Each piece but the last has
# `split=True`. Nothing is dropped, and memory stays bounded:

# %%
async with open_stream(python("print('x' * 200_000)")) as stream:
    pieces = [line async for line in stream]
[(len(piece.text), piece.split) for piece in pieces]

# %%
"".join(piece.text for piece in pieces) == "x" * 200_000

# %% [markdown]
# asyncio's own `readline()` fails on a line over its 64 KiB limit instead. On Python 3.11+
# what escapes is a **`ValueError`** (asyncio's `LimitOverrunError` is raised inside and
# converted), so `except asyncio.LimitOverrunError:` would not catch it:

# %%
child = await asyncio.create_subprocess_exec(*python("print('x' * 200_000)"),
                                             stdout=asyncio.subprocess.PIPE)
try:
    await child.stdout.readline()
except ValueError as error:
    print(f"{type(error).__name__}: {error} | a LimitOverrunError? "
          f"{isinstance(error, asyncio.LimitOverrunError)}")
rest, _ = await child.communicate()  # read the rest, so the child can exit

# %% [markdown]
# **Bytes that are not UTF-8**: some programs print Latin-1 file names or binary junk. By
# default undecodable bytes become `�` (U+FFFD) and the line still arrives:

# %%
MIXED = python(r"import sys; sys.stdout.buffer.write(b'caf\xc3\xa9 ok\n\xff\xfe not utf-8\n')")

# %%
async with open_stream(MIXED) as stream:
    print([line.text async for line in stream])

# %% [markdown]
# Need the exact bytes? Ask for them with `text=False`:

# %%
async with open_stream(MIXED, text=False) as stream:
    print([line.text async for line in stream])

# %% [markdown]
# ## Stopping early
#
# Sometimes you only need the beginning: wait for "ready", then move on. This child would
# count forever:

# %%
FOREVER = python("""
    import itertools, time
    for i in itertools.count():
        print(i, flush=True)
        time.sleep(0.05)
""")

# %% [markdown]
# Leave the loop with `break`. Leaving the `async with` block ends the child (SIGTERM to its
# whole process group), so nothing keeps running in the background:

# %%
async with open_stream(FOREVER) as stream:
    async for line in stream:
        if line.text == "3":
            break
print("exit status:", stream.returncode, "| still running:", session_members([stream.pid]))

# %% [markdown]
# `-15` means "ended by SIGTERM" (negative numbers are signals, as in `subprocess`).
#
# ## What the original gets wrong
#
# **It does not compile.** §2.2 and §2.3 use `Stdio::piped()` but never import `Stdio`.
# Here is what rustc 1.95 says about the same lines (with `std::process`, which shares the
# names):
#
# ```text
# error[E0433]: cannot find type `Stdio` in this scope
#  --> stdio.rs:6:17
#   |
# 6 |         .stdout(Stdio::piped())
#   |                 ^^^^^ use of undeclared type `Stdio`
#   |
# help: consider importing this struct
#   |
# 1 + use std::process::Stdio;
# ```
#
# **It panics on output that is not UTF-8.** `lines.next_line().await.unwrap()` turns an
# `InvalidData` error into a crash of the reading task (compiled here with std's `lines()`,
# which fails the same way):
#
# ```text
# [stdout] ok
# thread 'main' panicked at utf.rs:7:25:
# called `Result::unwrap()` on an `Err` value: Error { kind: InvalidData,
#     message: "stream did not contain valid UTF-8" }
# ```
#
# The direct Python translation has the same flaw: decoding strictly crashes on the second
# line of `MIXED`.

# %% tags=["raises-exception"]
async with open_stream(MIXED, text=False) as stream:
    async for line in stream:
        print(line.text.decode("utf-8"))

# %% [markdown]
# The fix is a decision, not a bigger `unwrap`: keep bytes (`text=False`), or decode with a
# replacement policy (the default, `errors="replace"`), and the stream goes on.
#
# ## Recap
#
# - `async with open_stream(cmd) as stream: async for line in stream:` gives lines as they
#   arrive; `line.source`, `line.text`, `line.time`, `line.split`.
# - stdout and stderr are read at the same time, so neither pipe can fill up and block the
#   child.
# - A last line without newline arrives; a long line arrives in pieces; bad bytes become `�`
#   unless you ask for bytes.
# - `break` out of the loop and the child is ended with its whole group. After the loop,
#   `stream.returncode` is the exit status.
#
# ## Exercises
#
# **02.1** Complete `count_sources(cmd)`: run `cmd` and return how many lines it printed on
# each stream, as `{"stdout": n, "stderr": m}`.

# %% tags=["raises-exception"]
async def count_sources(cmd):
    counts = {"stdout": 0, "stderr": 0}
    raise NotImplementedError("stream cmd and count its lines by source")

await exercises.check_count_sources(count_sources)

# %% jupyter={"source_hidden": true}
# One solution
async def count_sources(cmd):
    counts = {"stdout": 0, "stderr": 0}
    async with open_stream(cmd) as stream:
        async for line in stream:
            counts[line.source] += 1
    return counts

await exercises.check_count_sources(count_sources)

# %% [markdown]
# **02.2** Complete `first_match(cmd, word)`: return the text of the first line that
# contains `word` *as soon as it arrives* (the check's child keeps running for 3 s after
# it), or `None` if no line does.

# %% tags=["raises-exception"]
async def first_match(cmd, word):
    raise NotImplementedError("return the first line containing word, then stop")

await exercises.check_first_match(first_match)

# %% jupyter={"source_hidden": true}
# One solution
async def first_match(cmd, word):
    async with open_stream(cmd) as stream:
        async for line in stream:
            if word in line.text:
                return line.text
    return None

await exercises.check_first_match(first_match)
