"""The checks of notebook 10 accept right answers written several ways and explain wrong ones."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import struct

import pytest
from helpers import nothing_left_behind  # noqa: F401

from asyncproc_kit.exercises import check_make_frame, check_open_frame

# -- 10.1 a frame by hand --------------------------------------------------------------------


def frame_plain(key, body):
    mac = hmac.new(key, body, hashlib.sha256).digest()
    return (32 + len(body)).to_bytes(4, "big") + mac + body


def frame_struct(key, body):
    return b"".join([struct.pack(">I", len(body) + 32),
                     hmac.digest(key, body, "sha256"), body])


def frame_bytearray(key, body):
    out = bytearray(struct.pack("!L", 32 + len(body)))
    out += hmac.new(key, msg=body, digestmod="sha256").digest()
    out.extend(body)
    return out


@pytest.mark.anyio
@pytest.mark.parametrize("make_frame", [frame_plain, frame_struct, frame_bytearray])
async def test_make_frame_right_answers(make_frame) -> None:
    """length | MAC | body, however it is written, passes and a real server runs it."""
    result = await check_make_frame(make_frame)
    assert result.passed, result
    assert "hello from your frame" in result.message


def _wrong(build):
    def make_frame(key, body):
        return build(key, body, hmac.new(key, body, hashlib.sha256).digest())
    return make_frame


WRONG_FRAMES = [
    (_wrong(lambda k, b, m: len(b).to_bytes(4, "big") + m + b), "counts only the body",
     "32 + len(body)"),
    (_wrong(lambda k, b, m: (32 + len(b)).to_bytes(4, "little") + m + b), "little-endian",
     "big"),
    (_wrong(lambda k, b, m: m + (32 + len(b)).to_bytes(4, "big") + b), "MAC comes before",
     "length, MAC, body"),
    (_wrong(lambda k, b, m: (32 + len(b)).to_bytes(4, "big") + b), "no MAC", "digest()"),
    (_wrong(lambda k, b, m: (32 + len(b)).to_bytes(8, "big") + m + b), "length field is",
     "4 bytes"),
    (lambda k, b: (96 + len(b)).to_bytes(4, "big")
     + hmac.new(k, b, hashlib.sha256).hexdigest().encode() + b, "64 hex", ".digest()"),
    (lambda k, b: (32 + len(b)).to_bytes(4, "big") + hmac.new(b, k, hashlib.sha256).digest()
     + b, "swapped", "key comes first"),
    (lambda k, b: (32 + len(b)).to_bytes(4, "big") + hashlib.sha256(k + b).digest() + b,
     "plain hash", "not a MAC"),
    (lambda k, b: (20 + len(b)).to_bytes(4, "big") + hmac.new(k, b, hashlib.sha1).digest()
     + b, "SHA-1", "SHA-256"),
    (lambda k, b: (32 + len(b)).to_bytes(4, "big") + secrets.token_bytes(32) + b,
     "not HMAC-SHA256", "hmac.new"),
    (lambda k, b: (32 + len(b)).to_bytes(4, "big") + hmac.new(k, b, hashlib.sha256).digest()
     + json.dumps(json.loads(b)).encode().replace(b" ", b""), "body is not in the frame",
     "as they are"),
    (lambda k, b: frame_plain(k, b).decode("latin-1"), "str, not bytes", "bytes"),
    (lambda k, b: list(frame_plain(k, b)), "list, not bytes", "Return"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("make_frame", "message", "hint"), WRONG_FRAMES,
                         ids=[w[1] for w in WRONG_FRAMES])
async def test_make_frame_wrong_answers_are_explained(make_frame, message, hint) -> None:
    """Each classic mistake is named in the message and its fix in the hint."""
    result = await check_make_frame(make_frame)
    assert not result.passed
    assert message in result.message, result
    assert hint in result.hint, result


@pytest.mark.anyio
async def test_make_frame_wrong_kinds_of_answer() -> None:
    """Not written yet passes through; async, raising and non-callables are explained."""
    def stub(key, body):
        raise NotImplementedError("replace this line")

    with pytest.raises(NotImplementedError):
        await check_make_frame(stub)

    async def is_async(key, body):
        return frame_plain(key, body)

    assert "async" in (await check_make_frame(is_async)).message

    def raises(key, body):
        raise KeyError("oops")

    assert "raised KeyError" in (await check_make_frame(raises)).message
    assert "expected a function" in (await check_make_frame(b"frame")).message


# -- 10.2 MAC first, parser second --------------------------------------------------------------


def open_plain(key, payload, parse):
    mac, body = payload[:32], payload[32:]
    if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()):
        return None
    return parse(body)


def _expected_mac(key, body):
    return hmac.digest(key, body, "sha256")


def open_with_helper(key, payload, parse):
    body = payload[32:]
    if verified(key, payload[:32], body):
        return parse(body)
    return None


def verified(key, mac, body):
    return hmac.compare_digest(_expected_mac(key, body), mac)


def open_early_return(key, payload, parse):
    expected = hmac.new(key, payload[32:], "sha256").digest()
    return parse(payload[32:]) if hmac.compare_digest(expected, payload[:32]) else None


@pytest.mark.parametrize("open_frame", [open_plain, open_with_helper, open_early_return])
def test_open_frame_right_answers(open_frame) -> None:
    """MAC first with compare_digest, written three ways, passes."""
    result = check_open_frame(open_frame)
    assert result.passed, result


def open_parse_first(key, payload, parse):
    request = parse(payload[32:])
    if not hmac.compare_digest(payload[:32], hmac.new(key, payload[32:],
                                                      hashlib.sha256).digest()):
        return None
    return request


def open_parse_first_json(key, payload, parse):
    json.loads(payload[32:])  # the buggy server: the real parser on unauthenticated bytes
    return open_plain(key, payload, parse)


def open_with_equals(key, payload, parse):
    if payload[:32] != hmac.new(key, payload[32:], hashlib.sha256).digest():
        return None
    return parse(payload[32:])


def open_raises(key, payload, parse):
    if not hmac.compare_digest(payload[:32], hmac.new(key, payload[32:],
                                                      hashlib.sha256).digest()):
        raise ValueError("bad mac")
    return parse(payload[32:])


def open_no_check(key, payload, parse):
    return parse(payload[32:])


def open_whole_payload(key, payload, parse):
    if not hmac.compare_digest(payload[:32], hmac.new(key, payload[32:],
                                                      hashlib.sha256).digest()):
        return None
    return parse(payload)


def open_returns_false(key, payload, parse):
    ok = hmac.compare_digest(payload[:32], hmac.new(key, payload[32:], hashlib.sha256).digest())
    return ok and parse(payload[32:])


@pytest.mark.parametrize(("open_frame", "message", "hint"), [
    (open_parse_first, "parse() ran on a body whose MAC was wrong", "compare it with"),
    (open_parse_first_json, "it raised RecursionError: a parser ran on the forged body",
     "before any parsing"),
    (open_with_equals, "compare_digest", "timing"),
    (open_raises, "raised ValueError", "Return None"),
    (open_no_check, "parse() ran on a body whose MAC was wrong", "call parse only"),
    (open_whole_payload, "given the MAC as well", "payload[32:]"),
    (open_returns_false, "returned False", "Return None"),
])
def test_open_frame_wrong_answers_are_explained(open_frame, message, hint) -> None:
    """Parsing first, ==, raising, parsing the MAC too and False for None are named."""
    result = check_open_frame(open_frame)
    assert not result.passed
    assert message in result.message, result
    assert hint in result.hint, result


def test_open_frame_wrong_kinds_of_answer() -> None:
    """The stub passes through; async and non-callables are explained."""
    def stub(key, payload, parse):
        raise NotImplementedError("replace this line")

    with pytest.raises(NotImplementedError):
        check_open_frame(stub)

    async def is_async(key, payload, parse):
        return None

    assert "async" in check_open_frame(is_async).message
    assert "expected a function" in check_open_frame(None).message
