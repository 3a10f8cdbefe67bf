# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Case study: a log aggregator (case 3)
#
# A web server, a worker, a scheduler: each writes its own log, and you want to watch them
# as **one stream**, every line tagged with where it came from. That sounds like a loop and a
# channel. The hard parts are the ones nobody mentions: a Python child that says nothing
# until it exits, a line that is not UTF-8, a consumer that cannot keep up, and children that
# must not outlive you.
#
# You will be able to…
# - merge the output of several processes into one tagged stream, in the children's exact
#   order per source, with colours in a terminal and in a notebook;
# - explain why a Python child's output through a pipe arrives only at its exit, and fix it;
# - choose what happens when the consumer is slow (wait, or drop the oldest) and *prove*
#   from the sequence numbers what was lost;
# - read the summary: lines, bytes, drops and exit status per process.

# %%
import io
import os
import shlex
import sys

import anyio

from asyncproc_kit import exercises, open_stream, run
from asyncproc_kit.cases.logs import aggregate, use_color
from asyncproc_kit.testing import SPAWN_GRANDCHILDREN, python, session_members

# %% [markdown]
# ## The original (Rust, case 3)
#
# ```rust
# struct LogAggregator {
#     log_tx: mpsc::Sender<(String, String)>,  // (source, line)
# }
#
# impl LogAggregator {
#     async fn monitor_process(&self, name: String, cmd: &str) -> Result<(), Box<dyn Error>> {
#         let mut child = Command::new(cmd).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
#         let tx = self.log_tx.clone();
#         tokio::spawn(async move {
#             let mut lines = BufReader::new(stdout).lines();
#             while let Some(line) = lines.next_line().await.unwrap() {
#                 tx.send((name_clone.clone(), line)).await.ok();
#             }
#         });
#         // ... the same for stderr, with "[ERROR] " glued to the front of each line
#         child.wait().await?;
#         Ok(())
#     }
# }
#
# // main
# let (aggregator, mut log_rx) = LogAggregator::new();
# tokio::spawn({ let agg = aggregator.clone(); async move { agg.monitor_process(...).await.ok(); } });
# tokio::spawn({ let agg = aggregator.clone(); async move { agg.monitor_process(...).await.ok(); } });
# while let Some((source, line)) = log_rx.recv().await {
#     println!("[{}] {}", source, line);
# }
# ```
#
# ## What the original gets wrong
#
# **It does not compile.** `aggregator.clone()` needs `Clone`, which `LogAggregator` never
# derives. rustc 1.95 on the same struct (with `std::sync::mpsc`):
#
# ```text
# error[E0599]: no method named `clone` found for struct `LogAggregator` in the current scope
#   --> clone.rs:16:26
#    |
#  3 | struct LogAggregator {
#    | -------------------- method `clone` not found for this struct
# ...
# 16 |     let agg = aggregator.clone();
#    |                          ^^^^^ method not found in `LogAggregator`
#    |
#    = note: the following trait defines an item `clone`, perhaps you need to implement it:
#            candidate #1: `Clone`
# ```
#
# **With `#[derive(Clone)]` it compiles, and never ends.** The receiving loop stops only when
# *every* sender is gone, and `main` still holds `aggregator` (and so a sender). Compiled with
# `std` threads, it prints both lines and then waits forever (`timeout 3` ended it, exit 124).
# The same program in Python, with anyio's channel whose send end can be cloned:

# %%
async def service(name, tx):
    async with tx:  # this clone closes when the service is done
        await tx.send((name, "done"))

# %%
send, receive = anyio.create_memory_object_stream(100)
with send, receive:
    async with anyio.create_task_group() as tg:
        for name in ["service1", "service2"]:
            tg.start_soon(service, name, send.clone())
        with anyio.move_on_after(0.3) as waiting:
            async for source, line in receive:
                print(f"[{source}] {line}")
print("still waiting after 0.3 s:", waiting.cancelled_caught)

# %% [markdown]
# The fix is to give up the original sender once the clones are handed out (in Rust,
# `drop(aggregator)`); then the loop ends when the last service does:

# %%
send, receive = anyio.create_memory_object_stream(100)
with receive:
    async with anyio.create_task_group() as tg:
        for name in ["service1", "service2"]:
            tg.start_soon(service, name, send.clone())
        send.close()
        async for source, line in receive:
            print(f"[{source}] {line}")
print("the loop ended by itself")

# %% [markdown]
# **One line that is not UTF-8 kills the reader.** `next_line().await.unwrap()` panics on
# invalid UTF-8 (notebook 02 shows the panic). The Python translation, decoding each line
# strictly, loses everything after the bad line:

# %%
BAD_BYTES = python(r"import sys; sys.stdout.buffer.write(b'ok\n\xff\xfe not utf-8\nlater\n')")

# %%
kept = []
try:
    async with open_stream(BAD_BYTES, text=False) as stream:
        async for line in stream:
            kept.append(line.text.decode("utf-8"))  # like .unwrap()
except UnicodeDecodeError as exc:
    print(f"reader crashed ({exc.reason}); kept {kept}")

# %% [markdown]
# `aggregate` replaces what cannot be decoded with `�` and goes on:

# %%
async with aggregate({"bad": BAD_BYTES}) as logs:
    print([line.text async for line in logs])

# %% [markdown]
# The original also glues `"[ERROR] "` into the text of stderr lines (the source belongs in
# its own field), starts `Command::new("your_service1")` with a whole command line as the
# program name, and says nothing about a consumer slower than the services. We come to that.
#
# ## The buffering surprise
#
# Here is a plain Python child (no `-u`) that prints a tick every 0.15 s. Through a pipe,
# Python buffers its output in blocks, so the three ticks arrive together, at the exit:

# %%
TICKS = [sys.executable, "-c",
         "import time\nfor i in range(3):\n    print('tick', i)\n    time.sleep(0.15)"]
PLAIN_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}

async def arrivals(commands, **options):
    """Did the lines arrive all at once (in one read), or while the child ran?"""
    async with aggregate(commands, env=PLAIN_ENV, **options) as logs:
        times = [line.time async for line in logs]
    return f"{len(times)} lines, all at once: {len(set(times)) == 1}"

# %%
await arrivals({"py": TICKS}, unbuffered=False)

# %% [markdown]
# The usual advice, `stdbuf -oL`, changes the buffering of C's stdio. Python does its own,
# so it does not help:

# %%
await arrivals({"py": ["stdbuf", "-oL", *TICKS]}, unbuffered=False)

# %% [markdown]
# What Python listens to is `PYTHONUNBUFFERED=1` (or `python -u`). `aggregate` sets it for
# every child unless you pass `unbuffered=False`, so by default each tick arrives on its own:

# %%
await arrivals({"py": TICKS})

# %% [markdown]
# Other languages have their own switches (C programs: `stdbuf -oL` does work there; many
# tools have a `--line-buffered` flag).
#
# ## Two processes, one stream
#
# A small "web server" and a "worker" that fails on its last job:

# %%
WEB = python("""
    import sys, time
    for path in ["/", "/about", "/missing"]:
        print(f"GET {path}", "404" if path == "/missing" else "200")
        time.sleep(0.05)
    print("slow request: 1.2 s", file=sys.stderr)
""")
WORKER = python("""
    import sys, time
    for job in range(1, 4):
        print(f"job {job} started"); time.sleep(0.05)
    print("job 3 failed: disk full", file=sys.stderr)
    sys.exit(1)
""")

# %%
async with aggregate({"web": WEB, "worker": WORKER}) as logs:
    lines = [line async for line in logs]
len(lines)

# %% [markdown]
# Every line is a `LogLine`: `name`, `source`, `seq` (numbered per name and source from 0),
# `time` (seconds since the aggregator started), `text` and `split`:

# %%
lines_of_web = [line for line in lines if line.name == "web"]
first = lines_of_web[0]
print(first.name, first.source, first.seq, f"{first.time:.2f} s", repr(first.text), first.split)

# %% [markdown]
# Within one child and source, the order is exactly the child's. *Between* the two children,
# lines come in the order they were read, which the scheduler decides and which changes from
# run to run. So that this page reads the same every time, we show the merged stream sorted
# by `seq` (a round-robin of the children); `logs.view(...)` renders it with a colour per
# name and stderr in red:

# %%
logs.view(sorted(lines, key=lambda line: (line.seq, logs.names.index(line.name),
                                          line.source != "stdout")))

# %% [markdown]
# In a terminal, `logs.format(line, color=True)` gives the same with ANSI colour codes.
# `use_color()` decides: never when `NO_COLOR` is set (a convention many tools follow), always
# when `FORCE_COLOR` is, otherwise only when the output is a terminal. The Jupyter kernel
# sets `FORCE_COLOR=1` for the programs it starts, because a notebook shows ANSI colours, so
# here it says yes (the command line at the end of this notebook colours its output too):

# %%
print(repr(logs.format(first, color=True)))
print("colour here:", use_color(), "| to a file:", use_color(io.StringIO(), environ={}),
      "| with NO_COLOR=1:", use_color(environ={"NO_COLOR": "1", "FORCE_COLOR": "1"}))

# %% [markdown]
# ## The summary
#
# After the block, `logs.summary[name]` says what happened to each child: lines delivered
# per source, bytes read from its pipes, lines dropped, and the exit status. A failed child
# does not raise; it is reported:

# %%
for summary in logs.summary.values():
    print(summary)

# %% [markdown]
# ## A consumer that cannot keep up
#
# This child writes 20,000 lines at once; our consumer pauses 1 ms every 200 lines. Only
# `buffer` lines (here 100) may wait between them. What then?

# %%
FLOOD = python("""
    import sys
    sys.stdout.write("".join(f"event {i}\\n" for i in range(20_000)))
""")

async def slow_reader(overflow):
    got = []
    async with aggregate({"flood": FLOOD}, buffer=100, overflow=overflow) as logs:
        async for line in logs:
            got.append(line)
            if len(got) % 200 == 0:
                await anyio.sleep(0.001)  # slower than the producer
    return got, logs

# %% [markdown]
# `overflow="block"` (the default) stops reading when the buffer is full, so the child waits
# on its full pipe: slower, and nothing is lost.

# %%
got, logs = await slow_reader("block")
summary = logs.summary["flood"]
print("delivered:", summary.stdout_lines, "| dropped:", summary.dropped)
print("seq is 0, 1, 2, ... without a gap:", [line.seq for line in got] == list(range(20_000)))
print("never more than 100 lines held:", logs.peak <= 100)

# %% [markdown]
# `overflow="drop_oldest"` keeps reading and throws the oldest waiting lines away: memory
# stays bounded and the child never waits. What was dropped differs from run to run, but it
# is never silent: each drop is counted, and shows as a jump in `seq`:

# %%
got, logs = await slow_reader("drop_oldest")
summary = logs.summary["flood"]
seqs = [line.seq for line in got]
jumps = sum(b - a - 1 for a, b in zip(seqs, seqs[1:]))
print("some lines dropped:", summary.dropped > 0)
print("delivered + dropped = 20,000:", summary.stdout_lines + summary.dropped == 20_000)
print("jumps in seq (and before the first, after the last) = dropped:",
      seqs[0] + jumps + (19_999 - seqs[-1]) == summary.dropped)
print("never more than 100 lines held:", logs.peak <= 100)

# %% [markdown]
# Which to choose? `block` when every line matters (an audit log, a build); `drop_oldest` when
# you watch a live service and would rather see *now* than everything.
#
# ## Leaving early
#
# `break` out of the loop (or an exception, or a cancelled cell): every child's whole process
# group is ended, here two shells and the background sleepers each of them started:

# %%
async with aggregate({"a": SPAWN_GRANDCHILDREN(2), "b": SPAWN_GRANDCHILDREN(2)}) as logs:
    async for line in logs:
        break
pids = [summary.pid for summary in logs.summary.values()]
print("left running:", session_members(pids))
print({name: summary.returncode for name, summary in logs.summary.items()})

# %% [markdown]
# ## From the command line
#
# The module is also a small tool in the spirit of `concurrently`: `NAME=COMMAND` pairs (split
# like a shell would, but run without one), tagged lines on stdout, the summary on stderr,
# and the exit status of the first command that failed. `--kill-others-on-fail` stops the
# rest when one fails (`--kill-others`: when one exits at all):

# %%
SERVE = "import time; time.sleep(30)"
FAIL = "import sys; sys.exit('database unreachable')"  # prints it on stderr, exit status 1
done = await run([sys.executable, "-m", "asyncproc_kit.cases.logs", "--kill-others-on-fail",
                  f"web={sys.executable} -c {shlex.quote(SERVE)}",
                  f"job={sys.executable} -c {shlex.quote(FAIL)}"],
                 check=False)
print("exit status:", done.returncode)
print(done.stdout + done.stderr)

# %% [markdown]
# ## Recap
#
# - `async with aggregate({"web": cmd1, "worker": cmd2}) as logs: async for line in logs:`
#   gives one stream of `LogLine(name, source, seq, time, text, split)`.
# - Per name and source: the child's exact order, `seq` without gaps, the last line even
#   without a newline, long lines split (marked), bad bytes replaced.
# - Python children get `PYTHONUNBUFFERED=1`, or their lines arrive only at exit;
#   `stdbuf -oL` does not help Python.
# - A slow consumer: `overflow="block"` loses nothing; `"drop_oldest"` bounds memory and
#   every drop is counted and visible in `seq`.
# - `logs.summary[name]`: lines, bytes, drops, exit status. Leaving the block ends every
#   child's group. `logs.view(lines)` and `logs.format(line, color=...)` show them.
# - It runs on trio as well as asyncio (the kit's tests run every case on both).
#
# ## Exercises
#
# **11.1** The consumer sees only `LogLine`s. Complete `find_gaps(lines)`: return, for each
# `(name, source)`, how many lines were dropped before the last one you received, from the
# `seq` numbers alone. The check feeds it lines from a real `drop_oldest` run.

# %% tags=["raises-exception"]
def find_gaps(lines):
    missing = {}
    raise NotImplementedError("count the seq numbers missing per (name, source)")

await exercises.check_find_gaps(find_gaps)

# %% jupyter={"source_hidden": true}
# One solution
def find_gaps(lines):
    last, count = {}, {}
    for line in lines:
        key = (line.name, line.source)
        last[key] = line.seq
        count[key] = count.get(key, 0) + 1
    return {key: last[key] + 1 - count[key] for key in last}

await exercises.check_find_gaps(find_gaps)

# %% [markdown]
# **11.2** Complete `stop_on_failure(commands)`: run the commands together; as soon as one
# exits with a non-zero status, stop the others; return `{name: returncode}` for all of them.
# (`logs.exits()` yields `(name, returncode)` as children end; `await logs.terminate()`
# stops the ones still running.)

# %% tags=["raises-exception"]
async def stop_on_failure(commands):
    raise NotImplementedError("watch logs.exits() and stop the rest on a failure")

await exercises.check_stop_on_failure(stop_on_failure)

# %% jupyter={"source_hidden": true}
# One solution
async def stop_on_failure(commands):
    async with aggregate(commands) as logs:
        async for name, returncode in logs.exits():
            if returncode != 0:
                await logs.terminate()
    return {name: summary.returncode for name, summary in logs.summary.items()}

await exercises.check_stop_on_failure(stop_on_failure)
