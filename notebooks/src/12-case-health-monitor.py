# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Case study: a health monitor (case 4)
#
# A health monitor runs a small check against each service on a schedule (`curl -f
# http://.../health`, `pg_isready`) and says when a service goes down and when it comes
# back. It looks like a loop around `run()`. It is mostly about what happens when a check
# does *not* come back, and about saying "down" once instead of on every failure.
#
# You will be able to…
# - see the original's monitor freeze on a check that hangs, and fix it with a timeout that
#   ends the check's whole process group;
# - decide `up` / `down` / `recovered` with separate failure and success thresholds and a
#   start period, exactly once per transition, on a clock you move by hand;
# - show that a flapping service never alerts below its thresholds;
# - monitor two real web servers, stop one mid-run, and draw what the monitor saw.

# %%
# %matplotlib inline
import socket
import sys
import tempfile

import anyio

from asyncproc_kit import ProcessGroup, ProcessTimeout, SpawnError, exercises, run
from asyncproc_kit.cases.health import HealthMonitor, ServiceHealth, plot_health
from asyncproc_kit.exercises import HandClock
from asyncproc_kit.testing import EXIT, SLEEP, descendants, python

# %% [markdown]
# ## The original (Rust, case 4)
#
# ```rust
# handles.push(tokio::spawn(async move {
#     let mut failures = 0;
#     let mut ticker = interval(check_interval);
#     loop {
#         ticker.tick().await;
#         match Command::new("sh").arg("-c").arg(&cmd).output().await {
#             Ok(output) if output.status.success() => {
#                 if failures > 0 { println!("✅ {} recovered", name); }
#                 failures = 0;
#             }
#             _ => {
#                 failures += 1;
#                 eprintln!("⚠️  {} health check failed ({}/{})", name, failures, threshold);
#                 if failures >= threshold {
#                     eprintln!("🚨 {} is DOWN!", name);
#                     // 触发告警 (trigger the alert)
#                 }
#             }
#         }
#     }
# }));
# ```
#
# The same loop in Python, line for line. To replay a story, it takes the list of check
# commands to run, one per tick:

# %%
async def original_monitor(name, checks, threshold, interval=0.05):
    failures = 0
    for cmd in checks:
        await anyio.sleep(interval)                   # ticker.tick().await
        result = await run(cmd, check=False)          # .output().await: no timeout
        if result.returncode == 0:
            if failures > 0:
                print(f"{name} recovered")
            failures = 0
        else:
            failures += 1
            print(f"{name} health check failed ({failures}/{threshold})")
            if failures >= threshold:
                print(f"{name} is DOWN!")

# %% [markdown]
# Our checks do what `curl -f` does: a small Python script asks a web server on the
# loopback for `/` and exits 1 unless the answer is `200`. Like `curl` without `-m`, it has
# no timeout of its own.

# %%
def http_check(port):
    return python(f"""
        import socket, sys
        with socket.create_connection(("127.0.0.1", {port})) as s:
            s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
            status = s.recv(64).split(b"\\r\\n")[0].decode()
        sys.exit(0 if " 200 " in status else f"unhealthy: {{status}}")
    """)

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

# %% [markdown]
# Two kinds of broken server: one where nothing listens (the check fails at once with
# "connection refused"), and one that accepts connections and never answers (a deadlocked
# process, a full disk, a stuck proxy). The second kind is the dangerous one:

# %%
REFUSED = http_check(free_port())
stuck = socket.create_server(("127.0.0.1", 0))     # listens, never answers
HANGS = http_check(stuck.getsockname()[1])

# %% [markdown]
# ## The original, running
#
# **One hung check freezes the monitor.** The service refuses twice, then starts hanging.
# We give the loop 1.5 seconds (our own deadline, so this cell ends):

# %%
with anyio.move_on_after(1.5) as deadline:
    await original_monitor("web", [REFUSED, REFUSED, HANGS, REFUSED, REFUSED], threshold=3)
print("still waiting for the third check when our deadline hit:", deadline.cancelled_caught)

# %% [markdown]
# "2/3", then silence: the third check never returns, so the loop never counts it, never
# says DOWN, and never checks again. In production there is no deadline around it: that
# service's monitor is frozen for good while the service is plainly down. (Docker's and,
# before 1.20, Kubernetes' exec probes had the same flaw and piled up stuck processes:
# moby#43737, kubernetes#94080.) The kit ended the hung check with its group when our
# deadline cancelled it, so nothing is left behind:

# %%
print("children still running:", len(descendants()))

# %% [markdown]
# **It counts, but it does not decide.** A service that flaps (ok, fail, ok, ...) and then
# fails for good:

# %%
OK, FAIL = EXIT(0), EXIT(1)
await original_monitor("api", [OK, FAIL, OK, FAIL, FAIL, FAIL, FAIL], threshold=3)

# %% [markdown]
# "recovered" for a service that was never down; "DOWN!" on every failure past the
# threshold ("4/3"), so an alert would fire again and again. And the alert itself is a
# `println!`. (Also: the check goes through `sh -c`, so a service name or URL with a space or
# a `;` in it becomes shell syntax.)
#
# ## The fix: every check under a timeout
#
# `HealthMonitor` runs each check with `run(cmd, timeout=...)`. A check that runs out of
# time is ended with its whole process group (SIGTERM, then SIGKILL) and counts as a failure
# with reason `"timeout"`. `listeners=[print]` is our alert hook for now:

# %%
monitor = HealthMonitor(listeners=[print])
monitor.add("web", HANGS, interval=0.3, timeout=0.2, failure_threshold=3)
async with monitor:                        # checks run in the background
    await monitor.wait_for("down", "web")   # returns at the first "down" event

# %% [markdown]
# Three checks, three timeouts, one decision. Leaving the block stopped the schedule and
# ended the check that was running:

# %%
print([r.reason for r in monitor.history("web")], monitor.status("web"))
print("children still running:", len(descendants()))
stuck.close()

# %% [markdown]
# ## Deciding: thresholds on a clock you move by hand
#
# The decisions live in `ServiceHealth`, plain code with no processes and no sleeping: feed
# it check results, it answers with events. Its clock is any function that returns seconds,
# so we use notebook 08's `HandClock` and move time ourselves.
#
# The rules are Kubernetes' (separate thresholds) and Docker's (a start period):
# `failure_threshold` failures *in a row* decide `down`; `success_threshold` successes in a
# row decide `up` (the first time) or `recovered`; failures while the service is still
# starting (`start_period`) do not count.

# %%
clock = HandClock()
web = ServiceHealth("web", failure_threshold=3, success_threshold=2, start_period=25,
                    clock=clock, listeners=[print])

# %% [markdown]
# A check every 10 s. The service is still booting: its first failures are recorded but not
# counted.

# %%
for _ in range(3):
    clock.advance(10)
    web.record(False, "connection refused")
print(web.status, [r.counted for r in web.history])

# %% [markdown]
# The failure at 30 s counted (the start period ended at 25 s). Two more and it is down,
# once:

# %%
for _ in range(6):
    clock.advance(10)
    web.record(False, "connection refused")
print(web.status, "failures in a row:", web.failures)

# %% [markdown]
# One success is not enough for `success_threshold=2`:

# %%
clock.advance(10)
web.record(True)
print(web.status)

# %% [markdown]
# The second in a row is. The `recovered` event carries the outage: from the `down`
# decision (50 s) to this one (110 s).

# %%
clock.advance(10)
event = web.record(True)
event.outage

# %% [markdown]
# ## A flapping service stays quiet
#
# The original's flapping story again, on the hand clock: ok, fail, ok, fail... twenty
# times. Below both thresholds nothing is ever decided, so nothing alerts:

# %%
flappy = ServiceHealth("flappy", failure_threshold=3, success_threshold=2, clock=clock)
for ok in [True, False] * 10:
    clock.advance(10)
    flappy.record(ok)
print(flappy.status, flappy.events, len(flappy.history), "checks")

# %% [markdown]
# `plot_health` draws each service as a row: its status as a band (grey unknown, green up,
# red down) and every check as a mark where its result came in.

# %%
plot_health([web, flappy], title="hand-moved clock: 10 s between checks")

# %% [markdown]
# ## No overlap: a check slower than its interval
#
# A check that takes 0.3 s on a 0.1 s schedule. The monitor never starts a second copy
# while one runs: the tick records an `overrun` event instead, and the next check waits for
# the next free tick. Ticks stay on the grid `start + k * interval`, however long the
# checks take, so the schedule does not drift.

# %%
monitor = HealthMonitor()
monitor.add("slow", SLEEP(0.3), interval=0.1, timeout=2)
async with monitor:
    await monitor.wait_until(lambda: len(monitor.history("slow")) >= 2)

# %%
slow = monitor.history("slow")
print("checks finished:", len(slow), "| overrun ticks >= 2:",
      sum(e.kind == "overrun" for e in monitor.events) >= 2)
print("never two at once:", all(a.ended <= b.time for a, b in zip(slow, slow[1:])))

# %% [markdown]
# ## Two real services
#
# Two web servers (`python -m http.server`, each on a free loopback port, serving an empty
# folder), each with its own check. We start them in a `ProcessGroup` (notebook 06), watch
# both come up, stop `web` mid-run, and start it again.

# %%
site = tempfile.TemporaryDirectory()
web_port, docs_port = free_port(), free_port()

def http_server(port):
    return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "-d", site.name,
            str(port)]

# %% [markdown]
# A server needs a moment to start listening: `start_period=3` keeps those first
# "connection refused" from counting.

# %%
monitor = HealthMonitor()
_ = monitor.add("web", http_check(web_port), interval=0.2, timeout=1, failure_threshold=2,
                start_period=3)
_ = monitor.add("docs", http_check(docs_port), interval=0.3, timeout=1, failure_threshold=2,
                start_period=3)

# %% [markdown]
# The drill, in one block (the monitor runs only while it is open):

# %%
async with ProcessGroup() as servers:
    async with monitor:
        web_server = servers.start(http_server(web_port))
        servers.start(http_server(docs_port))
        await monitor.wait_for("up", "web")
        await monitor.wait_for("up", "docs")
        await web_server.cancel()                              # web stops mid-run
        await monitor.wait_for("down", "web")
        web_server = servers.start(http_server(web_port))     # and starts again
        await monitor.wait_for("recovered", "web")
        await anyio.sleep(0.2)
    await servers.cancel()

# %% [markdown]
# What each service went through, and why `web` was decided down:

# %%
for name, health in monitor.services.items():
    print(name, [e.kind for e in health.events if e.kind != "overrun"], health.status)
down = next(e for e in monitor.events if e.kind == "down")
print(down.reason)

# %%
recovered = next(e for e in monitor.events if e.kind == "recovered")
print(f"web was down for {recovered.outage:.2f} s")
plot_health(monitor)

# %% [markdown]
# The hollow diamonds at the start are the boot-time failures that did not count. Any
# `|` along the top is an overrun: on a busy machine a check can take longer than its
# 0.2 s interval, and the monitor skips that tick instead of starting a second copy.
#
# ## What the original gets wrong
#
# - **No timeout on the check**: one hung check freezes that service's monitor forever
#   (shown above, under our own deadline). Fix: every check under a timeout that ends its
#   whole process group and counts as a failure (`"timeout"`).
# - **It never decides**: "DOWN!" on every failure past the threshold, "recovered" after
#   any failure at all. Fix: a state machine that announces each transition once, with
#   separate failure and success thresholds.
# - **No start period**: a service that takes 20 s to boot is "down" before it ever ran.
# - **The alert is a print**: fix with listeners (`add_listener`), sync or `async def`; one
#   that raises is logged and kept in `listener_errors`, and the monitor keeps going.
# - **A shell for every check** (`sh -c`): the kit takes a list of arguments and never
#   starts a shell for you.
#
# ## Recap
#
# - `monitor.add(name, cmd, interval=, timeout=, failure_threshold=, success_threshold=,
#   start_period=)`; `async with monitor:` runs every check in the background; leaving the
#   block ends everything.
# - A check that hangs is ended with its group and counts as a failure (`"timeout"`); a
#   check still running at its next tick is not started twice (`"overrun"`); ticks stay on
#   `start + k * interval`.
# - `ServiceHealth` decides: `up` once, `down` once per outage, `recovered` once with the
#   outage's duration; failures inside the start period do not count. It is plain code, so
#   a hand-moved clock drives it in tests and here.
# - `status(name)`, `events`, `history(name)`, `wait_for(kind, name)`, and `plot_health`
#   to see it all.
#
# ## Exercises
#
# **12.1** Write the decider. `Decider(failure_threshold, success_threshold)` starts with
# `status = "unknown"`; `record(ok)` returns `"up"`, `"down"`, `"recovered"` or `None`, with
# the rules above (no clock, no start period): thresholds count results *in a row*, and
# each transition is announced once.

# %% tags=["raises-exception"]
class Decider:
    def __init__(self, failure_threshold, success_threshold):
        self.failure_threshold, self.success_threshold = failure_threshold, success_threshold
        self.status, self.failures, self.successes = "unknown", 0, 0

    def record(self, ok):
        raise NotImplementedError("count in a row; decide only when the status changes")

exercises.check_decider(Decider)

# %% jupyter={"source_hidden": true}
# One solution
class Decider:
    def __init__(self, failure_threshold, success_threshold):
        self.failure_threshold, self.success_threshold = failure_threshold, success_threshold
        self.status, self.failures, self.successes = "unknown", 0, 0

    def record(self, ok):
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.status != "up" and self.successes >= self.success_threshold:
                kind = "recovered" if self.status == "down" else "up"
                self.status = "up"
                return kind
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.status != "down" and self.failures >= self.failure_threshold:
                self.status = "down"
                return "down"
        return None

exercises.check_decider(Decider)

# %% [markdown]
# **12.2** Write one check that cannot hang. `await probe(cmd, seconds)` returns `(ok,
# reason)`: `(True, ...)` when `cmd` exits 0, `(False, ...)` when it exits non-zero or
# cannot start, and `(False, "timeout")` when it runs longer than `seconds`, with
# everything it started ended. The check tries it on a command that hangs with a child of
# its own.

# %% tags=["raises-exception"]
async def probe(cmd, seconds):
    raise NotImplementedError("run it under the timeout; every outcome is an answer")

await exercises.check_probe(probe)

# %% jupyter={"source_hidden": true}
# One solution
async def probe(cmd, seconds):
    try:
        result = await run(cmd, timeout=seconds, check=False)
    except ProcessTimeout:
        return False, "timeout"
    except SpawnError as error:
        return False, f"cannot start: {error.reason}"
    return result.returncode == 0, f"exit {result.returncode}"

await exercises.check_probe(probe)
