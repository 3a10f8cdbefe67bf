# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Timeouts and cancellation (§4.1–§4.4)
#
# A process that hangs must not hang your program. This notebook puts deadlines on child
# processes and stops them: politely first, firmly if needed, and completely, the children's
# own children included. Then it stops many at once.
#
# You will be able to…
# - put a deadline on a command and get an error that says which limit fired and keeps the
#   output printed so far;
# - show with a process listing that nothing is left behind: no zombie, no orphan;
# - escalate SIGTERM → grace period → SIGKILL, and read the signals on a timeline;
# - explain why killing a shell leaves its background jobs running, and end the whole group;
# - cancel a whole batch at once and read how each process ended.

# %%
# %matplotlib inline
import signal
import subprocess
import sys

import anyio
import psutil

from asyncproc_kit import (ProcessFailed, ProcessGroup, ProcessTimeout, SpawnError, Timeline,
                           exercises, plots, run, stopwatch)
from asyncproc_kit.testing import IGNORE_SIGTERM, SLEEP, SPAWN_GRANDCHILDREN, python, session_members

# %% [markdown]
# Two small helpers to look at processes, the way `ps` would. The kit starts every child as
# the leader of a new *session*, and whatever it starts stays in that session, so
# `session_members` finds a child's whole family, orphans included.

# %%
def ps(pids):
    """State and command of every live process in these children's sessions."""
    rows = []
    for proc in map(psutil.Process, session_members(pids)):
        command = " ".join("python" if a == sys.executable else a for a in proc.cmdline())
        rows.append(f"{proc.status():9} {command[:55]}")
    return sorted(rows)


def zombies():
    """Our children that have exited but were never waited for."""
    return [p.pid for p in psutil.Process().children() if p.status() == psutil.STATUS_ZOMBIE]

# %% [markdown]
# ## A deadline on one command (§4.1)
#
# The original wraps `output()` in `tokio::time::timeout`:
#
# ```rust
# let result = timeout(Duration::from_secs(5),
#                      Command::new("sleep").arg("10").output()).await;
# match result {
#     Ok(Ok(output)) => println!("✅ 完成: {}", output.status),       // "done"
#     Ok(Err(e))     => eprintln!("❌ 进程错误: {}", e),              // "process error"
#     Err(_)         => eprintln!("⏰ 超时！进程运行超过5秒"),         // "timeout! ran over 5 s"
# }
# ```
#
# With the kit, `timeout=` works as in `subprocess.run`. The error names the command, the
# limit, and what happened to the child:

# %%
try:
    await run(SLEEP(10), timeout=0.3)
except ProcessTimeout as error:
    print(error)

# %% [markdown]
# A timeout does not throw away what the child had already printed. This one prints three
# lines, then hangs:

# %%
HANGS = python("""
    import time
    for i in range(3):
        print(f"step {i} done", flush=True)
    time.sleep(30)
""")

# %%
try:
    await run(HANGS, timeout=0.5)
except ProcessTimeout as error:
    print(f"limit: {error.limit} ({error.timeout} s); printed so far: {error.stdout!r}")

# %% [markdown]
# When the deadline belongs to the *caller* (several steps, one budget), use anyio's scopes
# instead. `move_on_after` gives up quietly; `fail_after` raises `TimeoutError`. Either way
# the child is terminated before your code continues:

# %%
with anyio.move_on_after(0.3) as scope:
    await run(SLEEP(10))
print("gave up:", scope.cancelled_caught)

# %% [markdown]
# `ProcessTimeout` is also a `TimeoutError`, so one `except TimeoutError` catches both kinds;
# only `run(timeout=)` can give you the partial output, because only it knows the child.
#
# ## Nothing left behind (§4.2)
#
# A timed-out child must be *ended* (no orphan keeps running) and *waited for* (no zombie
# stays in the process table). This command is a shell with two background jobs, the kind
# of child that leaves orphans:

# %%
timeline = Timeline()
try:
    await run(SPAWN_GRANDCHILDREN(2), timeout=0.5, timeline=timeline)
except ProcessTimeout as error:
    print("timed out; it had printed:", repr(error.stdout))
shell = timeline.spans[0]
print("left in its session:", ps([shell.pid]), "| zombies:", zombies())

# %% [markdown]
# Empty and empty. What would a zombie look like? Kill a child without waiting for it:

# %%
child = subprocess.Popen(SLEEP(10))
child.kill()
await anyio.sleep(0.2)
print("state after kill, before wait:", psutil.Process(child.pid).status())
child.wait()
print("after wait, the pid still exists:", psutil.pid_exists(child.pid))

# %% [markdown]
# A zombie holds no memory, but it holds its pid and an entry in the process table until
# its parent reads its exit status. Leak them in a long-running service and `fork` starts
# failing. The kit always waits for what it started.
#
# ## Polite, then firm (§4.3)
#
# The original sends SIGTERM, sleeps 5 s, and kills what is left:
#
# ```rust
# let _ = kill(pid, Signal::SIGTERM);
# sleep(Duration::from_secs(5)).await;   // always the full 5 s
# if child.try_wait()?.is_none() {
#     child.kill().await?;
# }
# ```
#
# The same in Python, with a grace of 0.5 s instead of 5 s. The child exits as soon as it
# gets SIGTERM, but we wait anyway:

# %%
GRACE = 0.5
child = subprocess.Popen(SLEEP(10))
async with stopwatch() as sw:
    child.send_signal(signal.SIGTERM)
    await anyio.sleep(GRACE)              # the original's sleep(5 s)
    if child.poll() is None:
        child.kill()
child.wait()
print(f"took {sw.elapsed:.2f} s; waited the whole grace: {sw.elapsed >= GRACE}")

# %% [markdown]
# Better: wait until the child exits *or* the grace period passes, whichever comes first.
# That is what the kit does everywhere. Two children, one that exits on SIGTERM and one that
# ignores it, cancelled together, recorded on a timeline:

# %%
timeline = Timeline()
async with ProcessGroup(grace=GRACE, timeline=timeline) as group:
    group.start(SLEEP(10), label="exits on SIGTERM")
    stubborn = group.start(IGNORE_SIGTERM(10), label="ignores SIGTERM")
    while "ready" not in stubborn.stdout:   # it has installed its handler
        await anyio.sleep(0.05)
    reports = await group.cancel()

# %%
for report in reports:
    print(f"{report.label:17} ended by {report.how:8} after {report.elapsed:.2f} s")
print("the polite one was not kept waiting:", reports[0].elapsed < GRACE / 2)

# %% [markdown]
# On the timeline, ▼ marks the SIGTERM and ✕ the SIGKILL, half a second later, for the
# stubborn one only:

# %%
plots.plot_timeline(timeline)

# %% [markdown]
# For a single process there is `await terminate(process, grace=...)`: the same escalation,
# and it returns a `Termination` that says which step ended it and how long it took.
#
# ## The grandchild that survives (§4.4)
#
# The original cancels each process with `child.kill()`. That signals one pid. If the child
# is a shell, its background jobs are other processes, and they keep running. Here is
# exactly that, with `subprocess.Popen` (no new session):

# %%
shell = subprocess.Popen(SPAWN_GRANDCHILDREN(2), stdout=subprocess.PIPE, text=True)
shell.stdout.readline()                       # "ready": both background jobs run
grandchildren = psutil.Process(shell.pid).children()
shell.kill()                                  # the original's child.kill()
shell.wait()
print("still running:", [g.is_running() and g.status() != "zombie" for g in grandchildren])
print("orphaned (no longer the shell's children):", [g.ppid() != shell.pid for g in grandchildren])

# %% [markdown]
# Orphans: re-parented to init, running for another minute with nobody to stop them. We
# clean them up by hand:

# %%
for g in grandchildren:
    g.kill()
shell.stdout.close()

# %% [markdown]
# The kit starts each child in its own process group and signals the *group*, so the
# background jobs get the same SIGTERM as the shell. Five such shells, cancelled together
# by a deadline around the group:

# %%
with anyio.move_on_after(1.0):
    async with ProcessGroup(grace=GRACE) as group:
        for i in range(5):
            group.start(SPAWN_GRANDCHILDREN(2), label=f"shell {i}")
        while len(ps([m.pid for m in group.members])) < 15:
            await anyio.sleep(0.05)
        print("running before the deadline:", len(ps([m.pid for m in group.members])))
        await group.wait()                    # they would run for a minute

# %%
print("how they ended:", sorted({r.how for r in group.reports}))
print("left behind:", ps([r.pid for r in group.reports]), "| zombies:", zombies())

# %% [markdown]
# Fifteen processes (five shells, ten background jobs) running; none left. Cancelling
# terminates every member *at the same time*: twenty stubborn children take one grace
# period, not twenty.
#
# ## A deadline for a whole batch
#
# `ProcessGroup(timeout=...)` puts one deadline on everything started in the block. When it
# fires, the error says so, and each child's report keeps its partial output:

# %%
try:
    async with ProcessGroup(timeout=0.5, grace=GRACE) as group:
        group.start(HANGS, label="hangs")
        group.start(python("print('quick')"), label="quick")
except TimeoutError as error:
    print(error)
    for report in error.reports:
        print(f"  {report.label}: {report.reason}, {report.stdout!r}")

# %% [markdown]
# ## A job-control shell: the group is not the whole family
#
# A shell with job control (`set -m`, as in an interactive terminal) gives each background
# job a process group *of its own*, so a signal to the shell's group misses it. The job is
# still in the shell's *session*, and on Linux the kit ends the whole session: it finds the
# other groups' members in `/proc` and signals them with the shell.

# %%
import os

from asyncproc_kit import open_stream, terminate

SLEEPER = f"{sys.executable} -c 'import time; time.sleep(60)'"
JOB_CONTROL = ["bash", "-c", f"set -m; {SLEEPER} & echo ready; wait"]

async with open_stream(JOB_CONTROL) as shell:
    async for line in shell:
        break                                 # "ready": the background job runs
    groups = {"the shell's group" if os.getpgid(pid) == shell.pid else "a group of its own"
              for pid in session_members([shell.pid])}
    print("the session holds:", sorted(groups))
    ended = await terminate(shell, grace=GRACE)
print(ended.how, "| left behind:", ps([shell.pid]))

# %% [markdown]
# One limit no library can cross: a grandchild that calls `setsid()` itself leaves the
# session too, and then nothing links it to the shell any more (`docs/guarantees.md` lists
# what the kit covers and why).

# %% [markdown]
# ## What the original gets wrong
#
# **§4.2 and §4.4 spawn `Command::new("sleep 100")`.** That asks for a program whose name is
# `sleep 100`, space included, which does not exist, so every call fails before anything
# runs. The kit refuses a string outright and shows the list form:

# %% tags=["raises-exception"]
await run("sleep 100", timeout=3)

# %% [markdown]
# And a one-element list with the space is exactly the original's mistake:

# %% tags=["raises-exception"]
await run(["sleep 100"], timeout=3)

# %% [markdown]
# **§4.2 calls `wait_with_output()` after `wait()`** on a child whose output was never piped:
# there is nothing to collect. `run` pipes and reads stdout and stderr from the start.
#
# **§4.3 always sleeps the full 5 s** after SIGTERM, shown running above: the fix is to wait
# for exit *or* the grace period.
#
# **§4.4 (and §4.2) kill only the direct child**, so a shell's background jobs survive,
# shown running above: the fix is a process group per child, signalled as a whole.
#
# **§6.4's `execute_robust`** times out `child.wait_with_output()`, which has already taken
# ownership of `child`, then calls `child.kill()`: Rust rejects it ("borrow of moved value:
# `child`"). Even with that fixed, the killed child is never waited for, which is the
# zombie shown above. In Python, the three error kinds of §6.4 are three exceptions:

# %%
for cmd in (["no-such-program"], python("import sys; sys.exit(3)"), SLEEP(10)):
    try:
        await run(cmd, timeout=0.3)
    except SpawnError as e:
        print("could not start:", e.reason)
    except ProcessFailed as e:
        print("failed with exit code", e.returncode)
    except ProcessTimeout as e:
        print("timed out; terminated with", e.returncode, "| zombies:", zombies())

# %% [markdown]
# ## Recap
#
# - `run(cmd, timeout=s)` raises `ProcessTimeout` (also a `TimeoutError`) with `.limit` and
#   the partial `.stdout`/`.stderr`; `anyio.move_on_after`/`fail_after` put the deadline in
#   the caller's hands. Either way the child is terminated and waited for.
# - Termination is SIGTERM → wait for exit *or* the grace → SIGKILL, to the whole process
#   group; a child that exits at once is not kept waiting.
# - Killing one pid leaves a shell's background jobs running; a process group per child ends
#   the whole family.
# - `ProcessGroup` cancels many children at once and reports per child how it ended
#   (`exited`, `SIGTERM`, `SIGKILL`), why, and what it printed.
#
# ## Exercises
#
# **06.1** Complete `run_or_partial(cmd, seconds)`: return the command's stdout if it
# finishes within `seconds`, otherwise what it had printed until the deadline. The child
# must not outlive the call.

# %% tags=["raises-exception"]
async def run_or_partial(cmd, seconds):
    raise NotImplementedError("run cmd with a deadline; keep the output on a timeout")

await exercises.check_partial_output(run_or_partial)

# %% jupyter={"source_hidden": true}
# One solution
async def run_or_partial(cmd, seconds):
    try:
        return (await run(cmd, timeout=seconds)).stdout
    except ProcessTimeout as error:
        return error.stdout

await exercises.check_partial_output(run_or_partial)

# %% [markdown]
# **06.2** Complete `cancel_all(cmds, after, grace)`: start every command, let them run for
# `after` seconds, then cancel them all together (SIGTERM, `grace`, SIGKILL, grandchildren
# included) and return how each one ended: `"exited"`, `"SIGTERM"` or `"SIGKILL"`, in the
# order of `cmds`. The check includes three children that ignore SIGTERM: one after another
# they would take three grace periods.

# %% tags=["raises-exception"]
async def cancel_all(cmds, after, grace):
    raise NotImplementedError("start them in a ProcessGroup, sleep, cancel, report")

await exercises.check_cancel_all(cancel_all)

# %% jupyter={"source_hidden": true}
# One solution
async def cancel_all(cmds, after, grace):
    async with ProcessGroup() as group:
        for cmd in cmds:
            group.start(cmd)
        await anyio.sleep(after)
        return [report.how for report in await group.cancel(grace=grace)]

await exercises.check_cancel_all(cancel_all)
