"""A remote executor that does not hand out a shell (notebook 10, the seed's case 2).

The original listens on a TCP port, treats one ``read()`` as one message, deserializes it
with ``unwrap()`` and runs whatever program it names: anyone who can reach the port runs
anything. This one answers only requests signed with a shared key, for programs on an
allowlist, with limits everywhere a client could make it wait or grow::

    from asyncproc_kit.cases.executor import serve_executor, ExecutorClient, ExecutorError

    async with serve_executor({"echo": "/bin/echo"}, timeout=10) as server:
        async with ExecutorClient(server.address, server.key) as client:
            result = await client.run(["echo", "hi"])    # returncode, stdout, stderr, truncated

**Wire protocol, version 1** (both directions): a frame is ``length`` (4 bytes, big-endian,
unsigned, = 32 + len(body)), then ``mac`` = HMAC-SHA256(key, body) (32 bytes), then ``body``,
a UTF-8 JSON object. A request body is ``{"v": 1, "id": str, "nonce": 32 lowercase hex
digits, "ts": unix seconds, "argv": [str, ...]}`` plus an optional ``"timeout"``; a reply
body is ``{"v": 1, "id", "ok", "returncode", "stdout", "stderr", "truncated", "error"}``
where ``error`` is ``null`` or ``{"code", "message"}`` and ``ok`` is true exactly when the
command ran to its end (whatever its exit status). :func:`encode_frame` and
:func:`decode_frame` build and read frames by hand.

**Rejection codes**, in the order the server checks them: ``busy`` (too many connections),
``too-large`` (the length field is over ``max_frame``; refused before reading the rest),
``bad-mac`` (compared with :func:`hmac.compare_digest` *before* the body is parsed),
``malformed`` (not a UTF-8 JSON object, or duplicate keys, NaN/Infinity, nesting deeper than
32, a number with more than 20 digits), ``bad-request`` (the schema), ``stale`` (``ts`` more
than ``window`` seconds away from the server's clock), ``replayed`` (a nonce seen within the
window), ``not-allowed`` (``argv[0]`` is not exactly a name on the allowlist),
``spawn-failed`` and ``timeout`` (the command's whole process group was ended). After
``too-large``, ``bad-mac``, ``malformed`` and ``busy`` the server replies and closes the
connection; otherwise the connection carries further requests, answered in order. Frames
shorter than 32 bytes, cut by end of file, or not whole within ``frame_deadline`` seconds of
their first byte close the connection without a reply.

Nothing here ever starts a shell or unpickles anything.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import secrets
import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup

from .. import DEFAULT_GRACE, SpawnError, terminate
from .._process import read_chunk, spawn  # a capped capture needs the pipes themselves

__all__ = [
    "CODES",
    "ExecutorClient",
    "ExecutorError",
    "ExecutorServer",
    "RemoteResult",
    "decode_frame",
    "encode_frame",
    "new_request",
    "serve_executor",
]

VERSION = 1
MAC_SIZE = 32
MIN_KEY = 16
MAX_DEPTH = 32
MAX_DIGITS = 20
MAX_ID = 64
CODES = ("too-large", "bad-mac", "malformed", "bad-request", "stale", "replayed",
         "not-allowed", "busy", "spawn-failed", "timeout")
"""Every rejection code the server can send."""

CLOSES = ("too-large", "bad-mac", "malformed", "busy")
"""Codes after which the server closes the connection."""

MIN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
"""The whole environment of every command (the server's own is never passed on)."""

_REQUIRED = frozenset({"v", "id", "nonce", "ts", "argv"})
_OPTIONAL = frozenset({"timeout"})
_NONCE = re.compile(r"[0-9a-f]{32}")
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_log = logging.getLogger("asyncproc_kit")


class ExecutorError(Exception):
    """A request the server refused, or a reply the client could not trust.

    ``code`` is one of :data:`CODES`, or on the client side ``"closed"`` (the connection
    ended before a whole reply). ``message`` says why. For ``timeout``, ``returncode``,
    ``stdout`` and ``stderr`` hold what the command had printed before it was ended.
    """

    def __init__(self, code: str, message: str, *, returncode: int | None = None,
                 stdout: str = "", stderr: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


@dataclass(frozen=True)
class RemoteResult:
    """What a command left behind on the server: shaped like the kit's ProcessResult.

    ``truncated`` is True when stdout or stderr was longer than the server's
    ``max_output`` and was cut there. A non-zero ``returncode`` is not an error: you decide.
    """

    returncode: int
    stdout: str
    stderr: str
    truncated: bool


class _Reject(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- frames -----------------------------------------------------------------------------------


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()


def encode_frame(key: bytes, message: Mapping[str, Any]) -> bytes:
    """One frame: length (4 bytes, big-endian) = 32 + len(body), HMAC-SHA256, JSON body."""
    body = json.dumps(message, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode()
    return (MAC_SIZE + len(body)).to_bytes(4, "big") + _mac(key, body) + body


def decode_frame(key: bytes, frame: bytes) -> dict[str, Any]:
    """The body of one whole frame, after checking its length field and MAC, parsed strictly.

    Raises :class:`ExecutorError` (``malformed`` or ``bad-mac``) when it is not trustworthy.
    """
    if len(frame) < 4 + MAC_SIZE or int.from_bytes(frame[:4], "big") != len(frame) - 4:
        raise ExecutorError("malformed", "the length field does not match the frame")
    mac, body = frame[4:4 + MAC_SIZE], frame[4 + MAC_SIZE:]
    if not hmac.compare_digest(mac, _mac(key, body)):
        raise ExecutorError("bad-mac", "the MAC does not match: wrong key, or altered")
    try:
        return parse_strict(body)
    except _Reject as exc:
        raise ExecutorError(exc.code, exc.message) from None


def new_request(argv: Iterable[str], *, id: str | None = None,
                timeout: float | None = None) -> dict[str, Any]:
    """A fresh request body for ``argv``: a random id and nonce, the current time."""
    request: dict[str, Any] = {"v": VERSION, "id": id or secrets.token_hex(8),
                               "nonce": secrets.token_hex(16), "ts": time.time(),
                               "argv": list(argv)}
    if timeout is not None:
        request["timeout"] = timeout
    return request


# -- strict JSON ------------------------------------------------------------------------------


def _depth(text: str) -> int:
    """How deeply brackets nest outside strings (checked before parsing: the parser
    recurses, so 30,000 ``[`` in a 64 KiB frame would exhaust the stack)."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Reject("malformed", f"the key {key!a} appears twice")
        result[key] = value
    return result


def _constant(name: str) -> Any:
    raise _Reject("malformed", f"{name} is not a JSON number")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise _Reject("malformed", f"a number with more than {MAX_DIGITS} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or len(text) > 2 * MAX_DIGITS + 10:
        raise _Reject("malformed", f"the number {text[:30]!a} is out of range")
    return value


def parse_strict(body: bytes) -> dict[str, Any]:
    """Parse a body as JSON, refusing what Python's ``json`` would silently accept: duplicate
    keys (it keeps the last), NaN and Infinity, huge numbers, deep nesting. Raises _Reject."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Reject("malformed", f"the body is not UTF-8 (byte {exc.start})") from None
    if _depth(text) > MAX_DEPTH:
        raise _Reject("malformed", f"the body nests deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant,
                           parse_int=_int, parse_float=_float)
    except ValueError as exc:
        raise _Reject("malformed", f"the body is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise _Reject("malformed", f"the body is a JSON {type(value).__name__}, not an object")
    return value


def _is_text(value: Any) -> bool:
    """A str that is real Unicode (JSON's ``\\ud800`` escapes make lone surrogates)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- the server -------------------------------------------------------------------------------


def _resolve(allow: Mapping[str, Any] | Iterable[str]) -> dict[str, str]:
    """The allowlist as name -> absolute path, looked up once, now."""
    if isinstance(allow, str | bytes):
        raise TypeError(f"allow must be a mapping of names to programs or a list of names, "
                        f"not a string: write [{allow!r}]")
    pairs = allow.items() if isinstance(allow, Mapping) else ((name, name) for name in allow)
    resolved: dict[str, str] = {}
    for name, program in pairs:
        if not isinstance(name, str) or not name or "\0" in name:
            raise TypeError(f"allowlist name {name!r} must be a non-empty str")
        program = os.fspath(program)
        if not isinstance(program, str) or not program:
            raise TypeError(f"allow[{name!r}] must be a program name or path, not {program!r}")
        found = (os.path.abspath(program) if os.sep in program else shutil.which(program))
        if not found or not os.path.isfile(found) or not os.access(found, os.X_OK):
            raise ValueError(f"allow[{name!r}]: {program!r} is not an executable program "
                             "(give an existing path, or a name on PATH)")
        resolved[name] = os.path.abspath(found)
    if not resolved:
        raise ValueError("the allowlist is empty: name at least one program")
    return resolved


def _check_host(host: str, allow_remote: bool) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_remote:
        raise ValueError(f"host {host!r} is not a loopback address: anyone who can reach it "
                         "could try the key. Use 127.0.0.1, or pass allow_remote=True (and "
                         "put TLS or an SSH tunnel in front)")
    return host


def _check_positive(name: str, value: Any, *, integer: bool = False) -> Any:
    kind = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be a {'whole ' if integer else ''}number, "
                        f"not {type(value).__name__}")
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be more than zero, not {value!r}")
    return value


def _check_key(key: Any) -> bytes:
    if isinstance(key, str):
        raise TypeError("the key must be bytes, not str: use key.encode() or "
                        "secrets.token_bytes(32)")
    if not isinstance(key, bytes | bytearray):
        raise TypeError(f"the key must be bytes, not {type(key).__name__}")
    if len(key) < MIN_KEY:
        raise ValueError(f"the key has {len(key)} bytes; use at least {MIN_KEY} "
                         "(secrets.token_bytes(32))")
    return bytes(key)


class _Reader:
    """Bytes from a socket, buffered so a frame can be assembled across many reads."""

    def __init__(self, stream: SocketStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def fill(self, size: int) -> bool:
        """Buffer at least ``size`` bytes; False if the peer closed first."""
        while len(self._buffer) < size:
            try:
                self._buffer += await self._stream.receive()
            except anyio.EndOfStream:
                return False
        return True

    def peek(self, size: int) -> bytes:
        return bytes(self._buffer[:size])

    def take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


class _Capture:
    """The first ``limit`` bytes of a pipe; the rest is read and thrown away."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.truncated = False

    async def drain(self, fd: int | None) -> None:
        if fd is None:
            return
        while chunk := await read_chunk(fd):
            room = self.limit - len(self.data)
            if len(chunk) > room:
                self.truncated = True
                chunk = chunk[:max(room, 0)]
            self.data += chunk

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def _reply(id: str | None, *, returncode: int | None = None, stdout: str = "",
           stderr: str = "", truncated: bool = False, code: str | None = None,
           message: str = "") -> dict[str, Any]:
    error = None if code is None else {"code": code, "message": message}
    return {"v": VERSION, "id": id, "ok": code is None, "returncode": returncode,
            "stdout": stdout, "stderr": stderr, "truncated": truncated, "error": error}


class ExecutorServer:
    """What :func:`serve_executor` gives you: ``address`` ``(host, port)``, ``key`` (bytes),
    ``stats`` (counters: ``"spawned"``, one per rejection code, and ``"idle"``, ``"slow"``,
    ``"incomplete"``, ``"unread"``, ``"internal-error"`` for connections closed without a
    reply, ``"accept-failed"``) and ``allow`` (each allowed name and the absolute path it runs)."""

    def __init__(self, allow: Mapping[str, Any] | Iterable[str], *, host: str, port: int,
                 key: bytes | None, allow_remote: bool, timeout: float, max_frame: int,
                 max_output: int, frame_deadline: float, max_connections: int, window: float,
                 cwd: Any, env: Mapping[str, str] | None) -> None:
        self.allow = MappingProxyType(_resolve(allow))
        self._host = _check_host(host, allow_remote)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
            raise ValueError(f"port must be an int from 0 to 65535, not {port!r}")
        self._port = port
        self.key = secrets.token_bytes(32) if key is None else _check_key(key)
        self.timeout = float(_check_positive("timeout", timeout))
        self.max_frame = _check_positive("max_frame", max_frame, integer=True)
        if self.max_frame < MAC_SIZE + 2:
            raise ValueError(f"max_frame must leave room for a body, at least {MAC_SIZE + 2}")
        self.max_output = _check_positive("max_output", max_output, integer=True)
        self.frame_deadline = float(_check_positive("frame_deadline", frame_deadline))
        self.max_connections = _check_positive("max_connections", max_connections,
                                               integer=True)
        self.window = float(_check_positive("window", window))
        self._cwd = None if cwd is None else os.fspath(cwd)
        if self._cwd is not None and not os.path.isdir(self._cwd):
            raise ValueError(f"cwd {self._cwd!r} is not an existing directory")
        self._env = dict(MIN_ENV if env is None else env)
        self._stats = dict.fromkeys(("spawned", *CODES, "idle", "slow", "incomplete",
                                     "unread", "accept-failed", "internal-error"), 0)
        self.stats = MappingProxyType(self._stats)
        self._seen: OrderedDict[str, float] = OrderedDict()  # nonce -> arrival (monotonic)
        self._active = 0
        self._tg: TaskGroup | None = None
        self._listeners: list[SocketListener] = []
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self.address: tuple[str, int] = (self._host, port)

    def __repr__(self) -> str:
        return (f"<ExecutorServer {self.address[0]}:{self.address[1]} "
                f"allow={sorted(self.allow)}>")

    @property
    def connections(self) -> int:
        """How many connections are being served right now (busy ones not counted)."""
        return self._active

    @property
    def cwd(self) -> str:
        """The working directory of every command (by default an empty temporary one)."""
        assert self._cwd is not None or self._tempdir is not None, "not started"
        return self._cwd or self._tempdir.name  # type: ignore[union-attr]

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> ExecutorServer:
        if self._cwd is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="executor-")
        multi = await anyio.create_tcp_listener(local_host=self._host, local_port=self._port)
        self._listeners = list(multi.listeners)
        host, port = self._listeners[0].extra(SocketAttribute.local_address)[:2]
        self.address = (host, port)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        for listener in self._listeners:
            self._tg.start_soon(self._accept, listener)
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()  # stops accepting; running commands are terminated
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            for listener in self._listeners:
                await anyio.aclose_forcefully(listener)
            if self._tempdir is not None:
                self._tempdir.cleanup()

    async def _accept(self, listener: SocketListener) -> None:
        assert self._tg is not None
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # e.g. out of descriptors: keep serving the others
                self._stats["accept-failed"] += 1
                _log.debug("executor: accept failed (%s); retrying in 0.1 s", exc)
                await anyio.sleep(0.1)
                continue
            self._tg.start_soon(self._connection, stream)

    # -- one connection -----------------------------------------------------------------------

    async def _connection(self, stream: SocketStream) -> None:
        try:
            if self._active >= self.max_connections:
                self._stats["busy"] += 1
                await self._refuse(stream, None, "busy", f"this server takes at most "
                                   f"{self.max_connections} connections; try again later")
                return
            self._active += 1
            try:
                await self._conversation(stream)
            finally:
                self._active -= 1
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # the peer reset the connection: nothing to answer
        except Exception:  # a bug here must not stop the server for everybody else
            self._stats["internal-error"] += 1
            _log.exception("executor: a connection failed")
        finally:
            await anyio.aclose_forcefully(stream)

    async def _conversation(self, stream: SocketStream) -> None:
        reader = _Reader(stream)
        while True:
            body = await self._read_frame(stream, reader)
            if body is None:
                return
            if not hmac.compare_digest(body[:MAC_SIZE], _mac(self.key, body[MAC_SIZE:])):
                self._stats["bad-mac"] += 1
                await self._refuse(stream, None, "bad-mac", "the MAC does not match the "
                                   "body: wrong key, or the frame was altered")
                return
            try:
                request = parse_strict(body[MAC_SIZE:])
            except _Reject as exc:
                self._stats["malformed"] += 1
                await self._refuse(stream, None, "malformed", exc.message)
                return
            reply = await self._answer(request)
            if not await self._send(stream, reply):
                return

    async def _read_frame(self, stream: SocketStream, reader: _Reader) -> bytes | None:
        """The next frame's MAC and body, or None when the connection should just close."""
        with anyio.move_on_after(self.frame_deadline) as idle:
            more = await reader.fill(1)
        if idle.cancelled_caught:
            self._stats["idle"] += 1
            return None
        if not more:
            return None  # closed between frames: a normal goodbye
        length = None
        with anyio.move_on_after(self.frame_deadline):  # the whole frame, not each read
            if not await reader.fill(4):
                self._stats["incomplete"] += 1
                return None
            length = int.from_bytes(reader.peek(4), "big")
            if length <= self.max_frame:
                if length < MAC_SIZE or not await reader.fill(4 + length):
                    self._stats["incomplete"] += 1
                    return None
                return reader.take(4 + length)[4:]
        if length is None or length <= self.max_frame:
            self._stats["slow"] += 1
            return None
        self._stats["too-large"] += 1  # refused before reading the rest
        await self._refuse(stream, None, "too-large", f"the frame says {length} bytes; "
                           f"this server takes at most {self.max_frame}")
        return None

    async def _send(self, stream: SocketStream, reply: dict[str, Any]) -> bool:
        """Write a reply within ``frame_deadline``; False (close) if the peer does not read."""
        with anyio.move_on_after(self.frame_deadline):
            await stream.send(encode_frame(self.key, reply))
            return True
        self._stats["unread"] += 1
        return False

    async def _refuse(self, stream: SocketStream, id: str | None, code: str,
                      message: str) -> None:
        """Reply, then close politely: stop writing and discard what the peer still sends
        for a moment, because closing with unread data makes TCP reset the connection and
        the peer would lose the reply."""
        if not await self._send(stream, _reply(id, code=code, message=message)):
            return
        with anyio.move_on_after(min(1.0, self.frame_deadline)):
            await stream.send_eof()
            discarded = 0
            try:
                while discarded <= self.max_frame:
                    discarded += len(await stream.receive())
            except anyio.EndOfStream:
                pass

    # -- one request --------------------------------------------------------------------------

    async def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        id = request.get("id") if _is_text(request.get("id")) else None
        if id is not None and len(id) > MAX_ID:
            id = None
        try:
            argv, timeout = self._check(request)
            program = self.allow.get(argv[0])
            if program is None:
                raise _Reject("not-allowed", f"{argv[0]!a} is not on this server's allowlist "
                              f"({', '.join(sorted(self.allow))}); names match exactly")
            return await self._execute(id, [program, *argv[1:]], timeout)
        except _Reject as exc:
            self._stats[exc.code] += 1
            return _reply(id, code=exc.code, message=exc.message)

    def _check(self, request: dict[str, Any]) -> tuple[list[str], float]:
        """The schema, then freshness: raises _Reject with the first problem found."""
        missing, unknown = _REQUIRED - request.keys(), request.keys() - _REQUIRED - _OPTIONAL
        if missing or unknown:
            what = [f"missing {', '.join(sorted(missing))}"] if missing else []
            what += [f"unknown {', '.join(ascii(k) for k in sorted(unknown))}"] if unknown else []
            raise _Reject("bad-request", f"keys: {'; '.join(what)} (a request has v, id, "
                          "nonce, ts, argv and optionally timeout)")
        v, id, nonce, ts, argv = (request[k] for k in ("v", "id", "nonce", "ts", "argv"))
        if type(v) is not int or v != VERSION:
            raise _Reject("bad-request", f"v must be {VERSION} (the protocol version), "
                          f"not {v!a}")
        if not _is_text(id) or len(id) > MAX_ID:
            raise _Reject("bad-request", f"id must be a str of at most {MAX_ID} characters")
        if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
            raise _Reject("bad-request", "nonce must be 32 lowercase hex digits "
                          "(secrets.token_hex(16))")
        if not _is_number(ts):
            raise _Reject("bad-request", "ts must be a number (unix seconds, time.time())")
        if not isinstance(argv, list) or not argv:
            raise _Reject("bad-request", "argv must be a non-empty list of str, such as "
                          '["echo", "hi"] (a string is not split for you)')
        for i, arg in enumerate(argv):
            if not _is_text(arg):
                raise _Reject("bad-request", f"argv[{i}] must be a str, not "
                              f"{type(arg).__name__}" + (" with a lone surrogate"
                                                         if isinstance(arg, str) else ""))
            if "\0" in arg:
                raise _Reject("bad-request", f"argv[{i}] contains a NUL character")
        timeout = request.get("timeout", self.timeout)
        if not _is_number(timeout) or not 0 < timeout <= self.timeout:
            raise _Reject("bad-request", f"timeout must be a number of seconds more than 0 "
                          f"and at most {self.timeout:g} (this server's limit)")
        self._fresh(nonce, ts)
        return argv, float(timeout)

    def _fresh(self, nonce: str, ts: float) -> None:
        """Refuse a request from too far in the past or future, or one already seen.

        Nonces are remembered only as long as a request carrying them could still be fresh
        (at most 2 x window after it arrived), and only from clients that hold the key.
        """
        if abs(time.time() - ts) > self.window:
            raise _Reject("stale", f"ts is {time.time() - ts:+.0f} s away from the server's "
                          f"clock (at most {self.window:g} s): check the client's clock")
        now = time.monotonic()
        while self._seen and next(iter(self._seen.values())) < now - 2 * self.window:
            self._seen.popitem(last=False)
        if nonce in self._seen:
            raise _Reject("replayed", "this nonce was used already: every request needs a "
                          "new one (secrets.token_hex(16))")
        self._seen[nonce] = now

    async def _execute(self, id: str | None, cmd: list[str],
                       timeout: float) -> dict[str, Any]:  # noqa: ASYNC109 (per request)
        """Run ``cmd`` (absolute program path first) without a shell, with the fixed
        environment and directory, capturing at most ``max_output`` bytes per stream."""
        try:
            child = spawn(cmd, env=self._env, cwd=self.cwd)
        except (SpawnError, OSError, ValueError) as exc:
            raise _Reject("spawn-failed", str(exc)) from None
        self._stats["spawned"] += 1
        out, err = _Capture(self.max_output), _Capture(self.max_output)
        try:
            with anyio.move_on_after(timeout) as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(out.drain, child.stdout)
                    tg.start_soon(err.drain, child.stderr)
                    await child.wait()
            if scope.cancelled_caught:
                ended = await terminate(child, grace=DEFAULT_GRACE)  # SIGTERM, grace, SIGKILL
                self._stats["timeout"] += 1
                return _reply(id, returncode=ended.returncode, stdout=out.text,
                              stderr=err.text, truncated=out.truncated or err.truncated,
                              code="timeout", message=f"the command ran past {timeout:g} s; "
                              f"its process group was ended ({ended.how})")
        finally:
            await child.aclose(DEFAULT_GRACE)
        return _reply(id, returncode=child.returncode, stdout=out.text, stderr=err.text,
                      truncated=out.truncated or err.truncated)


def serve_executor(
    allow: Mapping[str, Any] | Iterable[str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    key: bytes | None = None,
    allow_remote: bool = False,
    timeout: float,
    max_frame: int = 65536,
    max_output: int = 1048576,
    frame_deadline: float = 5.0,
    max_connections: int = 64,
    window: float = 30.0,
    cwd: Any = None,
    env: Mapping[str, str] | None = None,
) -> ExecutorServer:
    """Serve the commands on ``allow`` to clients holding the key, while the block runs.

    ::

        async with serve_executor({"echo": "/bin/echo", "sleep": "sleep"}, timeout=10) as s:
            print(s.address, s.key.hex())

    **Allowlist:** ``allow`` maps each name a client may send as ``argv[0]`` to a program (a
    path, or a name looked up on PATH once, now); a list of names means each name is its own
    program. Names match exactly: ``"/bin/sh"``, ``"ECHO"`` or ``"echo "`` are other names.
    A program that cannot be found is an error now, not at the first request.

    **Authentication:** every frame carries HMAC-SHA256 of its body under ``key`` (by
    default 32 fresh random bytes: give it to clients through a channel you trust). Keys
    under 16 bytes are refused. Each request carries a unique nonce and its time; the server
    refuses one more than ``window`` s off its clock or seen before.

    **Limits:** ``max_frame`` bytes per frame; a frame must arrive whole within
    ``frame_deadline`` s of its first byte, an idle connection is closed after
    ``frame_deadline`` s, and so is one whose reply cannot be written in that time;
    ``max_connections`` at once (the next gets ``busy``); ``timeout`` s per command
    (a request may ask for less), after which its whole process group is ended (SIGTERM,
    ``DEFAULT_GRACE`` s, SIGKILL); ``max_output`` bytes kept per stream (``truncated``).

    **Commands** run without a shell, with only ``env`` (default :data:`MIN_ENV`) as their
    environment, in ``cwd`` (default: a new empty temporary directory, removed on exit),
    each in its own process group. Leaving the block ends every running command.

    **Where:** ``host`` must be a loopback address unless ``allow_remote=True``; ``port=0``
    picks a free port (``server.address`` tells which).
    """
    return ExecutorServer(allow, host=host, port=port, key=key, allow_remote=allow_remote,
                          timeout=timeout, max_frame=max_frame, max_output=max_output,
                          frame_deadline=frame_deadline, max_connections=max_connections,
                          window=window, cwd=cwd, env=env)


# -- the client -------------------------------------------------------------------------------


class ExecutorClient:
    """Talk to an executor: ``async with ExecutorClient(address, key) as client:`` then
    ``await client.run(["echo", "hi"])``.

    Every reply's MAC and id are checked; a refusal raises :class:`ExecutorError` with its
    ``code`` (``timeout`` included). One request is in flight at a time per client (open
    several clients for parallel commands). The server closes idle connections, so when a
    connection that already served a request turns out to be closed before its reply
    began, the client reconnects once and sends the request again with a new nonce.
    """

    def __init__(self, address: tuple[str, int], key: bytes, *,
                 max_frame: int = 64 * 1024 * 1024) -> None:
        host, port = address
        self.address = (host, int(port))
        self.key = _check_key(key)
        self.max_frame = max_frame
        self._stream: SocketStream | None = None
        self._reader: _Reader | None = None
        self._used = False
        self._lock = anyio.Lock()

    async def __aenter__(self) -> ExecutorClient:
        await self._connect()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._disconnect()

    async def _connect(self) -> None:
        self._stream = await anyio.connect_tcp(*self.address)
        self._reader = _Reader(self._stream)
        self._used = False

    async def _disconnect(self) -> None:
        if self._stream is not None:
            stream, self._stream, self._reader = self._stream, None, None
            await anyio.aclose_forcefully(stream)

    async def run(self, argv: Iterable[str],
                  timeout: float | None = None) -> RemoteResult:  # noqa: ASYNC109 (sent on)
        """Run ``argv`` on the server and return its :class:`RemoteResult`.

        ``timeout`` asks for a shorter limit than the server's own. Raises
        :class:`ExecutorError` for every refusal (``not-allowed``, ``timeout``, ...)."""
        if isinstance(argv, str):
            raise TypeError(f"argv is a list of arguments, not a string: write "
                            f"{argv.split()!r}")
        argv = list(argv)
        async with self._lock:
            try:
                reply = await self._exchange(argv, timeout)
            except BaseException:
                await self._disconnect()  # a half-finished exchange leaves it unusable
                raise
        error = reply["error"]
        if error is not None:
            if error["code"] in CLOSES:
                await self._disconnect()
            raise ExecutorError(error["code"], error["message"],
                                returncode=reply["returncode"], stdout=reply["stdout"],
                                stderr=reply["stderr"])
        return RemoteResult(reply["returncode"], reply["stdout"], reply["stderr"],
                            reply["truncated"])

    async def _exchange(self, argv: list[str],
                        timeout: float | None) -> dict[str, Any]:  # noqa: ASYNC109 (sent on)
        for attempt in (1, 2):
            if self._stream is None:
                await self._connect()
            request = new_request(argv, timeout=timeout)
            reused = self._used
            try:
                await self._stream.send(encode_frame(self.key, request))  # type: ignore[union-attr]
                frame = await self._read()
            except (anyio.BrokenResourceError, anyio.EndOfStream, OSError):
                await self._disconnect()
                if reused and attempt == 1:
                    continue  # the server had closed it as idle: the request never ran
                raise ExecutorError("closed", "the server closed the connection before "
                                    "replying") from None
            self._used = True
            return self._verify(frame, request["id"])
        raise AssertionError("unreachable")

    async def _read(self) -> bytes:
        reader = self._reader
        assert reader is not None
        if not await reader.fill(4):
            raise anyio.EndOfStream
        length = int.from_bytes(reader.peek(4), "big")
        if not MAC_SIZE < length <= self.max_frame:
            raise ExecutorError("malformed", f"the reply's length field says {length} bytes")
        if not await reader.fill(4 + length):
            raise ExecutorError("closed", "the server closed the connection mid-reply")
        return reader.take(4 + length)

    def _verify(self, frame: bytes, id: str) -> dict[str, Any]:
        reply = decode_frame(self.key, frame)
        error = reply.get("error")
        shaped = (set(reply) == {"v", "id", "ok", "returncode", "stdout", "stderr",
                                 "truncated", "error"}
                  and reply["v"] == VERSION and isinstance(reply["stdout"], str)
                  and isinstance(reply["stderr"], str) and isinstance(reply["truncated"], bool)
                  and (error is None or (isinstance(error, dict)
                                         and isinstance(error.get("code"), str)
                                         and isinstance(error.get("message"), str)))
                  and reply["ok"] is (error is None)
                  and (error is not None or type(reply["returncode"]) is int))
        if not shaped:
            raise ExecutorError("malformed", "the reply does not have the version 1 shape")
        if reply["id"] != id and not (reply["id"] is None and error is not None):
            raise ExecutorError("malformed", f"the reply is for request {reply['id']!a}, "
                                f"not {id!a}")
        return reply
