# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# ## When one machine is not enough
#
# The executor above runs commands on one machine. When a batch outgrows it, a cluster
# scheduler spreads the work over many: here Dask distributed, whose scheduler hands tasks
# to worker processes on any number of machines. `DaskRunner` sends each command to a
# worker, runs it there with the kit's own guarantees (its own process group, output
# captured, a timeout that ends the whole group) and brings back what `map_limited` would.
#
# The names this section uses (the notebook's import cell would hold them):

# %%
import subprocess
import sys

import anyio
import psutil

from asyncproc_kit import ProcessError, stopwatch
from asyncproc_kit.cases.cluster import DaskRunner
from asyncproc_kit.testing import EXIT, SLEEP, SPAWN_GRANDCHILDREN, descendants

# %% [markdown]
# With no address, `DaskRunner` starts a cluster on this machine: a scheduler and two worker
# processes, on 127.0.0.1 only, with no dashboard. `start()` keeps it running across the
# next cells (`async with DaskRunner() as runner:` does the same for one block).

# %%
runner = DaskRunner(n_workers=2)
async with stopwatch() as sw:
    await runner.start()
print(f"scheduler at {runner.address}, started in {sw.elapsed:.2f} s")

# %% [markdown]
# ### The same batch, on the cluster
#
# One command that works, one that fails, one that does not exist, one that runs too long.
# Each outcome comes back in input order as the same result or error `map_limited` gives.
# `limit=2` is counted across the whole cluster, not per worker.

# %%
batch = [["echo", "hello from a worker"], EXIT(3, "disk full"), ["no-such-tool"], SLEEP(30)]
outcomes = await runner.map(batch, limit=2, timeout=0.5)
for outcome in outcomes:
    print(f"{type(outcome).__name__:14}", outcome if isinstance(outcome, ProcessError)
          else outcome.stdout.strip())

# %% [markdown]
# ### Cancel means stop
#
# To see what the workers run, a small `ps`: every live process below the two worker
# processes (they are on this machine, so we can look).

# %%
workers = list((await runner.worker_pids()).values())


def on_workers():
    """The command line of every process the workers started, as `ps` would show it."""
    rows = []
    for pid in workers:
        for proc in map(psutil.Process, descendants(pid)):
            rows.append(" ".join(proc.cmdline()).replace(sys.executable, "python")[:64])
    return sorted(rows)


async def until(check):
    """Wait until ``check()`` is true (processes come and go without telling us)."""
    with anyio.fail_after(30):
        while not check():
            await anyio.sleep(0.05)

# %% [markdown]
# Three commands, each a shell that starts two sleepers, so two workers run six processes.
# We cancel the caller once they all run; `map` sets each task's stop event, each worker
# ends its child's whole group, and only then does the cancellation go on.

# %%
async with anyio.create_task_group() as tg:
    tg.start_soon(runner.map, [SPAWN_GRANDCHILDREN(2, seconds=60)] * 3)
    await until(lambda: len(on_workers()) == 6)
    print("running:", *on_workers(), sep="\n  ")
    cancelled = anyio.current_time()
    tg.cancel_scope.cancel()
stopped = anyio.current_time() - cancelled
print(f"stopped in {stopped:.2f} s (within grace + 2 s: {stopped < 4}); left:", on_workers())

# %% [markdown]
# Compare with what plain Dask offers. Here a worker runs `subprocess.run` (a blocking call
# on the worker's thread), and we call `Future.cancel()`. It returns at once and the future
# says `cancelled`, but the child goes on, and the worker's slot stays busy with it.

# %%
future = runner.client.submit(subprocess.run, SLEEP(60), pure=False)
await until(lambda: len(on_workers()) == 1)
future.cancel()
await anyio.sleep(1)
print(future.status, on_workers())

# %% [markdown]
# Nothing on the cluster will stop it now: the only way out is to find the process and kill
# it by hand. (Closing the cluster would not help either: the worker process is ended and
# its child, still running, is orphaned.)

# %%
for pid in workers:
    for proc in map(psutil.Process, descendants(pid)):
        proc.kill()
await until(lambda: not on_workers())
print("after kill:", on_workers())

# %% [markdown]
# ### A real cluster, and who may use it
#
# A Dask scheduler runs whatever task a connected client sends it: tasks travel as pickled
# functions. Over plain `tcp://` nobody is asked who they are, so even on loopback every
# user and container sharing the machine could run code as you. That is why
# `DaskRunner`'s own cluster speaks TLS with client certificates from a throw-away
# certificate authority (`security=False` turns that off). A client without the
# certificate is turned away:

# %%
for address in (runner.address, runner.address.replace("tls://", "tcp://")):
    try:
        async with DaskRunner(address=address, timeout=5):
            pass
    except Exception as error:
        print(address.split(":")[0], "refused:", type(error).__name__)

# %% [markdown]
# On real machines someone starts `dask scheduler` and `dask worker tls://HOST:8786` with
# certificates from their own authority (see Dask's "TLS/SSL" documentation); you connect
# with your client certificate. Every worker needs `asyncproc-kit` installed, because the
# function each task runs lives in the package. The call looks like this:
#
# ```python
# from distributed import Security
#
# security = Security(tls_ca_file="ca.pem", tls_client_cert="me.pem",
#                     tls_client_key="me-key.pem", require_encryption=True)
# async with DaskRunner(address="tls://scheduler.example.org:8786", security=security) as runner:
#     outcomes = await runner.map(batch, limit=50, timeout=600, retries=1)
# ```
#
# The same call works against our cluster, with its certificates:

# %%
async with DaskRunner(address=runner.address, security=runner.security) as remote:
    print((await remote.run(["echo", "over TLS, with a certificate"])).stdout.strip())

# %% [markdown]
# Every listener of the scheduler and the workers is on loopback. Dask also always opens an
# HTTP port without authentication, even with no dashboard; it usually takes 8787, so a
# second notebook's cluster would clash with the first. Here it is on a random port and
# answers `/health` only.

# %%
listening = {conn.laddr for pid in workers for conn in psutil.Process(pid).net_connections()
             if conn.status == psutil.CONN_LISTEN}
print("worker listeners on", sorted({ip for ip, _ in listening}),
      "| port 8787 used:", runner.cluster.scheduler.http_server.port == 8787)

# %% [markdown]
# Closing the runner closes the cluster: no worker and no child is left.

# %%
await runner.aclose()
print("workers still alive:", [pid for pid in workers if psutil.pid_exists(pid)
                               and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE])

# %% [markdown]
# > **Sidebar: Ray, and how these systems learned about security.**
# > [Ray](https://www.ray.io/) is the other popular Python cluster framework. Its dashboard
# > and Jobs API run any job they are sent, and for years they did so without
# > authentication, by design: the documentation said a cluster belongs in a trusted
# > network. In 2023 that was filed as CVE-2023-48022 (the vendor disputes it for that
# > reason); in March 2024 researchers reported it exploited in the wild as "ShadowRay",
# > with exposed clusters running attackers' jobs, leaking credentials and mining
# > cryptocurrency. Ray 2.52 added token authentication, off by default; its documentation
# > announces it on by default for local clusters from 2.59 and for all clusters from 2.61.
# > Dask had its own lesson: before 2021.10.0 a `LocalCluster`'s workers listened on all
# > interfaces instead of loopback (CVE-2021-42343), so a "local" cluster could be reached,
# > and made to run code, from the network. The pattern is the one of the seed's executor:
# > a service that runs what it is sent must decide who may send, and bind where it means to.
