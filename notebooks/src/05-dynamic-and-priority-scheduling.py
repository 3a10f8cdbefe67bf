# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Dynamic and priority scheduling (§3.5, §3.6)
#
# Real work does not arrive as one neat batch: requests trickle in while earlier ones still
# run, and some are more urgent than others. This notebook adds jobs to a running pool,
# runs the urgent ones first, and fixes the two scheduling bugs of the original.
#
# You will be able to…
# - submit work to a pool while it runs, from any task, with no polling;
# - stop a pool cleanly when the work is done;
# - run smaller priority numbers first and keep FIFO order among equals;
# - see how the number of workers changes throughput, with the pool explorer.

# %%
# %matplotlib inline
import heapq
import time
from collections import deque

import anyio
from asyncproc_kit import ProcessPool, Progress, Timeline, exercises, plots, run, widgets
from asyncproc_kit.testing import EXIT, SLEEP, python

# %% [markdown]
# ## Work that arrives while the pool runs (§3.5)
#
# The original keeps commands in a mutex-protected queue. Each worker loops forever: take a
# command if there is one, otherwise sleep 100 ms and look again.
#
# ```rust
# loop {
#     let cmd = { let mut q = queue.lock().await; q.pop_front() };
#     match cmd {
#         Some(cmd) => { let _ = Command::new(&cmd).output().await; }
#         None => { tokio::time::sleep(Duration::from_millis(100)).await; }
#     }
# }
# ```
#
# ### What the original gets wrong
#
# A job that arrives just after a look waits up to 100 ms for the next one; idle workers
# wake ten times a second for nothing; and the loop has no exit, so the scheduler can only
# be killed, never stopped. Here it is in Python, faithfully:

# %%
class PollingScheduler:
    def __init__(self, workers):
        self.workers, self.queue, self.lock = workers, deque(), anyio.Lock()
        self.timeline, self.idle_wakeups = Timeline(), 0

    async def submit(self, command, label):
        async with self.lock:
            self.queue.append((command, label, self.timeline.now()))

# %%
async def poll_forever(self):
    while True:
        async with self.lock:
            job = self.queue.popleft() if self.queue else None
        if job is None:
            self.idle_wakeups += 1
            await anyio.sleep(0.1)
            continue
        command, label, queued = job
        await run(command, timeline=self.timeline, label=label)
        next(s for s in self.timeline.spans if s.label == label).queued = queued

PollingScheduler.poll_forever = poll_forever

# %% [markdown]
# Two workers; eight quick jobs arrive one every 0.13 s. Since the loop never ends by
# itself, we give the whole thing 1.5 s and then cancel it:

# %%
async def trickle(submit, count=8, gap=0.13):
    for i in range(count):
        await anyio.sleep(gap)
        await submit(python("pass"), label=f"job {i}")

# %%
poller = PollingScheduler(workers=2)
with anyio.move_on_after(1.5) as scope:
    async with anyio.create_task_group() as tg:
        for _ in range(poller.workers):
            tg.start_soon(poller.poll_forever)
        await trickle(poller.submit)
print("stopped on its own:", not scope.cancelled_caught)

# %%
waits = [s.waited for s in poller.timeline.spans]
print(f"average wait before a job started: {1000 * sum(waits) / len(waits):.0f} ms")
print("idle wake-ups that found nothing: more than 10:", poller.idle_wakeups > 10)

# %% [markdown]
# **The fix:** idle workers *block* on the queue and are woken by the submit itself; closing
# the pool wakes them to leave. That is how `ProcessPool` works; `submit` can be called
# while it runs, from any task. The same trickle:

# %%
with anyio.move_on_after(1.5) as scope:
    async with ProcessPool(workers=2) as pool:
        await trickle(pool.submit)
print("stopped on its own:", not scope.cancelled_caught)

# %%
pool_waits = [s.waited for s in pool.timeline.spans]
print(f"average wait before a job started: {1000 * sum(pool_waits) / len(pool_waits):.0f} ms")
print("started sooner than the poller:", sum(pool_waits) < sum(waits))

# %% [markdown]
# Side by side (the light part of a bar is the time a job waited to start):

# %%
plots.plot_timeline(poller.timeline, title="polling every 100 ms: jobs wait for the next look")

# %%
plots.plot_timeline(pool.timeline, title="ProcessPool: a submit wakes a worker at once")

# %% [markdown]
# The number of workers can change while the pool runs. Start with one, then allow four:
# running jobs are never interrupted, new ones start as workers appear.

# %%
async with ProcessPool(workers=1) as pool:
    for i in range(9):
        await pool.submit(SLEEP(0.2), label=f"job {i}")
    await anyio.sleep(0.3)
    pool.workers = 4
print("at most at once:", pool.timeline.peak_concurrency())

# %%
plots.plot_timeline(pool.timeline, title="1 worker, then 4")

# %% [markdown]
# ## Priorities (§3.6)
#
# The original orders its tasks for Rust's `BinaryHeap`, which always pops the *largest*:
#
# ```rust
# impl Ord for PrioritizedTask {
#     fn cmp(&self, other: &Self) -> Ordering {
#         other.priority.cmp(&self.priority)  // 高优先级在前 ("high priority first")
#             .then_with(|| self.id.cmp(&other.id))
#     }
# }
# ```
#
# ### What the original gets wrong
#
# The priority comparison is reversed (`other` before `self`), so the *smallest* number
# counts as largest and pops first, whatever the comment says. That is a fine convention
# once it is stated. The tie-break is not reversed: among equal priorities the largest `id`,
# the **newest** task, pops first. Here is that `cmp`, translated literally, on a max-heap:

# %%
def compare(a, b):
    return (a > b) - (a < b)

class RustTask:
    def __init__(self, priority, id):
        self.priority, self.id = priority, id

    def cmp(self, other):  # the original's Ord::cmp, line by line
        return compare(other.priority, self.priority) or compare(self.id, other.id)

    def __lt__(self, other):  # heapq pops the smallest: invert to get Rust's max-heap
        return self.cmp(other) > 0

# %% [markdown]
# Five tasks, all priority 1 except task 3 (priority 0), submitted in id order:

# %%
heap = []
for id, priority in enumerate([1, 1, 1, 0, 1]):
    heapq.heappush(heap, RustTask(priority, id))
print("pop order:", [heapq.heappop(heap).id for _ in range(5)])

# %% [markdown]
# Task 3 first (smallest number), then **4, 2, 1, 0**: last in, first out. With a steady
# stream of equal-priority work that is starvation: every round one new task arrives and
# one is popped, and the first task never gets its turn.

# %%
heap = [RustTask(1, 0)]
for new_id in range(1, 11):
    heapq.heappush(heap, RustTask(1, new_id))
    heapq.heappop(heap)
print("task 0 still waiting after 10 rounds:", any(task.id == 0 for task in heap))

# %% [markdown]
# **The fix:** say which way the numbers go (here: smaller = more urgent, like Unix `nice`)
# and break ties by submission order with a sequence number, so heap entries are
# `(priority, sequence, job)`:

# %%
heap = []
for seq, priority in enumerate([1, 1, 1, 0, 1]):
    heapq.heappush(heap, (priority, seq, f"task {seq}"))
print("pop order:", [heapq.heappop(heap)[2] for _ in range(5)])

# %% [markdown]
# `ProcessPool.submit(cmd, priority=...)` does exactly that. One worker is kept busy so the
# others queue; the timeline records the order they really started in:

# %%
async with ProcessPool(workers=1) as pool:
    busy = await pool.submit(SLEEP(0.3), label="busy")
    await busy.wait_started()
    for i, priority in enumerate([2, 1, 2, 0, 1, 2]):
        await pool.submit(python("pass"), priority=priority, label=f"p{priority} #{i}")

# %%
started = sorted(pool.timeline.spans, key=lambda span: span.started)
print(" -> ".join(span.label for span in started))

# %%
plots.plot_timeline(pool.timeline, title="smaller priority first, FIFO among equals")

# %% [markdown]
# A running job is never interrupted for a more urgent one: priority decides only which
# queued job starts next.
#
# ## The pool explorer
#
# How many workers are worth having? Move the sliders and press **Run**: each run submits
# the jobs to a `ProcessPool` and draws its timeline with the throughput. Try 12 jobs with
# 1, 2, 4 and 12 workers, then 13 jobs with 4 workers (one job alone in its last wave).

# %%
widgets.pool_explorer()

# %% [markdown]
# For a long batch, `progress=True` shows how many jobs are done, failed and running (a bar
# in the notebook, a text line in a terminal); a `Progress` of your own keeps the counts:

# %%
progress = Progress(description="jobs")
async with ProcessPool(workers=4, progress=progress) as pool:
    for i in range(20):
        await pool.submit(EXIT(1 if i == 7 else 0), check=True)
print(progress)

# %% [markdown]
# ## Recap
#
# - Polling wastes wake-ups, adds up to a whole interval of delay, and never stops. Block
#   on the queue instead, and let submit and close do the waking.
# - `async with ProcessPool(workers=N) as pool:` `job = await pool.submit(cmd,
#   priority=p)` at any time, from any task; `await job` for the result; leaving the block
#   finishes the queue; `pool.workers = M` resizes it while it runs.
# - Priorities: state the direction (smaller = sooner here) and keep FIFO among equals with
#   a sequence number; the original's heap pops equal priorities newest first.
#
# ## Exercises
#
# **05.1** Complete `start_order(submissions)`: it gets `(name, priority)` pairs in
# submission order and returns the names in the order a scheduler must start them
# (smaller priority first, FIFO among equals). Use `heapq`.

# %% tags=["raises-exception"]
def start_order(submissions):
    heap = []
    raise NotImplementedError("push (priority, sequence, name) entries, then pop them all")

exercises.check_start_order(start_order)

# %% jupyter={"source_hidden": true}
# One solution
def start_order(submissions):
    heap = []
    for seq, (name, priority) in enumerate(submissions):
        heapq.heappush(heap, (priority, seq, name))
    return [heapq.heappop(heap)[2] for _ in range(len(heap))]

exercises.check_start_order(start_order)

# %% [markdown]
# **05.2** Commands arrive one by one from `arrivals` (an async iterator; the next one
# comes a moment later). Complete `run_feed(arrivals)`: submit each command to a
# `ProcessPool` **as soon as it arrives**, and return the `ProcessResult`s in arrival
# order.

# %% tags=["raises-exception"]
async def run_feed(arrivals):
    raise NotImplementedError("async for command in arrivals: submit it")

await exercises.check_feed(run_feed)

# %% jupyter={"source_hidden": true}
# One solution
async def run_feed(arrivals):
    async with ProcessPool(workers=2) as pool:
        jobs = [await pool.submit(command) async for command in arrivals]
    return [await job for job in jobs]

await exercises.check_feed(run_feed)
