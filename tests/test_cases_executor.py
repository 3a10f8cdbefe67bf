"""cases.executor under attack: raw sockets speaking (and abusing) protocol version 1.

Every hostile test checks three things: the right rejection code (or a close without a
reply where the protocol says so), that nothing was spawned, and that a good call from
another connection is still answered within GOOD_CALL seconds.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import inspect
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from anyio.abc import SocketStream
from helpers import eventually, nothing_left_behind  # noqa: F401

from asyncproc_kit.cases import executor
from asyncproc_kit.cases.executor import (
    MIN_ENV,
    ExecutorClient,
    ExecutorError,
    decode_frame,
    encode_frame,
    new_request,
    serve_executor,
)

pytestmark = pytest.mark.anyio

GOOD_CALL = 1.0  # seconds: a good call must still be answered this fast (the bar)
ECHO = shutil.which("echo") or "/bin/echo"
ECHO_PATH = os.path.abspath(ECHO)
ALLOW = {"echo": ECHO, "py": sys.executable}
DEADLINE = 0.5  # frame_deadline of the test servers: slow attacks end quickly


@asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[executor.ExecutorServer]:
    settings = {"timeout": 10, "frame_deadline": DEADLINE} | options
    async with serve_executor(ALLOW, **settings) as server:
        yield server


@asynccontextmanager
async def raw(server: executor.ExecutorServer) -> AsyncIterator[SocketStream]:
    stream = await anyio.connect_tcp(*server.address)
    async with stream:
        yield stream


def frame(key: bytes, body: bytes, *, mac: bytes | None = None) -> bytes:
    """A frame around ``body`` as given (not re-encoded), MAC'd with ``key`` unless ``mac``."""
    mac = hmac.new(key, body, hashlib.sha256).digest() if mac is None else mac
    return (len(mac) + len(body)).to_bytes(4, "big") + mac + body


def body(**changes: Any) -> bytes:
    """A valid request body for ``echo hi`` with ``changes`` applied (None removes a key)."""
    request = new_request(["echo", "hi"]) | changes
    request = {k: v for k, v in request.items() if v is not None}
    return json.dumps(request).encode()


async def reply_or_close(stream: SocketStream, key: bytes, *, within: float = 10) -> Any:
    """The next reply as a dict, or None if the server closed the connection first."""
    data = bytearray()
    with anyio.fail_after(within):
        try:
            while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
                data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
            if not data:
                return None
            raise
    assert len(data) == 4 + int.from_bytes(data[:4], "big"), "more bytes than one reply"
    return decode_frame(key, bytes(data))


async def closed(stream: SocketStream, *, within: float = 10) -> bool:
    """True once the server has closed the connection (end of file or reset)."""
    with anyio.fail_after(within):
        try:
            while await stream.receive():
                pass
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
            return True
    return False  # pragma: no cover


async def refused(server: executor.ExecutorServer, data: bytes, code: str,
                  *, closes: bool) -> dict[str, Any]:
    """Send ``data`` on a new connection; the reply must carry ``code``, then the connection
    closes (``closes``) or still answers a good request."""
    async with raw(server) as stream:
        await stream.send(data)
        reply = await reply_or_close(stream, server.key)
        assert reply is not None, f"closed without a {code} reply"
        assert reply["ok"] is False
        assert reply["error"]["code"] == code, reply
        if closes:
            assert await closed(stream)
        else:
            await stream.send(encode_frame(server.key, new_request(["echo", "again"])))
            after = await reply_or_close(stream, server.key)
            assert after is not None
            assert after["stdout"] == "again\n"
    return reply


async def good_call(server: executor.ExecutorServer) -> None:
    with anyio.fail_after(GOOD_CALL):
        async with ExecutorClient(server.address, server.key) as client:
            result = await client.run(["echo", "still", "here"])
    assert result.stdout == "still here\n"


async def nothing_spawned_and_still_serving(server: executor.ExecutorServer) -> None:
    assert server.stats["spawned"] == 0
    assert server.stats["internal-error"] == 0
    await good_call(server)


# -- the happy path -------------------------------------------------------------------------------


async def test_run_returns_the_commands_output() -> None:
    """A signed request for an allowed name runs it and returns its output and status."""
    async with serving() as server, ExecutorClient(server.address, server.key) as client:
        result = await client.run(["echo", "hi"])
        failed = await client.run(["py", "-c", "import sys; print('no', file=sys.stderr); "
                                   "sys.exit(3)"])
    assert (result.returncode, result.stdout, result.stderr, result.truncated) == (
        0, "hi\n", "", False)
    assert (failed.returncode, failed.stdout, failed.stderr) == (3, "", "no\n")
    assert server.stats["spawned"] == 2


async def test_address_key_and_defaults() -> None:
    """The server binds loopback on a free port with a fresh 32-byte key each start."""
    async with serving() as one, serving() as two:
        assert one.address[0] == "127.0.0.1"
        assert one.address[1] > 0
        assert one.address[1] != two.address[1]
        assert len(one.key) == 32
        assert one.key != two.key
        assert set(one.stats) >= {"spawned", *executor.CODES}
        assert one.allow["echo"] == ECHO_PATH


async def test_one_connection_carries_many_requests_in_order() -> None:
    """Pipelined requests on one connection are answered in order."""
    async with serving() as server, raw(server) as stream:
        requests = [new_request(["echo", str(i)]) for i in range(20)]
        await stream.send(b"".join(encode_frame(server.key, r) for r in requests))
        replies = [await reply_or_close(stream, server.key) for _ in requests]
    assert [r["id"] for r in replies] == [r["id"] for r in requests]
    assert [r["stdout"] for r in replies] == [f"{i}\n" for i in range(20)]


async def test_fixed_environment_and_directory() -> None:
    """Commands see only MIN_ENV and the server's own empty directory, not the caller's."""
    os.environ["EXECUTOR_TEST_SECRET"] = "do not leak"
    try:
        async with serving() as server, ExecutorClient(server.address, server.key) as client:
            shown = await client.run(["py", "-c", "import json, os; "
                                      "print(json.dumps([dict(os.environ), os.getcwd()]))"])
            cwd = server.cwd
            assert os.listdir(cwd) == []
    finally:
        del os.environ["EXECUTOR_TEST_SECRET"]
    env, where = json.loads(shown.stdout)
    env.pop("LC_CTYPE", None)  # Python may add it for a C locale
    assert env == MIN_ENV
    assert where == cwd
    assert not Path(cwd).exists(), "the temporary directory outlived the server"  # noqa: ASYNC240


async def test_shell_metacharacters_are_printed_literally() -> None:
    """No shell: $(...), backquotes, ;, |, &&, > and globs reach the program unchanged."""
    tricks = ["$(touch pwned)", "`touch pwned2`", "; touch pwned3", "| cat", "&& id",
              "> pwned4", "*", "~", "$HOME", "'\"", "\\n"]
    async with serving() as server, ExecutorClient(server.address, server.key) as client:
        result = await client.run(["echo", *tricks])
        assert os.listdir(server.cwd) == []
    assert result.stdout == " ".join(tricks) + "\n"


async def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    """The depth limit looks at JSON structure, not at brackets inside argument strings."""
    async with serving() as server, ExecutorClient(server.address, server.key) as client:
        result = await client.run(["echo", "[" * 100 + "{" * 100 + '\\"'])
    assert result.stdout == "[" * 100 + "{" * 100 + '\\"' + "\n"


# -- authentication -------------------------------------------------------------------------------


async def test_forged_mac() -> None:
    """Random bytes where the MAC goes: bad-mac, the connection closes, nothing runs."""
    async with serving() as server:
        reply = await refused(server, frame(server.key, body(), mac=secrets.token_bytes(32)),
                              "bad-mac", closes=True)
        assert reply["id"] is None
        assert server.stats["bad-mac"] == 1
        await nothing_spawned_and_still_serving(server)


async def test_missing_mac() -> None:
    """A frame with the body only (no MAC): its first 32 bytes fail as a MAC."""
    async with serving() as server:
        data = body()
        await refused(server, len(data).to_bytes(4, "big") + data, "bad-mac", closes=True)
        await nothing_spawned_and_still_serving(server)


async def test_wrong_key_and_altered_body() -> None:
    """A MAC under another key, or a body changed after signing, is bad-mac."""
    async with serving() as server:
        await refused(server, frame(secrets.token_bytes(32), body()), "bad-mac", closes=True)
        good = frame(server.key, body())
        altered = good.replace(b'"hi"', b'"HI"')
        await refused(server, altered, "bad-mac", closes=True)
        await nothing_spawned_and_still_serving(server)


async def test_mac_is_checked_before_parsing() -> None:
    """Unsigned garbage is bad-mac, not malformed: the parser never sees it."""
    async with serving() as server:
        await refused(server, frame(b"x" * 32, b"[" * 10000), "bad-mac", closes=True)
        assert server.stats["malformed"] == 0
        await nothing_spawned_and_still_serving(server)


async def test_client_with_the_wrong_key_gets_bad_mac() -> None:
    """The high-level client reports a wrong key as bad-mac."""
    async with serving() as server:
        async with ExecutorClient(server.address, secrets.token_bytes(32)) as client:
            with pytest.raises(ExecutorError) as caught:
                await client.run(["echo", "hi"])
        assert caught.value.code == "bad-mac"
        await nothing_spawned_and_still_serving(server)


async def test_replay_on_the_same_and_a_new_connection() -> None:
    """The same signed frame a second time is replayed, wherever it comes from."""
    async with serving() as server:
        signed = frame(server.key, body())
        async with raw(server) as stream:
            await stream.send(signed)
            first = await reply_or_close(stream, server.key)
            await stream.send(signed)
            second = await reply_or_close(stream, server.key)
        assert first["ok"]
        assert second["error"]["code"] == "replayed"
        await refused(server, signed, "replayed", closes=False)
        assert server.stats["spawned"] == 2  # the first run, and refused()'s good request
        assert server.stats["replayed"] == 2


@pytest.mark.parametrize("offset", [-100, 100, -31, 1e9])
async def test_stale_timestamps(offset: float) -> None:
    """A request more than window seconds off the server's clock is stale."""
    async with serving() as server:
        await refused(server, frame(server.key, body(ts=time.time() + offset)), "stale",
                      closes=False)
        assert server.stats["spawned"] == 1  # refused()'s good request only
        await good_call(server)


async def test_a_stale_request_is_not_remembered_and_a_fresh_nonce_runs() -> None:
    """Freshness comes before the nonce check; a nonce that was refused as stale still
    counts as unseen."""
    async with serving() as server:
        nonce = secrets.token_hex(16)
        await refused(server, frame(server.key, body(nonce=nonce, ts=time.time() - 100)),
                      "stale", closes=False)
        async with ExecutorClient(server.address, server.key) as client:
            assert (await client.run(["echo", "ok"])).stdout == "ok\n"
        async with raw(server) as stream:
            await stream.send(frame(server.key, body(nonce=nonce)))
            assert (await reply_or_close(stream, server.key))["ok"]


async def test_remembered_nonces_are_forgotten_after_two_windows() -> None:
    """The replay memory stays bounded: a nonce is kept only while a request carrying it
    could still be fresh."""
    async with serving(window=0.3) as server:
        async with ExecutorClient(server.address, server.key) as client:
            for _ in range(5):
                await client.run(["echo"])
            assert len(server._seen) == 5
            await anyio.sleep(0.7)
            await client.run(["echo"])
        assert len(server._seen) == 1


# -- length abuse, slow and idle clients ----------------------------------------------------------


@pytest.mark.parametrize("data", [
    (2 ** 31).to_bytes(4, "big") + b"x" * 100,
    (2 ** 32 - 1).to_bytes(4, "big"),
    (65536 + 1).to_bytes(4, "big") + b"x" * 1000,
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8.0\r\n\r\n",
    # the start of a TLS 1.2/1.3 ClientHello record: 0x16 0x03 0x01, then a length
    bytes.fromhex("160301020001000200 0303".replace(" ", "")) + secrets.token_bytes(300),
], ids=["2^31", "2^32-1", "max+1", "http", "tls-client-hello"])
async def test_too_large_is_refused_before_reading_the_rest(data: bytes) -> None:
    """A length field over max_frame (as HTTP and TLS look) gets too-large and a close."""
    async with serving() as server:
        reply = await refused(server, data, "too-large", closes=True)
        assert reply["id"] is None
        await nothing_spawned_and_still_serving(server)


@pytest.mark.parametrize("length", [0, 1, 31])
async def test_frames_shorter_than_a_mac_close_the_connection(length: int) -> None:
    """Length 0..31 cannot hold a MAC: the connection is closed without a reply."""
    async with serving() as server, raw(server) as stream:
        await stream.send(length.to_bytes(4, "big") + b"x" * length)
        assert await reply_or_close(stream, server.key) is None
        assert server.stats["incomplete"] == 1
        await nothing_spawned_and_still_serving(server)


async def test_a_frame_cut_by_end_of_file() -> None:
    """A peer that closes mid-frame is dropped; nothing runs."""
    async with serving() as server:
        async with raw(server) as stream:
            await stream.send(frame(server.key, body())[:-5])
            await stream.send_eof()
            assert await reply_or_close(stream, server.key) is None
        await eventually(lambda: server.stats["incomplete"] == 1)
        await nothing_spawned_and_still_serving(server)


async def test_more_promised_than_sent() -> None:
    """A length field that promises more than ever arrives: closed at the frame deadline."""
    async with serving() as server, raw(server) as stream:
        await stream.send((1000).to_bytes(4, "big") + b"x" * 10)
        began = time.monotonic()
        await good_call(server)  # answered while the other frame hangs
        assert await reply_or_close(stream, server.key) is None
        assert time.monotonic() - began < DEADLINE + 5
        assert server.stats["slow"] == 1
        assert server.stats["spawned"] == 1


async def test_slowloris_one_byte_at_a_time() -> None:
    """A valid frame trickled a byte every 50 ms never completes within the whole-frame
    deadline, although every single read is quick: the connection is closed."""
    async with serving() as server, raw(server) as stream:
        data = frame(server.key, body())

        async def trickle() -> None:
            try:
                for byte in data:
                    await stream.send(bytes([byte]))
                    await anyio.sleep(0.05)
            except (anyio.BrokenResourceError, OSError):
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(trickle)
            await anyio.sleep(0.2)
            await good_call(server)
            assert await reply_or_close(stream, server.key) is None
            tg.cancel_scope.cancel()
        assert server.stats["slow"] == 1
        assert server.stats["spawned"] == 1  # the good call only


async def test_idle_connections_are_closed() -> None:
    """A connection that sends nothing is closed after frame_deadline."""
    async with serving() as server, raw(server) as stream:
        assert await closed(stream, within=DEADLINE + 5)
        assert server.stats["idle"] == 1
        await nothing_spawned_and_still_serving(server)


async def test_client_reconnects_after_an_idle_close() -> None:
    """A client idle longer than the server's deadline still works: it reconnects once."""
    async with serving(frame_deadline=0.2) as server:
        async with ExecutorClient(server.address, server.key) as client:
            await client.run(["echo", "one"])
            await eventually(lambda: server.stats["idle"] == 1)
            assert (await client.run(["echo", "two"])).stdout == "two\n"
        assert server.stats["spawned"] == 2


# -- floods ---------------------------------------------------------------------------------------


async def test_connection_cap_answers_busy() -> None:
    """Beyond max_connections a connection gets busy and is closed; after the flood, calls
    are answered again."""
    async with serving(max_connections=4, frame_deadline=5) as server:
        async with ExecutorClient(server.address, server.key) as a, \
                ExecutorClient(server.address, server.key) as b, \
                ExecutorClient(server.address, server.key) as c, \
                ExecutorClient(server.address, server.key) as d:
            for client in (a, b, c, d):
                await client.run(["echo", "hold"])
            assert server.connections == 4
            spawned = server.stats["spawned"]
            reply = await refused(server, frame(server.key, body()), "busy", closes=True)
            assert reply["id"] is None
            assert server.stats["spawned"] == spawned
        await eventually(lambda: server.connections == 0)
        await good_call(server)


async def test_garbage_flood() -> None:
    """A megabyte of random bytes is refused (too-large or bad-mac) and changes nothing."""
    async with serving() as server:
        for _ in range(5):
            async with raw(server) as stream:
                try:
                    await stream.send(b"\x00\x00\x10\x00" + secrets.token_bytes(1 << 20))
                except (anyio.BrokenResourceError, OSError):
                    pass
                reply = await reply_or_close(stream, server.key)
                assert reply is None or reply["error"]["code"] == "bad-mac"
        async with raw(server) as stream:
            await stream.send(secrets.token_bytes(1 << 16))
            await closed(stream)
        await nothing_spawned_and_still_serving(server)


async def test_request_flood_on_many_connections() -> None:
    """Hundreds of refused requests from 20 connections at once: each gets its code."""
    async with serving() as server:
        codes: list[str] = []

        async def attacker() -> None:
            async with raw(server) as stream:
                for _ in range(20):
                    await stream.send(frame(server.key, body(argv=["sh", "-c", "id"])))
                    codes.append((await reply_or_close(stream, server.key))["error"]["code"])

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(attacker)
        assert codes == ["not-allowed"] * 400
        await nothing_spawned_and_still_serving(server)


async def test_a_client_that_never_reads_cannot_stall_the_server() -> None:
    """Requests for big outputs whose replies are never read: that connection is closed
    once a reply cannot be written within frame_deadline; others are served meanwhile."""
    big = ["py", "-c", "import sys; sys.stdout.write('x' * (1 << 20))"]
    async with serving() as server, raw(server) as stream:
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for _ in range(40):
            try:
                await stream.send(encode_frame(server.key, new_request(big)))
            except (anyio.BrokenResourceError, OSError):
                break
        await good_call(server)
        await eventually(lambda: server.stats["unread"] == 1)
        await good_call(server)


# -- JSON quirks ----------------------------------------------------------------------------------


def _valid() -> str:
    return json.dumps(new_request(["echo", "hi"]))[1:-1]  # the members, without braces


@pytest.mark.parametrize("text", [
    '{"v":1,' + '"v":1,' + _valid()[len('"v": 1, '):] + "}",  # a duplicate key
    "{" + _valid() + ',"argv":["py","-c","print(1)"]}',    # a duplicate that would win
    "{" + _valid() + ',"x":NaN}',
    "{" + _valid() + ',"x":Infinity}',
    "{" + _valid() + ',"x":-Infinity}',
    "{" + _valid() + ',"x":1e999}',
    "{" + _valid() + ',"x":' + "[" * 33 + "]" * 33 + "}",
    "{" + _valid() + ',"x":' + "[" * 30000 + "]" * 30000 + "}",
    "{" + _valid() + ',"x":' + "9" * 5000 + "}",
    "{" + _valid() + ',"x":1' + "0" * 30 + "}",
    "[1, 2]",
    '"just a string"',
    "",
    "{" + _valid() + "} trailing",
    "\ufeff{" + _valid() + "}",
    "{" + _valid() + ",}",
    "{'v': 1}",
], ids=["duplicate", "duplicate-argv", "nan", "infinity", "-infinity", "overflow",
        "depth-33", "depth-30000", "int-5000-digits", "int-31-digits", "array", "string",
        "empty", "trailing", "bom", "trailing-comma", "single-quotes"])
async def test_json_quirks_are_malformed(text: str) -> None:
    """What Python's json would accept or choke on, refused as malformed before any run."""
    async with serving() as server:
        reply = await refused(server, frame(server.key, text.encode()), "malformed",
                              closes=True)
        assert reply["id"] is None
        await nothing_spawned_and_still_serving(server)


async def test_not_utf8_is_malformed() -> None:
    """A body that is not UTF-8 is malformed."""
    async with serving() as server:
        await refused(server, frame(server.key, b'{"v":1,"id":"\xff"}'), "malformed",
                      closes=True)
        await nothing_spawned_and_still_serving(server)


async def test_nesting_of_exactly_32_is_parsed() -> None:
    """Depth 32 is allowed (then the unknown key is a bad request, on an open connection)."""
    async with serving() as server:
        text = "{" + _valid() + ',"x":' + "[" * 31 + "]" * 31 + "}"
        await refused(server, frame(server.key, text.encode()), "bad-request", closes=False)


# -- type confusion: bad requests -----------------------------------------------------------------


@pytest.mark.parametrize("changes", [
    {"argv": "echo hi"}, {"argv": []}, {"argv": [["echo"]]}, {"argv": ["echo", 1]},
    {"argv": [None]}, {"argv": {"0": "echo"}}, {"argv": ["echo", "a\u0000b"]},
    {"argv": ["echo", "\ud800"]}, {"argv": None},
    {"ts": "now"}, {"ts": True}, {"ts": None}, {"ts": [1]},
    {"nonce": 123}, {"nonce": "A" * 32}, {"nonce": "a" * 31}, {"nonce": "a" * 32 + "\n"},
    {"nonce": "g" * 32}, {"nonce": None},
    {"v": "1"}, {"v": True}, {"v": 1.0}, {"v": 2}, {"v": None},
    {"id": 123}, {"id": "x" * 65}, {"id": None}, {"id": ["a"]},
    {"timeout": "5"}, {"timeout": True}, {"timeout": -1}, {"timeout": 0}, {"timeout": 11},
    {"timeout": None, "extra": 1}, {"Argv": ["echo"]}, {"__proto__": {}},
], ids=lambda changes: repr(changes)[:40])
async def test_type_confusion_is_a_bad_request(changes: dict[str, Any]) -> None:
    """Every schema violation is bad-request; the connection stays usable; nothing runs."""
    async with serving() as server:
        reply = await refused(server, frame(server.key, body(**changes)), "bad-request",
                              closes=False)
        assert reply["returncode"] is None
        assert server.stats["spawned"] == 1  # refused()'s good request
        assert server.stats["bad-request"] == 1
        await good_call(server)


async def test_bad_request_reply_keeps_a_valid_id() -> None:
    """A bad request with a readable id is answered under that id."""
    async with serving() as server:
        reply = await refused(server, frame(server.key, body(id="abc", argv=[])),
                              "bad-request", closes=False)
        assert reply["id"] == "abc"


# -- the allowlist --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "/bin/sh", "sh", "bash", ECHO, "/bin/echo", "../echo", "./echo", "echo/", "ECHO",
    "Echo", " echo", "echo ", "echo\t", "\uff45\uff43\uff48\uff4f", "e\u0441ho",
    "echo\u200b", "echo;sh", "echo\n", "py ", sys.executable, "python", "", "*",
])
async def test_allowlist_bypasses_are_not_allowed(name: str) -> None:
    """Only the exact names on the allowlist run: paths, case, spaces, fullwidth or
    Cyrillic look-alikes and zero-width characters are other names."""
    async with serving() as server:
        await refused(server, frame(server.key, body(argv=[name, "-c", "echo pwned"])),
                      "not-allowed", closes=False)
        assert server.stats["spawned"] == 1  # refused()'s good request
        assert os.listdir(server.cwd) == []


async def test_the_sh_c_exploit_is_refused() -> None:
    """The original's exploit, ["sh", "-c", "echo pwned > marker"], creates nothing."""
    async with serving() as server, ExecutorClient(server.address, server.key) as client:
        with pytest.raises(ExecutorError) as caught:
            await client.run(["sh", "-c", "echo pwned > marker"])
        assert caught.value.code == "not-allowed"
        assert not (Path(server.cwd) / "marker").exists()
        await nothing_spawned_and_still_serving(server)


# -- arguments and output -------------------------------------------------------------------------


async def test_oversized_arguments() -> None:
    """An argument that makes the frame too big is too-large; one over the kernel's limit
    per argument (128 KiB) on a server that allows big frames is spawn-failed."""
    async with serving() as server:
        data = encode_frame(server.key, new_request(["echo", "a" * 70000]))
        await refused(server, data, "too-large", closes=True)
        await nothing_spawned_and_still_serving(server)
    async with serving(max_frame=1 << 20) as server:
        async with ExecutorClient(server.address, server.key) as client:
            with pytest.raises(ExecutorError) as caught:
                await client.run(["echo", "a" * 200_000])
            assert caught.value.code == "spawn-failed"
            assert (await client.run(["echo", "a" * 100_000])).stdout == "a" * 100_000 + "\n"
        assert server.stats["spawned"] == 1


async def test_output_floods_are_capped() -> None:
    """5 MB on stdout and stderr: each capped at max_output, truncated=True, no error."""
    flood = ["py", "-c", "import sys; sys.stdout.write('o' * 5_000_000); "
             "sys.stderr.write('e' * 5_000_000)"]
    async with serving(max_output=65536) as server:
        async with ExecutorClient(server.address, server.key) as client:
            result = await client.run(flood)
            small = await client.run(["echo", "small"])
        await good_call(server)
    assert (result.returncode, result.truncated) == (0, True)
    assert result.stdout == "o" * 65536
    assert result.stderr == "e" * 65536
    assert (small.stdout, small.truncated) == ("small\n", False)


async def test_runaway_command_with_a_grandchild_is_ended_as_a_group() -> None:
    """Past its timeout the whole group goes (grandchild included) before the reply.

    The timeout leaves a loaded machine time to start Python and print the pid."""
    code = """
        import subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(grandchild.pid, flush=True)
        time.sleep(60)
    """
    async with serving() as server, ExecutorClient(server.address, server.key) as client:
        began = time.monotonic()
        with pytest.raises(ExecutorError) as caught:
            await client.run(["py", "-c", inspect.cleandoc(code)], timeout=3)
        assert caught.value.code == "timeout"
        assert caught.value.returncode == -signal.SIGTERM
        grandchild = int(caught.value.stdout)
        await eventually(lambda: not _alive(grandchild), within=5)
        assert time.monotonic() - began < 15
        assert server.stats["timeout"] == 1
        await good_call(server)


async def test_a_command_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    """The kit's escalation: SIGTERM, DEFAULT_GRACE, SIGKILL, then the reply."""
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    async with serving() as server, ExecutorClient(server.address, server.key) as client:
        with pytest.raises(ExecutorError) as caught:
            await client.run(["py", "-c", code], timeout=2)  # time to start, even loaded
    assert caught.value.code == "timeout"
    assert caught.value.returncode == -signal.SIGKILL
    assert "SIGKILL" in caught.value.message


async def test_spawn_failure_is_reported(tmp_path: Path) -> None:
    """A program removed after the server started gives spawn-failed, nothing spawned."""
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\necho tool\n")
    tool.chmod(0o755)
    async with serve_executor({"tool": tool, "echo": ECHO}, timeout=5) as server:
        tool.unlink()
        async with ExecutorClient(server.address, server.key) as client:
            with pytest.raises(ExecutorError) as caught:
                await client.run(["tool"])
        assert caught.value.code == "spawn-failed"
        await nothing_spawned_and_still_serving(server)


async def test_leaving_the_block_ends_running_commands() -> None:
    """Closing the server while a command runs ends it (no orphan, no zombie)."""
    async with serving() as server:
        async with anyio.create_task_group() as tg:
            async def call() -> None:
                async with ExecutorClient(server.address, server.key) as client:
                    await client.run(["py", "-c", "import time; time.sleep(60)"])

            tg.start_soon(call)
            await eventually(lambda: server.stats["spawned"] == 1)
            tg.cancel_scope.cancel()
    # nothing_left_behind checks that the kit reaped the child


# -- start-up checks and the client's own checks --------------------------------------------------


def test_start_up_refusals() -> None:
    """Short or str keys, non-loopback hosts, unknown programs and bad limits fail at once."""
    with pytest.raises(ValueError, match="at least 16"):
        serve_executor(ALLOW, key=b"short", timeout=1)
    with pytest.raises(TypeError, match="bytes"):
        serve_executor(ALLOW, key="a" * 32, timeout=1)
    for host in ("0.0.0.0", "192.168.1.10", "example.com", "::"):
        with pytest.raises(ValueError, match="loopback"):
            serve_executor(ALLOW, host=host, timeout=1)
    serve_executor(ALLOW, host="0.0.0.0", allow_remote=True, timeout=1)  # not started
    serve_executor(ALLOW, host="::1", timeout=1)
    with pytest.raises(ValueError, match="no-such-program"):
        serve_executor({"x": "no-such-program-here"}, timeout=1)
    with pytest.raises(ValueError, match="empty"):
        serve_executor([], timeout=1)
    with pytest.raises(TypeError, match="string"):
        serve_executor("echo", timeout=1)
    with pytest.raises(ValueError, match="timeout"):
        serve_executor(ALLOW, timeout=0)
    with pytest.raises(TypeError):
        serve_executor(ALLOW)  # type: ignore[call-arg]  # a timeout is required
    with pytest.raises(ValueError, match="max_connections"):
        serve_executor(ALLOW, timeout=1, max_connections=0)
    assert serve_executor(["echo"], timeout=1).allow["echo"] == ECHO_PATH


def test_the_module_never_unpickles_or_evaluates() -> None:
    """No pickle, marshal or shelve import, no eval/exec, no shell=True in the executor."""
    tree = ast.parse(Path(executor.__file__).read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
    imported = {alias.name for node in imports for alias in node.names}
    imported |= {node.module for node in imports if isinstance(node, ast.ImportFrom)}
    assert not imported & {"pickle", "marshal", "shelve", "dill", "cloudpickle"}
    calls = {node.func.id for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert not calls & {"eval", "exec"}
    assert not [k for node in ast.walk(tree) if isinstance(node, ast.keyword)
                for k in [node.arg] if k == "shell"]


def test_frames_are_built_byte_for_byte() -> None:
    """encode_frame: 4-byte big-endian 32 + len(body), HMAC-SHA256(key, body), the body."""
    key = b"k" * 32
    data = encode_frame(key, {"v": 1, "id": "é"})
    body_bytes = '{"v":1,"id":"é"}'.encode()
    assert data == ((32 + len(body_bytes)).to_bytes(4, "big")
                    + hmac.new(key, body_bytes, hashlib.sha256).digest() + body_bytes)
    assert decode_frame(key, data) == {"v": 1, "id": "é"}
    with pytest.raises(ExecutorError, match="bad-mac"):
        decode_frame(b"j" * 32, data)
    with pytest.raises(ExecutorError, match="malformed"):
        decode_frame(key, data[:-1])


@asynccontextmanager
async def fake_server(answer: Any) -> AsyncIterator[tuple[str, int]]:
    """A server that reads one request frame, sends ``answer(request)`` back raw, closes."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")

    async def handle(stream: SocketStream) -> None:
        async with stream:
            data = b""
            while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
                data += await stream.receive()
            await stream.send(answer(decode_frame(KEY, data)))

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield listener.extra(anyio.abc.SocketAttribute.local_address)[:2]
        tg.cancel_scope.cancel()


KEY = b"fake-server-key-" * 2


def _good_reply(request: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {"v": 1, "id": request["id"], "ok": True, "returncode": 0, "stdout": "x",
            "stderr": "", "truncated": False, "error": None} | changes


@pytest.mark.parametrize(("answer", "code"), [
    (lambda r: encode_frame(b"another-key-0123", _good_reply(r)), "bad-mac"),
    (lambda r: encode_frame(KEY, _good_reply(r, id="someone-else")), "malformed"),
    (lambda r: encode_frame(KEY, _good_reply(r, id=None)), "malformed"),
    (lambda r: encode_frame(KEY, _good_reply(r, ok="yes")), "malformed"),
    (lambda r: encode_frame(KEY, {"v": 1}), "malformed"),
    (lambda r: frame(KEY, b"[" * 100), "malformed"),
    (lambda r: (2 ** 31).to_bytes(4, "big"), "malformed"),
    (lambda r: encode_frame(KEY, _good_reply(r))[:-3], "closed"),
], ids=["wrong-key", "wrong-id", "null-id", "ok-not-bool", "shape", "deep", "huge", "cut"])
async def test_client_verifies_every_reply(answer: Any, code: str) -> None:
    """A reply with a bad MAC, another id, the wrong shape or cut short is an error."""
    async with fake_server(answer) as address, ExecutorClient(address, KEY) as client:
        with pytest.raises(ExecutorError) as caught:
            await client.run(["echo"])
    assert caught.value.code == code


async def test_client_accepts_a_good_reply_and_refuses_a_str_command() -> None:
    """The fake server's well-formed reply is a RemoteResult; a str argv is a TypeError."""
    async with fake_server(lambda r: encode_frame(KEY, _good_reply(r))) as address:
        async with ExecutorClient(address, KEY) as client:
            assert (await client.run(["echo"])).stdout == "x"
            with pytest.raises(TypeError, match=r"\['echo', 'hi'\]"):
                await client.run("echo hi")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
