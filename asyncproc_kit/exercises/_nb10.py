"""Checks for notebook 10 (a remote executor): build a protocol frame by hand; open a frame
in the right order (MAC first, parser second).

``check_make_frame`` sends the learner's frame to a real executor on loopback, so a right
answer is proven by the server running it. ``NotImplementedError`` passes through.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import secrets
import sys
from collections.abc import Callable
from typing import Any

import anyio

from ..cases.executor import MAC_SIZE, decode_frame, new_request, serve_executor
from ._common import ExerciseResult

FRAME = "10.1 a frame by hand"
OPEN = "10.2 MAC first, parser second"


def _expected(key: bytes, body: bytes) -> bytes:
    return (MAC_SIZE + len(body)).to_bytes(4, "big") + hmac.new(key, body,
                                                                hashlib.sha256).digest() + body


def _diagnose(key: bytes, body: bytes, got: bytes) -> tuple[str, str]:
    """Name the first part of ``got`` that differs from a correct frame, and the fix."""
    mac = hmac.new(key, body, hashlib.sha256).digest()
    length = MAC_SIZE + len(body)
    if got.endswith(body) and len(got) > len(body):
        head = got[:len(got) - len(body)]
        if head == len(body).to_bytes(4, "big") + mac:
            return ("the length field counts only the body",
                    "It counts the MAC too: 32 + len(body).")
        if head == length.to_bytes(4, "little") + mac:
            return ("the length field is little-endian",
                    "Network order is big-endian: length.to_bytes(4, 'big') or "
                    "struct.pack('>I', length).")
        if head == mac + length.to_bytes(4, "big"):
            return "the MAC comes before the length", "The order is length, MAC, body."
        if head == length.to_bytes(4, "big"):
            return "there is no MAC", "Put hmac.new(key, body, hashlib.sha256).digest() " \
                                      "between the length and the body."
        if head.endswith(mac):
            return (f"the length field is {head[:-MAC_SIZE].hex() or 'missing'} (hex)",
                    f"4 bytes, big-endian, 32 + len(body): here {length} = "
                    f"{length.to_bytes(4, 'big').hex()}.")
        if len(head) > 4:
            sent = head[4:]
            if sent == mac.hex().encode():
                return ("the MAC is 64 hex characters",
                        "Use .digest() (32 raw bytes), not .hexdigest().")
            if sent == hmac.new(body, key, hashlib.sha256).digest():
                return ("the key and the message are swapped",
                        "hmac.new(key, body, hashlib.sha256): the key comes first.")
            if sent == hashlib.sha256(key + body).digest():
                return ("the MAC is a plain hash of key + body",
                        "A hash is not a MAC: use hmac.new(key, body, hashlib.sha256).")
            if sent == hmac.new(key, body, hashlib.sha1).digest():
                return "the MAC uses SHA-1", "Protocol version 1 uses SHA-256."
            return ("the 32 bytes after the length are not HMAC-SHA256(key, body)",
                    "hmac.new(key, body, hashlib.sha256).digest()")
    if body not in got:
        return ("the body is not in the frame unchanged",
                "Put the body bytes you were given at the end, as they are.")
    return ("the frame is not length | MAC | body",
            "(32 + len(body)).to_bytes(4, 'big') + hmac.new(key, body, "
            "hashlib.sha256).digest() + body")


async def check_make_frame(make_frame: Callable[[bytes, bytes], Any]) -> ExerciseResult:
    """``make_frame(key, body)`` must return the bytes of one protocol frame for ``body``
    (already JSON-encoded bytes): the length, the HMAC-SHA256, the body. The last frame it
    builds is sent to a real executor, which must run it."""
    if not callable(make_frame):
        return ExerciseResult(FRAME, False, f"expected a function, got {make_frame!r}",
                              "Pass the function itself: check_make_frame(make_frame).")
    if inspect.iscoroutinefunction(make_frame):
        return ExerciseResult(FRAME, False, "make_frame is async",
                              "Building bytes needs no waiting: use a plain `def`.")
    server_key = secrets.token_bytes(32)
    bodies = [b"{}", "{\"note\": \"caf\u00e9 \u2713\"}".encode(),
              json.dumps(new_request(["echo", "hello from your frame"])).encode()]
    keys = [secrets.token_bytes(32), secrets.token_bytes(20), server_key]
    got = b""
    for key, body in zip(keys, bodies, strict=True):
        try:
            got = make_frame(key, body)
        except NotImplementedError:
            raise
        except Exception as exc:
            return ExerciseResult(FRAME, False, f"make_frame raised {type(exc).__name__}: "
                                  f"{exc}", "Run it on its own in a cell to see the traceback.")
        if isinstance(got, str):
            return ExerciseResult(FRAME, False, "it returned str, not bytes",
                                  "A frame is bytes: join bytes with +, never str.")
        if not isinstance(got, bytes | bytearray):
            return ExerciseResult(FRAME, False, f"it returned {type(got).__name__}, "
                                  "not bytes", "Return length + mac + body (all bytes).")
        if bytes(got) != _expected(key, body):
            message, hint = _diagnose(key, body, bytes(got))
            return ExerciseResult(FRAME, False, message, hint)
    async with serve_executor({"echo": "echo"}, key=server_key, timeout=5) as server:
        reply = await _send(server.address, server_key, bytes(got))
    if reply.get("stdout") != "hello from your frame\n":
        return ExerciseResult(FRAME, False, f"the server answered {reply.get('error')}",
                              "Build the frame from the body you were given, unchanged.")
    return ExerciseResult(FRAME, True, "byte for byte right, and a real executor ran it: "
                          "'hello from your frame'.")


async def _send(address: tuple[str, int], key: bytes, frame: bytes) -> dict[str, Any]:
    with anyio.fail_after(10):
        async with await anyio.connect_tcp(*address) as stream:
            await stream.send(frame)
            data = b""
            while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
                data += await stream.receive()
    return decode_frame(key, data)


class _Parser:
    """A stand-in for json.loads that remembers what it was given."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []

    def __call__(self, body: bytes) -> dict[str, Any]:
        self.calls.append(bytes(body))
        return {"parsed": bytes(body).decode("utf-8", "replace")}


def check_open_frame(open_frame: Callable[[bytes, bytes, Callable[[bytes], Any]], Any]
                     ) -> ExerciseResult:
    """``open_frame(key, payload, parse)``: ``payload`` is a frame without its length (the
    32-byte MAC, then the body). Return ``parse(body)`` when the MAC is right, ``None``
    when it is not, and never call ``parse`` on a body whose MAC is wrong."""
    if not callable(open_frame):
        return ExerciseResult(OPEN, False, f"expected a function, got {open_frame!r}",
                              "Pass the function itself: check_open_frame(open_frame).")
    key = secrets.token_bytes(32)
    good_body = b'{"v": 1, "argv": ["echo", "hi"]}'
    evil_body = b"[" * 30000  # deep enough to blow up a recursive parser
    good = hmac.new(key, good_body, hashlib.sha256).digest() + good_body
    forged = secrets.token_bytes(32) + evil_body
    resigned = hmac.new(key, good_body, hashlib.sha256).digest() + good_body.replace(b"hi",
                                                                                     b"id")
    wrong_key = hmac.new(secrets.token_bytes(32), good_body, hashlib.sha256).digest() + good_body
    cases = [("a frame with the right MAC", good, True),
             ("a forged MAC in front of 30,000 '['", forged, False),
             ("a body altered after signing", resigned, False),
             ("a MAC made with another key", wrong_key, False)]
    for name, payload, valid in cases:
        parse = _Parser()
        try:
            value = open_frame(key, payload, parse)
        except NotImplementedError:
            raise
        except Exception as exc:
            if not valid and parse.calls:
                return _parsed_first()
            if not valid and isinstance(exc, RecursionError | json.JSONDecodeError):
                return ExerciseResult(OPEN, False, f"for {name} it raised "
                                      f"{type(exc).__name__}: a parser ran on the forged body",
                                      "Anyone can send such a body: compare the MAC before "
                                      "any parsing, and return None when it does not match.")
            return ExerciseResult(OPEN, False, f"for {name} it raised {type(exc).__name__}: "
                                  f"{exc}", "Return None for a wrong MAC instead of raising.")
        if inspect.iscoroutine(value):
            value.close()
            return ExerciseResult(OPEN, False, "open_frame is async",
                                  "Checking a MAC needs no waiting: use a plain `def`.")
        if valid:
            if parse.calls == [payload]:
                return ExerciseResult(OPEN, False, "parse() was given the MAC as well as "
                                      "the body", "The body starts after the 32-byte MAC: "
                                      "parse(payload[32:]).")
            if value != {"parsed": good_body.decode()} or parse.calls != [good_body]:
                return ExerciseResult(OPEN, False, f"for {name} it returned "
                                      f"{repr(value)[:60]}",
                                      "When the MAC is right, return parse(body) where body "
                                      "is payload[32:].")
        else:
            if parse.calls:
                return _parsed_first()
            if value is not None:
                return ExerciseResult(OPEN, False, f"for {name} it returned {value!r}",
                                      "Return None when the MAC does not match.")
    if not _uses_compare_digest(open_frame):
        return ExerciseResult(OPEN, False, "the MACs are not compared with compare_digest",
                              "== stops at the first differing byte, so its timing tells an "
                              "attacker how much of a forged MAC was right: use "
                              "hmac.compare_digest(a, b).")
    return ExerciseResult(OPEN, True, "the parser only ever sees bodies whose MAC matched, "
                          "compared in constant time.")


def _parsed_first() -> ExerciseResult:
    return ExerciseResult(OPEN, False, "parse() ran on a body whose MAC was wrong",
                          "Anyone without the key reaches your parser that way. Compute "
                          "hmac.new(key, body, hashlib.sha256).digest(), compare it with "
                          "payload[:32], and call parse only if they match.")


def _uses_compare_digest(function: Callable[..., Any]) -> bool:
    """True if the function's source (or a function it calls by name) uses compare_digest;
    True as well when the source cannot be read, so a right answer is never refused."""
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return True
    if "compare_digest" in source:
        return True
    names = getattr(getattr(function, "__code__", None), "co_names", ())
    module = sys.modules.get(getattr(function, "__module__", ""), None)
    scope = {**getattr(function, "__globals__", {}), **vars(module or object())}
    for name in names:
        helper = scope.get(name)
        if inspect.isfunction(helper) and helper is not function:
            try:
                if "compare_digest" in inspect.getsource(helper):
                    return True
            except (OSError, TypeError):
                continue
    return False
