"""Poison messages against a real sesshud and a real SQS/SNS server.

Every kind of hostile body (nested 600 deep where cerberus used to recurse
to death, control and bidi characters that forged log lines, lone
surrogates that broke logging, 750 KB of multi-byte characters, a password
in a target that fails validate) must end *rejected* in the dead-letter
queue. The daemon stays up, keeps doing normal jobs, loses nothing, and
its log holds neither a forged line nor the password.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from sesshu.bus.api import Message
from sesshu.bus.lanes import Received
from sesshu.bus.memory import MemoryBus
from sesshu.config.model import from_mapping
from sesshu.daemon.assemble import plugin_specs, pool_settings
from sesshu.daemon.supervisor import Supervisor
from sesshu.pool.pool import Pool
from sesshu.pool.spawn import forkserver_context
from tests.harness.aws import Deployment, Inbox, MotoServer, drain, poll, publish
from tests.harness.daemon import TEST_PLUGINS, Daemon, write_config

PASSWORD = "hunter2-s3cret"
FORGED_LINE = "2099-01-01 00:00:00,000 [1] INFO sesshu.jobs.outcomes: done: chaos forged: result published"


def nest(depth: int) -> str:
    return "[" * depth + "]" * depth


def raw(plugin: object, target: object) -> str:
    return json.dumps({"plugin": plugin, "target": target})


def envelope(message: str) -> str:
    return json.dumps({"Type": "Notification", "MessageId": "x", "Message": message})


# name: body, as it is sent to the queue (the deployment's topic wraps nothing here).
POISON: dict[str, str] = {
    "target nested 600 deep": f'{{"plugin": "chaos", "target": {nest(600)}}}',
    "plugin nested 600 deep": f'{{"plugin": {nest(600)}, "target": "chaos:echo:x"}}',
    "extra key nested 600 deep": f'{{"plugin": "chaos", "target": "chaos:echo:x", "meta": {nest(600)}}}',
    "envelope Message nested 600 deep": f'{{"Type": "Notification", "Message": {nest(600)}}}',
    "envelope Message holding JSON nested 600 deep": envelope(f'{{"plugin": "chaos", "target": {nest(600)}}}'),
    "target with NUL": raw("chaos", "chaos:echo:a\x00b"),
    "target with CR LF": raw("chaos", f"chaos:echo:x\r\n{FORGED_LINE}"),
    "target with LF, in an envelope": envelope(raw("chaos", f"chaos:echo:y\n{FORGED_LINE}")),
    "target with ANSI escapes": raw("chaos", "chaos:echo:\x1b[2J\x1b[1;31mred"),
    "target with NEL": raw("chaos", "chaos:echo:a\x85" + FORGED_LINE),
    "target with U+2028": raw("chaos", "chaos:echo:a\u2028" + FORGED_LINE),
    "target with RLO": raw("chaos", "chaos:echo:\u202etxt.exe"),
    "target with a lone surrogate": raw("chaos", "chaos:echo:\ud800"),  # sent as the escape \ud800
    "plugin with NUL": raw("chaos\x00", "chaos:echo:x"),
    "plugin with a lone surrogate": raw("chaos\udc00", "chaos:echo:x"),
    "750 KB of multi-byte characters": json.dumps({"plugin": "chaos", "target": "chaos:echo:big",
                                                   "pad": "€" * 250_000}, ensure_ascii=False),
    "5,000-digit target": '{"plugin": "chaos", "target": ' + "9" * 5000 + "}",
    "password in a target chaos refuses": raw("chaos", f"https://admin:{PASSWORD}@example.com/"),
    "password in a target http_robots refuses": raw("http_robots", f"ftp://admin:{PASSWORD}@example.com/"),
}


# Why some of them were rejected, as the outcome line says it.
REASONS = {
    "750 KB of multi-byte characters": "body is 750",  # bytes, not its 250,000-odd characters
    "target nested 600 deep": "body is nested deeper than 32 levels",
    "envelope Message holding JSON nested 600 deep": "SNS Message is nested deeper than 32 levels",
    "target with NUL": "target holds the non-printable character U+0000",
    "target with a lone surrogate": "target holds the non-printable character U+D800",
    "password in a target chaos refuses": "https://***@example.com/",
}


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_poison_messages_end_rejected_in_the_dlq(moto: MotoServer, deployment: Deployment, cfg_path: Path,
                                                 daemons: list[Daemon], fmt: str) -> None:
    d = Daemon(write_config(cfg_path, moto, deployment, logging={"format": fmt}), moto)
    daemons.append(d.start(wait_ready=False))
    started = r"INFO sesshu\.daemon\.assemble: started"
    d.wait_log(started if fmt == "text" else r'"logger": "sesshu\.daemon\.assemble", .*"started: ', timeout=60)
    results = Inbox(moto, deployment.results_queue_url)
    publish(moto, deployment, "chaos", "chaos:echo:before")
    sqs = moto.client("sqs")
    sent = {sqs.send_message(QueueUrl=deployment.queue_url, MessageBody=body)["MessageId"]: name
            for name, body in POISON.items()}
    publish(moto, deployment, "chaos", "chaos:echo:between")

    # Nothing is lost: every poison message reaches the DLQ, byte for byte.
    dead = Inbox(moto, deployment.dlq_url).wait(len(POISON), timeout=120)
    assert sorted(dead) == sorted(POISON.values())
    # The daemon is still up, and still does normal work.
    assert d.proc is not None and d.proc.poll() is None
    publish(moto, deployment, "chaos", "chaos:echo:after")
    done = {json.loads(b)["target"] for b in results.wait(3)}
    assert done == {"chaos:echo:before", "chaos:echo:between", "chaos:echo:after"}
    assert drain(moto, deployment.queue_url) == []
    assert d.stop() == 0

    log = d.log()
    lines = log.splitlines()
    assert PASSWORD not in log
    assert "Logging error" not in log and "Traceback" not in log
    if fmt == "json":
        docs = [json.loads(line) for line in lines]  # every line is one JSON document
        outcomes = [doc for doc in docs if doc.get("logger") == "sesshu.jobs.outcomes"]
        by_id = {mid: {doc["outcome"] for doc in outcomes if doc["message_id"] == mid} for mid in sent}
    else:
        # No line was started by a sender: each is printable and starts with a real time stamp.
        assert all(line.isprintable() for line in lines)
        assert not any(line.startswith("2099") for line in lines)
        ids = {name: mid for mid, name in sent.items()}
        for name, why in REASONS.items():
            assert any(why in line for line in lines if f"message {ids[name]} " in line), (name, why)
        by_id = {mid: {line.split(" sesshu.jobs.outcomes: ")[1].split(":")[0] for line in lines
                       if " sesshu.jobs.outcomes: " in line and f"message {mid} " in line} for mid in sent}
    # Each poison message had exactly one kind of outcome, every time it was received: rejected.
    assert by_id == {mid: {"rejected"} for mid in sent}, {sent[m]: o for m, o in by_id.items()}


def test_an_unexpected_error_while_parsing_retries_that_message_only(caplog: pytest.LogCaptureFixture) -> None:
    config = from_mapping({"plugin": ["chaos"], "plugin_path": [str(TEST_PLUGINS)],
                           "bus": {"input": {"queue": "q"}, "output": {"topic": "t"}}})
    pool = Pool(forkserver_context(), pool_settings(config, plugin_specs(config)), time.monotonic)
    sup = Supervisor(config, MemoryBus(), pool)  # the pool is never started: no job runs here
    try:
        parse = sup.acceptor.parser.parse

        def buggy(body: str) -> object:
            if "boom" in body:
                raise KeyError("a bug")
            return parse(body)

        sup.acceptor.parser.parse = buggy  # type: ignore[method-assign]
        messages = [Message("m-bug", "r1", raw("chaos", "chaos:echo:boom"), 1),
                    Message("m-bad", "r2", "{not json", 1),
                    Message("m-ok", "r3", raw("chaos", "chaos:echo:ok"), 1)]
        with caplog.at_level(logging.WARNING):
            sup._on_received(Received(messages, started=time.monotonic()))
        assert sup.outcomes.reasons == {"retried:internal_error": 1, "rejected:invalid": 1}
        assert [t.message.message_id for t in sup.held] == ["m-ok"]
        crash = next(r for r in caplog.records if r.getMessage() == "internal error on message m-bug")
        assert crash.exc_info is not None and crash.exc_info[0] is KeyError
    finally:
        sup.intake.stop()
        sup.sender.stop()


def test_a_stalled_or_deep_frame_costs_only_its_worker(moto: MotoServer, deployment: Deployment, cfg_path: Path,
                                                        daemons: list[Daemon]) -> None:
    """The master reads frames without blocking: the other workers go on meanwhile."""
    d = Daemon(write_config(cfg_path, moto, deployment, plugin=["chaos", "hostile"],
                            workers={"count": 2, "timeout": 30}), moto)
    daemons.append(d.start())
    results = Inbox(moto, deployment.results_queue_url)
    publish(moto, deployment, "hostile", "hostile:partial")
    poll(lambda: any("hostile:partial" in t for t in d.worker_titles()), 30, what="the stalling job to start")
    echoes = [f"chaos:echo:meanwhile-{i}" for i in range(8)]
    publish(moto, deployment, "chaos", *echoes)
    results.wait_for(echoes, timeout=60)
    # All eight were done by the one free worker while the other sat on half a frame.
    stalled = d.wait_log(r"retried: hostile hostile:partial: sent part of a frame and stalled", timeout=30)
    assert stalled
    done_lines = [ln for ln in d.log().splitlines() if "done: chaos chaos:echo:meanwhile-" in ln]
    assert len(done_lines) == 8 and max(done_lines) < stalled[0]  # timestamps lead each line
    publish(moto, deployment, "hostile", "hostile:deep")
    d.wait_log(r"retried: hostile hostile:deep: JSON nested deeper than 64 levels", timeout=30)
    publish(moto, deployment, "chaos", "chaos:echo:after")
    results.wait_for(["chaos:echo:after"], timeout=60)
    assert d.proc is not None and d.proc.poll() is None
