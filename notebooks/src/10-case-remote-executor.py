# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Case study: a remote executor (case 2)
#
# The original's second case study is a "distributed task executor": a TCP server that
# receives a task (a program and its arguments), runs it and sends back the output. CI
# runners, job queues, notebook kernels and cluster workers all have this shape. As written,
# it is also a remote shell for anyone who can reach the port.
#
# You will be able to…
# - exploit a naive executor, and name the four assumptions that make it exploitable;
# - put messages on a byte stream with a length prefix, authenticate them with an HMAC, and
#   refuse replays, oversized frames and clients that send slowly on purpose;
# - run a requested command safely: an allowlist resolved at start, no shell, a fixed
#   environment, capped output, a timeout that ends the whole process group;
# - test a network service the way an attacker would: with raw bytes;
# - run the same commands on a Dask cluster when one machine is not enough, and make
#   cancelling them really stop their processes.

# %%
import hashlib
import hmac
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import psutil
from anyio.abc import SocketAttribute

from asyncproc_kit import ProcessError, exercises, run, stopwatch
from asyncproc_kit.cases.cluster import DaskRunner
from asyncproc_kit.cases.executor import (ExecutorClient, ExecutorError, decode_frame,
                                          encode_frame, new_request, serve_executor)
from asyncproc_kit.testing import EXIT, SLEEP, SPAWN_GRANDCHILDREN, descendants, python

# %% [markdown]
# ## The original (Rust, case 2)
#
# ```rust
# let (mut socket, addr) = self.listener.accept().await?;
# tokio::spawn(async move {
#     let mut buffer = vec![0; 4096];
#     match socket.read(&mut buffer).await {
#         Ok(n) => {
#             let task: Task = bincode::deserialize(&buffer[..n]).unwrap();
#             let output = Command::new(&task.command)
#                 .args(&task.args)
#                 .output()
#                 .await
#                 .unwrap();
#             // ... serialize a TaskResult and write it back
# ```
#
# Read what it trusts: that whoever connects may run things (no authentication), that one
# `read()` is one whole message (no framing), that the message is well formed (`unwrap`),
# and that the command is harmless (no allowlist).
#
# ## What the original gets wrong
#
# Here is the same design in a few lines of Python, on loopback, running its commands in a
# temporary folder. JSON stands in for bincode. A handler that raises prints what tokio
# prints for a panicking task, and the connection just closes.

# %%
workdir = Path(tempfile.mkdtemp(prefix="naive-"))


async def naive_handler(stream):
    async with stream:
        try:
            task = json.loads(await stream.receive(4096))  # one read = one message?
            result = await run([task["command"], *task["args"]], cwd=workdir, check=False)
            reply = {"id": task["id"], "success": result.returncode == 0,
                     "output": result.stdout}
            await stream.send(json.dumps(reply).encode())
        except Exception as exc:
            print(f"connection task panicked: {exc!r}")


# %% [markdown]
# A server that runs the handler for every connection while a block runs, and a client that
# sends its bytes (in pieces, if we ask) and reads the reply:

# %%
@asynccontextmanager
async def naive_server():
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, naive_handler)
        yield listener.extra(SocketAttribute.local_address)[:2]
        tg.cancel_scope.cancel()


async def naive_call(address, *pieces):
    async with await anyio.connect_tcp(*address) as stream:
        for piece in pieces:
            await stream.send(piece)
            await anyio.sleep(0.3)  # the network may deliver a message in pieces
        try:
            return json.loads(await stream.receive())
        except anyio.EndOfStream:
            return "(connection closed, no reply)"


# %% [markdown]
# Nothing stops a client from naming a shell. One request, and a file appears on the server:

# %%
exploit = json.dumps({"id": 1, "command": "sh", "args": ["-c", "echo pwned > marker"]}).encode()
async with naive_server() as address:
    print(await naive_call(address, exploit))
print("marker on the server says:", (workdir / "marker").read_text().strip())

# %% [markdown]
# Instead of `echo pwned` it could have been `curl ... | sh`. And an honest client whose
# message arrives in two pieces (TCP promises a stream of bytes, not messages) gets nothing
# back: the first piece alone is not JSON.

# %%
async with naive_server() as address:
    print(await naive_call(address, exploit[:20], exploit[20:]))
shutil.rmtree(workdir)  # the naive server's folder, marker included

# %% [markdown]
# The fixes, one per assumption:
#
# | the original trusts | the fix |
# |---|---|
# | whoever connects | listen on loopback by default; sign every message with a shared key (HMAC-SHA256), with a nonce and a timestamp so a recorded message cannot be replayed |
# | one read = one message | a length prefix, a size limit, a deadline for the whole frame |
# | the message is well formed | check the MAC *before* parsing, parse strictly, answer every problem with an error code and keep serving |
# | the command is harmless | an allowlist of exact names, resolved to absolute paths at start; no shell, a fixed environment and folder, capped output, a timeout that ends the whole group |
#
# Real systems learned these the hard way (the sidebar at the end tells how Dask and Ray
# did). Jupyter, whose kernels run whatever code they are sent, signs every kernel message
# with HMAC-SHA256 under a per-kernel key from the connection file, and keeps a bounded
# history of signatures to refuse duplicates.
#
# ## The kit's executor
#
# `serve_executor` takes the allowlist (name → program) and a per-command timeout. It binds
# 127.0.0.1 on a free port and makes a fresh 32-byte key; the client needs both.

# %%
ALLOW = {"echo": "echo", "py": sys.executable}
async with serve_executor(ALLOW, timeout=5) as server:
    async with ExecutorClient(server.address, server.key) as client:
        print(await client.run(["echo", "hello", "from", "the", "executor"]))
    host, port = server.address
    print(f"listened on {host}:{port}, allow {sorted(server.allow)}, "
          f"key of {len(server.key)} bytes")

# %% [markdown]
# Even a client that holds the key cannot run a shell: `sh` is not on the list. The refusal
# is an `ExecutorError` with a code, and nothing was started.

# %%
async with serve_executor(ALLOW, timeout=5) as server:
    async with ExecutorClient(server.address, server.key) as client:
        try:
            await client.run(["sh", "-c", "echo pwned > marker"])
        except ExecutorError as exc:
            print(exc.code, "|", exc.message)
    print("marker exists:", (Path(server.cwd) / "marker").exists(),
          "| processes started:", server.stats["spawned"])

# %% [markdown]
# ### The wire format
#
# Every message, in both directions, is one frame: a 4-byte big-endian length (32 +
# the body's length), the HMAC-SHA256 of the body under the key (32 bytes), and the body, a
# UTF-8 JSON object. With a fixed key the bytes are always the same:

# %%
frame = encode_frame(b"k" * 32, {"v": 1, "id": "a"})
print("length:", frame[:4].hex(), "=", int.from_bytes(frame[:4], "big"))
print("mac:   ", frame[4:36].hex()[:24], "...")
print("body:  ", frame[36:])

# %% [markdown]
# A request body holds `v` (1), an `id`, a `nonce` (32 random hex digits), `ts` (the
# client's clock) and `argv`; `new_request` fills them in:

# %%
request = new_request(["echo", "hi"])
print(sorted(request), "| nonce is", len(request["nonce"]), "hex digits")

# %% [markdown]
# ### Attacks, shown running
#
# To attack it we need raw bytes, not the polite client. `attack` sends bytes on a new
# connection (a byte at a time with a pause, if asked) and reports the error code of the
# reply, or that the server closed the connection without one. `signed` MACs any body, even
# a broken one, with the server's key: the attacks below that need it are what a client
# holding the key could still try.

# %%
async def attack(server, data, *, pause=None):
    pieces = [data[i:i + 1] for i in range(len(data))] if pause else [data]
    got = b""
    async with await anyio.connect_tcp(*server.address) as stream:
        try:
            for piece in pieces:
                await stream.send(piece)
                await anyio.sleep(pause or 0)
            while len(got) < 4 or len(got) < 4 + int.from_bytes(got[:4], "big"):
                got += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            return "closed without a reply"
    reply = decode_frame(server.key, got)
    return reply["error"]["code"] if reply["error"] else f"ran: {reply['stdout']!r}"


def signed(server, body):
    body = body if isinstance(body, bytes) else json.dumps(body).encode()
    mac = hmac.new(server.key, body, hashlib.sha256).digest()
    return (32 + len(body)).to_bytes(4, "big") + mac + body


# %% [markdown]
# After each group of attacks we check two things: nothing was started, and a good call is
# still answered at once.

# %%
async def still_serving(server):
    async with ExecutorClient(server.address, server.key) as client:
        result, seconds = await timed_call(client)
    print(f"processes started before this call: {server.stats['spawned'] - 1}; "
          f"a good call answered within 1 s: {seconds < 1} ({result.stdout.strip()!r})")


async def timed_call(client):
    begun = time.monotonic()
    result = await client.run(["echo", "still", "here"])
    return result, time.monotonic() - begun


LIMITS = {"timeout": 5, "frame_deadline": 0.5, "max_output": 1000}

# %% [markdown]
# **Authentication and replay.** A forged MAC, a body changed after signing, a MAC made
# with another key; then a good frame, the very same frame again, and one with yesterday's
# timestamp.

# %%
async with serve_executor(ALLOW, **LIMITS) as server:
    good = signed(server, new_request(["echo", "hi"]))
    attacks = {
        "forged MAC": good[:4] + secrets.token_bytes(32) + good[36:],
        "body changed after signing": good.replace(b'"hi"', b'"ho"'),
        "MAC under another key": encode_frame(secrets.token_bytes(32), new_request(["echo"])),
        "a good frame": good,
        "the same frame again": good,
        "a day-old timestamp": signed(server, new_request(["echo"]) | {"ts": time.time() - 86400}),
    }
    for name, data in attacks.items():
        print(f"{name:<28} -> {await attack(server, data)}")
    print(f"spawned by the attacks: {server.stats['spawned']} (the good frame)")

# %% [markdown]
# **Length abuse and slow clients.** A length field of 2^31, an HTTP request and a TLS
# handshake (their first 4 bytes read as a huge length), a length that promises more than is
# ever sent, one too short to hold a MAC, and a valid frame sent a byte every 20 ms (each
# read is quick, but the whole frame is not there within the 0.5 s `frame_deadline`).

# %%
async with serve_executor(ALLOW, **LIMITS) as server:
    attacks = {
        "length 2^31": (2**31).to_bytes(4, "big"),
        "GET / HTTP/1.1": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "TLS ClientHello": bytes.fromhex("16030100f5010000f10303") + secrets.token_bytes(64),
        "promises 1000, sends 10": (1000).to_bytes(4, "big") + b"x" * 10,
        "length 0": (0).to_bytes(4, "big"),
    }
    for name, data in attacks.items():
        print(f"{name:<28} -> {await attack(server, data)}")
    print(f"{'slowloris, a byte per 20 ms':<28} -> "
          f"{await attack(server, signed(server, new_request(['echo'])), pause=0.02)}")
    await still_serving(server)

# %% [markdown]
# **Strict JSON and type confusion.** Python's `json` keeps the *last* of two duplicate
# keys (a proxy that reads the first would see another request), accepts `NaN`, and
# recurses on nesting. These are `malformed`; a well-formed body with the wrong types is a
# `bad-request`, and that connection stays open.

# %%
async with serve_executor(ALLOW, **LIMITS) as server:
    body = json.dumps(new_request(["echo", "hi"]))[:-1]
    attacks = {
        "duplicate argv key": body + ', "argv": ["py", "-c", "print(1)"]}',
        "NaN": body + ', "x": NaN}',
        "nested 40 deep": body + ', "x": ' + "[" * 40 + "]" * 40 + "}",
        "a 5000-digit number": body + ', "x": ' + "9" * 5000 + "}",
        "argv as one string": new_request(["echo"]) | {"argv": "echo hi"},
        "a NUL in an argument": new_request(["echo", "a\0b"]),
        "timeout of a day": new_request(["echo"], timeout=86400),
    }
    for name, data in attacks.items():
        data = data.encode() if isinstance(data, str) else data
        print(f"{name:<28} -> {await attack(server, signed(server, data))}")
    await still_serving(server)

# %% [markdown]
# **Allowlist bypasses.** Names match exactly. A path, other case, a trailing space, a
# fullwidth `ｅｃｈｏ` or `..` are all other names, even when they would find the same program.

# %%
async with serve_executor(ALLOW, **LIMITS) as server:
    names = {"/bin/sh": "/bin/sh", "echo's full path": server.allow["echo"], "ECHO": "ECHO",
             "'echo '": "echo ", "fullwidth echo": "\uff45\uff43\uff48\uff4f",
             "../echo": "../echo", "python": "python"}
    for label, name in names.items():
        data = signed(server, new_request([name, "-c", "echo pwned"]))
        print(f"{label:<28} -> {await attack(server, data)}")
    await still_serving(server)

# %% [markdown]
# **No shell, ever.** Shell syntax in arguments arrives as plain text: `echo` prints it.

# %%
async with serve_executor(ALLOW, **LIMITS) as server:
    async with ExecutorClient(server.address, server.key) as client:
        result = await client.run(["echo", "$(touch pwned)", "; rm -rf ~", "`reboot`", "| sh"])
    print(result.stdout, end="")
    print("files made on the server:", sorted(p.name for p in Path(server.cwd).iterdir()))

# %% [markdown]
# **Output floods and runaways.** Output beyond `max_output` (1000 bytes here) per stream is
# read and thrown away, and `truncated` says so. A command past its timeout is ended with its
# whole process group (SIGTERM, a grace period, SIGKILL), grandchildren included, before the
# reply goes out.

# %%
FLOOD = "import sys; sys.stdout.write('x' * 10_000_000)"
RUNAWAY = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""

# %%
def running(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async with serve_executor(ALLOW, **LIMITS) as server:
    async with ExecutorClient(server.address, server.key) as client:
        flood = await client.run(["py", "-c", FLOOD])
        print(f"10 MB flood: kept {len(flood.stdout)} characters, truncated={flood.truncated}")
        try:
            await client.run(["py", "-c", RUNAWAY], timeout=1.5)
        except ExecutorError as exc:
            print(exc.code, "|", exc.message)
            print("grandchild still running:", running(int(exc.stdout)))
    await still_serving(server)

# %% [markdown]
# **Too many connections.** With `max_connections=3`, three open connections fill the
# server; the fourth is answered `busy` and closed. The cap bounds how many commands can run
# at once, and how many sockets a flood can hold.

# %%
async with serve_executor(ALLOW, **LIMITS | {"max_connections": 3}) as server:
    async with AsyncExitStack() as stack:
        for _ in range(3):
            client = await stack.enter_async_context(ExecutorClient(server.address, server.key))
            await client.run(["echo"])
        print("connections:", server.connections, "| a fourth:",
              await attack(server, signed(server, new_request(["echo"]))))

# %% [markdown]
# Every refusal is counted in `server.stats`, with `"spawned"` for the commands started,
# so a monitoring system can see an attack as it happens.
#
# The executor is built on anyio sockets, so it runs on trio as well. The kernel's loop is
# asyncio, so trio gets its own process:

# %%
TRIO = """
import anyio
from asyncproc_kit.cases.executor import ExecutorClient, serve_executor

async def main():
    async with serve_executor(["echo"], timeout=5) as server:
        async with ExecutorClient(server.address, server.key) as client:
            print((await client.run(["echo", "hello from trio"])).stdout, end="")

anyio.run(main, backend="trio")
"""
print((await run(python(TRIO))).stdout, end="")

# %% [markdown]
# ## When one machine is not enough
#
# The executor above runs commands on one machine. When a batch outgrows it, a cluster
# scheduler spreads the work over many: here Dask distributed, whose scheduler hands tasks
# to worker processes on any number of machines. `DaskRunner` sends each command to a
# worker, runs it there with the kit's own guarantees (its own process group, output
# captured, a timeout that ends the whole group) and brings back what `map_limited` would.

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

# %% [markdown]
# ## Recap
#
# - The naive executor trusted the network, the read size, the message and the command:
#   one request ran a shell, and a message in two pieces got no answer.
# - Frames carry their length, so a message may arrive in any number of pieces; limits on
#   size and on the *whole* frame's time stop oversized and slow clients.
# - Every frame is authenticated with HMAC-SHA256, compared with `hmac.compare_digest`
#   *before* the body is parsed; a nonce and a timestamp stop replays.
# - Parse strictly (duplicate keys, NaN, depth, huge numbers) and check types; every
#   problem gets a code, and the server keeps serving others.
# - Run only exact allowlisted names, resolved at start, without a shell, with a fixed
#   environment and folder, capped output, and a timeout that ends the whole group.
# - On a cluster, `DaskRunner` gives the same outcomes as `map_limited`; cancelling it stops
#   the children on the workers, which `Future.cancel()` alone does not. A scheduler runs
#   whatever a client sends: give it TLS with client certificates and bind it where you mean.
#
# ## Exercises
#
# ### 10.1 A frame by hand
#
# Write `make_frame(key, body)`: `body` is a JSON body already encoded to bytes; return the
# frame: the length (4 bytes, big-endian, 32 + `len(body)`), `HMAC-SHA256(key, body)` (32
# raw bytes), then the body. The check compares your bytes and sends your last frame to a
# real executor.

# %% tags=["raises-exception"]
def make_frame(key, body):
    raise NotImplementedError("replace this line with your code")


await exercises.check_make_frame(make_frame)

# %% jupyter={"source_hidden": true}
# Solution
def make_frame(key, body):
    mac = hmac.new(key, body, hashlib.sha256).digest()
    return (32 + len(body)).to_bytes(4, "big") + mac + body


await exercises.check_make_frame(make_frame)

# %% [markdown]
# ### 10.2 MAC first, parser second
#
# This server checks the MAC, but only after parsing. Anyone, without the key, reaches the
# parser, and a parser is a big attack surface: here 30,000 `[` blow Python's `json` up.

# %%
def open_frame_buggy(key, payload, parse):
    request = parse(payload[32:])
    expected = hmac.new(key, payload[32:], hashlib.sha256).digest()
    return request if hmac.compare_digest(payload[:32], expected) else None


try:
    open_frame_buggy(b"k" * 32, secrets.token_bytes(32) + b"[" * 30000, json.loads)
except RecursionError as exc:
    print("reached the parser without the key:", type(exc).__name__)

# %% [markdown]
# Write `open_frame(key, payload, parse)`: `payload` is the 32-byte MAC followed by the
# body. Return `parse(body)` if the MAC is right, `None` if not, and never call `parse` on a
# body whose MAC is wrong. Compare MACs in constant time.

# %% tags=["raises-exception"]
def open_frame(key, payload, parse):
    raise NotImplementedError("replace this line with your code")


exercises.check_open_frame(open_frame)

# %% jupyter={"source_hidden": true}
# Solution
def open_frame(key, payload, parse):
    mac, body = payload[:32], payload[32:]
    if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()):
        return None
    return parse(body)


exercises.check_open_frame(open_frame)
