"""``sesshu results`` in-process, against a fake SQS and S3: what is printed, deleted, kept and warned about.

The same command as a real process against the session's server is in
``tests/test_ops_cli.py``; here every reply is scripted, so the rare paths
(a failed delete, a failed release, an unreadable stored result) are reached.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from sesshu.bus.payloads import SIZE_ATTRIBUTE, pointer_body
from sesshu.ops import aws as opaws
from sesshu.ops import cli
from sesshu.ops.results import MAX_STORED_BYTES, ResultsError, cmd_results

QUEUE = "https://sqs.example/1/results"


class FakeSqs:
    """A queue of messages that hide for ever once received, unless ``again`` shows them each receive."""

    def __init__(self, messages: list[dict[str, Any]], *, again: bool = False) -> None:
        self.messages = messages
        self.again = again
        self.received = 0
        self.deleted: list[str] = []
        self.released: list[str] = []
        self.delete_failures: list[dict[str, Any]] = []
        self.release_failures: list[dict[str, Any]] = []

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["QueueUrl"] == QUEUE
        batch = self.messages[self.received:self.received + kwargs["MaxNumberOfMessages"]]
        if not self.again:
            self.received += len(batch)
        return {"Messages": batch} if batch else {}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.deleted.extend(e["ReceiptHandle"] for e in Entries)
        return {"Failed": self.delete_failures}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        assert all(e["VisibilityTimeout"] == 0 for e in Entries)
        self.released.extend(e["ReceiptHandle"] for e in Entries)
        return {"Failed": self.release_failures}


class FakeBody:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, amount: int) -> bytes:
        return self.data[:amount]


class FakeS3:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if Key not in self.objects:
            raise OSError("connection reset")
        return {"Body": FakeBody(self.objects[Key])}


def message(n: int, body: str, attributes: dict[str, str] | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {"MessageId": f"m{n}", "ReceiptHandle": f"h{n}", "Body": body}
    if attributes:
        m["MessageAttributes"] = {k: {"DataType": "Number", "StringValue": v} for k, v in attributes.items()}
    return m


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point the command at fakes; returns how many S3 clients it made."""
    made: list[str] = []

    def connect(sqs: FakeSqs, s3: FakeS3 | None = None) -> list[str]:
        monkeypatch.setattr(opaws, "open_queue", lambda args, queue: (sqs, QUEUE))

        def client(service: str, args: argparse.Namespace, resource: str | None) -> Any:
            assert service == "s3" and s3 is not None
            made.append(service)
            return s3

        monkeypatch.setattr(opaws, "client", client)
        return made

    return connect


def args(*, keep: bool = False) -> argparse.Namespace:
    return argparse.Namespace(queue="results", follow=False, keep=keep, region=None, endpoint_url=None)


def test_each_document_is_printed_on_one_line_then_deleted(wire: Any, capsys: pytest.CaptureFixture[str]) -> None:
    raw = {"plugin": "chaos", "target": "https://x/1", "status": "done"}
    enveloped = {"plugin": "chaos", "target": "https://x/2", "status": "done"}
    multiline = json.dumps({"a": 1}, indent=2)
    sqs = FakeSqs([message(1, json.dumps(raw)),
                   message(2, json.dumps({"Type": "Notification", "Message": json.dumps(enveloped)})),
                   message(3, multiline), message(4, "not\njson")])
    wire(sqs)
    assert cmd_results(args()) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == [json.dumps(raw), json.dumps(enveloped), '{"a": 1}', "not json"]
    assert out.err == ""
    assert sqs.deleted == ["h1", "h2", "h3", "h4"] and sqs.released == []


def test_a_delete_that_fails_is_a_warning_and_the_printing_goes_on(wire: Any,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    sqs = FakeSqs([message(i, f'{{"n": {i}}}') for i in range(12)])
    sqs.delete_failures = [{"Id": "0", "Code": "ReceiptHandleIsInvalid", "Message": "stale", "SenderFault": True}]
    wire(sqs)
    assert cmd_results(args()) == 0
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 12
    assert out.err.splitlines() == ["sesshu: warning: 1 printed message(s) not deleted: ReceiptHandleIsInvalid: "
                                    "stale"] * 2  # one a batch: two batches of ten and two


def test_keep_prints_each_message_once_and_makes_them_all_visible_again(
        wire: Any, capsys: pytest.CaptureFixture[str]) -> None:
    sqs = FakeSqs([message(i, f'{{"n": {i}}}') for i in range(3)], again=True)
    wire(sqs)
    assert cmd_results(args(keep=True)) == 0
    assert capsys.readouterr().out.splitlines() == ['{"n": 0}', '{"n": 1}', '{"n": 2}']
    assert sqs.deleted == [] and sqs.released == ["h0", "h1", "h2"]


def test_kept_messages_that_stay_hidden_fail_the_command_in_one_line(
        wire: Any, capsys: pytest.CaptureFixture[str]) -> None:
    sqs = FakeSqs([message(1, "{}")], again=True)
    sqs.release_failures = [{"Id": "0", "Code": "InternalError", "Message": "try again", "SenderFault": False}]
    wire(sqs)
    with pytest.raises(ResultsError, match=r"^1 kept message"):
        cmd_results(args(keep=True))
    capsys.readouterr()
    assert cli.main(["results", "--queue", "results", "--keep"]) == 1
    assert capsys.readouterr().err == ("sesshu: 1 kept message(s) not made visible again: "
                                       "InternalError: try again\n")


def test_results_stored_in_s3_are_read_back_and_what_cannot_be_is_printed_as_it_came(
        wire: Any, capsys: pytest.CaptureFixture[str]) -> None:
    stored = json.dumps({"plugin": "chaos", "status": "done", "result": "x" * 1000})
    size = {SIZE_ATTRIBUTE: str(len(stored))}
    envelope = {"Type": "Notification", "Message": pointer_body("b", "ok2"),
                "MessageAttributes": {SIZE_ATTRIBUTE: {"Type": "Number", "Value": str(len(stored))}}}
    bad = '["not a pointer"]'
    sqs = FakeSqs([message(1, pointer_body("b", "ok"), size), message(2, json.dumps(envelope)),
                   message(3, pointer_body("b", "gone"), size), message(4, pointer_body("b", "big"), size),
                   message(5, bad, size)])
    made = wire(sqs, FakeS3({"ok": stored.encode(), "ok2": stored.encode(), "big": b"x" * (MAX_STORED_BYTES + 1)}))
    assert cmd_results(args()) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == [stored, stored, pointer_body("b", "gone"), pointer_body("b", "big"), bad]
    warnings = out.err.splitlines()
    assert warnings[0] == "sesshu: warning: message m3: cannot read s3://b/gone: connection reset"
    assert warnings[1] == f"sesshu: warning: message m4: s3://b/big is over {MAX_STORED_BYTES} bytes"
    assert warnings[2].startswith("sesshu: warning: message m5: the body is not [")
    assert len(warnings) == 3
    assert made == ["s3"]  # one client, made on the first stored result


def test_a_stored_result_is_decoded_leniently(wire: Any, capsys: pytest.CaptureFixture[str]) -> None:
    data = b'{"text": "caf\xe9"}'
    wire(FakeSqs([message(1, pointer_body("b", "k"), {SIZE_ATTRIBUTE: str(len(data))})]), FakeS3({"k": data}))
    assert cmd_results(args()) == 0
    assert capsys.readouterr().out == data.decode("utf-8", "replace") + "\n"

