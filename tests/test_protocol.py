"""Frames between the supervisor and a child: round trips and malformed frames."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sesshu.pool.protocol import (
    BootFailed,
    Job,
    ProtocolError,
    Ready,
    Result,
    decode_child,
    decode_job,
    encode_child,
    encode_job,
)


@pytest.mark.parametrize("job", [
    Job(1, "chaos", "chaos:echo:x"),
    Job(2**40, "http_robots", "https://example.com/path?q=1#frag"),
    Job(3, "chaos", 'quotes " and \\ backslash\nnewline'),
    Job(4, "chaos", "unicode: \u00e9\u4e2d\U0001f600"),
    Job(5, "chaos", "x" * 10_000),
])
def test_job_round_trip(job: Job) -> None:
    frame = encode_job(job)
    assert b"\n" not in frame  # one line, whatever the target holds
    assert decode_job(frame) == job


@pytest.mark.parametrize("msg", [
    Ready(),
    BootFailed("chaos", "ImportError: no module named x"),
    BootFailed("chaos", "multi\nline\nerror"),
    Result(7, "done", payload=b'{"a":[1,2,3]}'),
    Result(7, "done", payload=b'"line one\\nline two"'),
    Result(8, "empty"),
    Result(9, "rejected", "invalid target: ValueError: nope"),
    Result(10, "failed", "fetch raised RuntimeError: boom\nsecond line", reason="fetch_error"),
    Result(11, "failed", "result is 9 bytes, over the 8-byte limit", reason="too_large"),
    Result(12, "failed", "plugin asked to retry in 120 s: busy", reason="retry_later", delay=120),
    Result(13, "failed", "plugin asked to retry in 0 s", reason="retry_later", delay=0),
    Result(14, "failed", "plugin asked to retry in 43200 s", reason="retry_later", delay=43200),
    Result(15, "done", payload=b"1", sweep=False),
])
def test_child_message_round_trip(msg: Ready | BootFailed | Result) -> None:
    assert decode_child(encode_child(msg)) == msg


def test_a_result_says_whether_its_job_may_have_left_a_process_and_by_default_it_may() -> None:
    clean = decode_child(encode_child(Result(1, "empty", sweep=False)))
    assert isinstance(clean, Result) and clean.sweep is False
    swept = decode_child(encode_child(Result(1, "empty")))
    assert isinstance(swept, Result) and swept.sweep is True
    bare = decode_child(b'{"op": "result", "job": 1, "status": "empty", "error": "", "reason": ""}')
    assert isinstance(bare, Result) and bare.sweep is True  # a frame that does not say is swept


def test_result_payload_bytes_are_kept_verbatim() -> None:
    payload = json.dumps({"k": "v\n", "n": [1.5, None]}, separators=(",", ":")).encode()
    frame = encode_child(Result(1, "done", payload=payload))
    decoded = decode_child(frame)
    assert isinstance(decoded, Result) and decoded.payload == payload


@pytest.mark.parametrize("frame", [
    b"",
    b"not json",
    b"\xff\xfe",
    b"[1, 2]",
    b'"ready"',
    b"null",
    b"{}",
    b'{"op": "nonsense"}',
    b'{"op": ["result"]}',
    b'{"op": "result"}',
    b'{"op": "result", "job": 1}',
    b'{"op": "result", "job": 1, "status": "exploded"}',
    b'{"op": "result", "job": "one", "status": "done"}',
    b'{"op": "result", "job": null, "status": "done"}',
    b'{"op": "result", "job": [], "status": "done"}',
    b'{"op": "boot_failed", "plugin": "chaos"}',
    b'{"op": "boot_failed", "error": "x"}',
    b"\n{\"op\": \"ready\"}",
    # A delay is whole seconds of a retry_later within SQS's 12 hours, and nothing else.
    b'{"op": "result", "job": 1, "status": "failed", "reason": "retry_later", "error": "", "delay": -1}',
    b'{"op": "result", "job": 1, "status": "failed", "reason": "retry_later", "error": "", "delay": 43201}',
    b'{"op": "result", "job": 1, "status": "failed", "reason": "retry_later", "error": "", "delay": 1.5}',
    b'{"op": "result", "job": 1, "status": "failed", "reason": "retry_later", "error": "", "delay": true}',
    b'{"op": "result", "job": 1, "status": "failed", "reason": "retry_later", "error": "", "delay": "9"}',
    b'{"op": "result", "job": 1, "status": "failed", "reason": "fetch_error", "error": "", "delay": 5}',
    b'{"op": "result", "job": 1, "status": "rejected", "reason": "retry_later", "error": "", "delay": 5}',
    # A reason is one the runner gives, and only on a failure: the master counts outcomes by it.
    b'{"op": "result", "job": 1, "status": "failed", "reason": "anything at all", "error": ""}',
    b'{"op": "result", "job": 1, "status": "failed", "reason": "", "error": ""}',
    b'{"op": "result", "job": 1, "status": "empty", "reason": "fetch_error", "error": ""}',
    # Whether to sweep is true or false, nothing a lax reading could take for either.
    b'{"op": "result", "job": 1, "status": "empty", "reason": "", "error": "", "sweep": 0}',
    b'{"op": "result", "job": 1, "status": "empty", "reason": "", "error": "", "sweep": "no"}',
    b'{"op": "result", "job": 1, "status": "empty", "reason": "", "error": "", "sweep": null}',
])
def test_malformed_child_frames_raise_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_child(frame)


@pytest.mark.parametrize("payload", [b"\xff\xfe", b"", b"{not json"])
def test_done_result_with_a_payload_that_is_not_json_is_a_protocol_error(payload: bytes) -> None:
    frame = b'{"op": "result", "job": 1, "status": "done", "error": ""}\n' + payload
    with pytest.raises(ProtocolError):
        decode_child(frame)


# -- hostile frames: bounded before parsing, and only ever a ProtocolError ------------

def test_a_deeply_nested_result_is_refused_before_parsing() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(ProtocolError, match="nested deeper"):
        decode_child(b'{"op": "result", "job": 1, "status": "done", "error": ""}\n' + deep)


def test_a_deeply_nested_header_is_refused() -> None:
    with pytest.raises(ProtocolError):
        decode_child(b'{"op": ' + b"[" * 50_000 + b"]" * 50_000 + b"}")


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    payload = json.dumps({"text": "[" * 1000 + '\\"' + "{" * 1000}).encode()
    decoded = decode_child(b'{"op": "result", "job": 1, "status": "done", "error": ""}\n' + payload)
    assert isinstance(decoded, Result) and decoded.payload == payload


@given(st.binary(max_size=2048))
@settings(max_examples=300, deadline=None)
def test_any_bytes_decode_or_raise_protocol_error(frame: bytes) -> None:
    try:
        decode_child(frame)
    except ProtocolError:
        pass


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                     max_size=4),
                       max_leaves=40)


@given(JSONISH, st.binary(max_size=256))
@settings(max_examples=300, deadline=None)
def test_any_json_header_decodes_or_raises_protocol_error(header: object, payload: bytes) -> None:
    try:
        frame = json.dumps(header).encode() + b"\n" + payload
    except ValueError:
        return
    try:
        decode_child(frame)
    except ProtocolError:
        pass


def test_every_reason_the_runner_gives_is_one_the_master_accepts() -> None:
    from sesshu.pool.protocol import FAILURE_REASONS
    from sesshu.worker.runner import LEAVING_REASONS

    assert set(LEAVING_REASONS) <= FAILURE_REASONS
    for reason in FAILURE_REASONS:
        delay = 5 if reason == "retry_later" else None
        result = Result(1, "failed", "why", reason=reason, delay=delay)
        assert decode_child(encode_child(result)) == result
