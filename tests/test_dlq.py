"""``sesshu dlq`` and ``sesshu provision --filter-plugin``, as real processes against the session's server.

moto has no StartMessageMoveTask (it answers HTTP 500), LocalStack has one:
under ``make test-localstack`` a plain redrive goes through the task, on moto
through the fallback. Either way the fallback is also reached the way a real
server reaches it: a move task refused because its source is no queue's DLQ,
and ``--max``, which a move task cannot honour.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from sesshu.ops.provision import Deployment
from tests.harness.aws import REGION, BusServer, aws_env, drain, poll, provision, queue_depth
from tests.test_ops_cli import one_line_error

_names = itertools.count()
SECRET_BODY = "not json \u202e https://user:hunter2@example.com/x"


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    return f"dlq{next(_names)}-{request.node.name[5:30]}".replace("_", "-").replace("[", "-").rstrip("]")


def sesshu(server: BusServer, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sesshu.ops.cli", *args, "--endpoint-url", server.url],
                          env=aws_env(), check=False, capture_output=True, text=True, timeout=180, **kwargs)


def dead_letters(server: BusServer, d: Deployment, count: int) -> list[str]:
    """``count`` requests in the DLQ (every third in an SNS envelope, with a message attribute), and one
    body that is not JSON at all; returns the bodies."""
    bodies = []
    for i in range(count):
        request = json.dumps({"plugin": "chaos", "target": f"https://example.com/{i}"})
        bodies.append(json.dumps({"Type": "Notification", "Message": request}) if i % 3 == 0 else request)
    bodies.append(SECRET_BODY)
    sqs = server.client("sqs")
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": body,
                    **({"MessageAttributes": {"origin": {"DataType": "String", "StringValue": f"n{start + i}"}}}
                       if (start + i) % 2 else {})}
                   for i, body in enumerate(bodies[start:start + 10])]
        assert not sqs.send_message_batch(QueueUrl=d.dlq_url, Entries=entries).get("Failed")
    return bodies


def visible(server: BusServer, url: str) -> tuple[int, int]:
    attrs = server.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def peeked(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """MessageId -> the rest of its line, without the receive count (which each peek raises)."""
    assert result.returncode == 0, result.stderr
    *lines, summary = result.stdout.splitlines()
    assert "none consumed" in summary
    out = {}
    for line in lines:
        message_id, receives, rest = line.split("  ", 2)
        assert receives.startswith("receives=") and receives[9:].isdigit()
        assert message_id not in out, f"{message_id} printed twice"
        out[message_id] = rest
    return out


def test_peek_prints_every_message_and_consumes_nothing(bus_server: BusServer, name: str) -> None:
    d = provision(bus_server, name)
    bodies = dead_letters(bus_server, d, 24)  # 25 messages: more than two receives' worth
    first = peeked(sesshu(bus_server, "dlq", "peek", "--queue", d.dlq_url))
    assert len(first) == 25
    # Right after, every message is visible again: none hidden, none deleted.
    assert visible(bus_server, d.dlq_url) == (25, 0)
    targets = sorted(rest.split("target=")[1] for rest in first.values() if "target=" in rest)
    assert targets == sorted(f"https://example.com/{i}" for i in range(24))
    assert all("plugin=chaos" in rest and "sent=20" in rest for rest in first.values() if "target=" in rest)
    [bad] = [rest for rest in first.values() if "unparsed" in rest]
    assert "not valid JSON" in bad and "\\u202e" in bad and "***@example.com" in bad and "hunter2" not in bad

    again = peeked(sesshu(bus_server, "dlq", "peek", "--queue", d.dlq_url))
    assert again == first
    assert Counter(m["Body"] for m in drain(bus_server, d.dlq_url)) == Counter(bodies)


def test_peek_max_prints_that_many_and_releases_all(bus_server: BusServer, name: str) -> None:
    d = provision(bus_server, name)
    dead_letters(bus_server, d, 14)
    assert len(peeked(sesshu(bus_server, "dlq", "peek", "--queue", f"{name}-dlq", "--max", "4"))) == 4
    assert visible(bus_server, d.dlq_url) == (15, 0)


def test_peek_of_an_empty_queue(bus_server: BusServer, name: str) -> None:
    d = provision(bus_server, name)
    assert peeked(sesshu(bus_server, "dlq", "peek", "--queue", d.dlq_url)) == {}


def take(server: BusServer, queue_url: str) -> list[dict[str, Any]]:
    """Receive and delete what is visible now, with message attributes (``drain`` leaves them out)."""
    sqs = server.client("sqs")
    out: list[dict[str, Any]] = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                          MessageAttributeNames=["All"]).get("Messages", []):
        out.extend(messages)
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
    return out


def moved_once(server: BusServer, source: str, target: str, bodies: list[str]) -> list[dict[str, Any]]:
    """Every body arrived in ``target`` exactly once, and ``source`` is empty; the messages that arrived."""
    arrived: list[dict[str, Any]] = []

    def all_there() -> bool:
        arrived.extend(take(server, target))
        return len(arrived) >= len(bodies)

    poll(all_there, timeout=60, what=f"{len(bodies)} messages in {target}")
    assert Counter(m["Body"] for m in arrived) == Counter(bodies)  # bodies exact, none twice
    assert queue_depth(server, source) == 0
    return arrived


def test_redrive_moves_every_message_back_once(bus_server: BusServer, name: str) -> None:
    d = provision(bus_server, name)
    bodies = dead_letters(bus_server, d, 29)
    result = sesshu(bus_server, "dlq", "redrive", "--queue", d.dlq_url)  # --to: found from the redrive policy
    assert result.returncode == 0, result.stderr
    assert f"moved 30 message(s) from {d.dlq_url} to {d.queue_url}" in result.stdout
    if bus_server.name == "moto":
        assert "(receive, send, delete; StartMessageMoveTask refused: HTTP 500)" in result.stdout
    else:
        assert "(StartMessageMoveTask)" in result.stdout
    arrived = moved_once(bus_server, d.dlq_url, d.queue_url, bodies)
    # Message attributes travel with the body.
    origins = sorted(m.get("MessageAttributes", {}).get("origin", {}).get("StringValue", "") for m in arrived)
    assert [o for o in origins if o] == sorted(f"n{i}" for i in range(1, 30, 2))


def test_redrive_falls_back_when_the_server_refuses_a_move_task(bus_server: BusServer, name: str) -> None:
    # SQS refuses a move task whose source is no queue's DLQ: the results
    # queue is one. Moving by hand works from any queue.
    d = provision(bus_server, name)
    sqs = bus_server.client("sqs")
    bodies = [f"body {i} \u00e9" for i in range(23)]
    for body in bodies:
        sqs.send_message(QueueUrl=d.results_queue_url, MessageBody=body)
    result = sesshu(bus_server, "dlq", "redrive", "--queue", d.results_queue_url, "--to", f"{name}-requests")
    assert result.returncode == 0, result.stderr
    assert "moved 23 message(s)" in result.stdout
    assert "(receive, send, delete; StartMessageMoveTask refused: " in result.stdout
    moved_once(bus_server, d.results_queue_url, d.queue_url, bodies)


def test_redrive_max_is_honoured(bus_server: BusServer, name: str) -> None:
    d = provision(bus_server, name)
    bodies = dead_letters(bus_server, d, 16)
    first = sesshu(bus_server, "dlq", "redrive", "--queue", d.dlq_url, "--max", "7")
    assert first.returncode == 0, first.stderr
    assert "moved 7 message(s)" in first.stdout and "(receive, send, delete)" in first.stdout
    assert queue_depth(bus_server, d.dlq_url) == 10
    part = moved_once_so_far(bus_server, d.queue_url, 7)
    rest = sesshu(bus_server, "dlq", "redrive", "--queue", d.dlq_url, "--max", "100")
    assert rest.returncode == 0, rest.stderr
    assert "moved 10 message(s)" in rest.stdout
    left = Counter(bodies) - Counter(m["Body"] for m in part)
    arrived = moved_once(bus_server, d.dlq_url, d.queue_url, list(left.elements()))
    assert Counter(m["Body"] for m in part + arrived) == Counter(bodies)


def moved_once_so_far(server: BusServer, queue: str, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    poll(lambda: got.extend(drain(server, queue)) or len(got) >= count, timeout=30, what=f"{count} moved")
    assert len(got) == count
    return got


def test_redrive_needs_to_when_no_single_queue_feeds_the_dlq(bus_server: BusServer, name: str) -> None:
    d = provision(bus_server, name)
    sqs = bus_server.client("sqs")
    one_line_error(sesshu(bus_server, "dlq", "redrive", "--queue", d.results_queue_url),
                   "no queue has", "give --to")
    dlq_arn = sqs.get_queue_attributes(QueueUrl=d.dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    sqs.create_queue(QueueName=f"{name}-other", Attributes={"RedrivePolicy": policy})
    one_line_error(sesshu(bus_server, "dlq", "redrive", "--queue", d.dlq_url),
                   "2 queues have", f"{name}-requests", "give --to")
    one_line_error(sesshu(bus_server, "dlq", "redrive", "--queue", d.dlq_url, "--to", d.dlq_url), "itself")


def test_purge_without_a_terminal_or_yes_deletes_nothing(bus_server: BusServer, name: str) -> None:
    d = provision(bus_server, name)
    dead_letters(bus_server, d, 4)
    one_line_error(sesshu(bus_server, "dlq", "purge", "--queue", d.dlq_url, input="yes\n"), "not purged", "--yes")
    assert visible(bus_server, d.dlq_url) == (5, 0)


def purge_on_a_terminal(server: BusServer, queue: str, answer: str) -> tuple[int, str]:
    """Run ``dlq purge`` with a pseudo-terminal as stdin, type ``answer``; (status, stderr)."""
    primary, secondary = os.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "sesshu.ops.cli", "dlq", "purge", "--queue", queue,
                                 "--endpoint-url", server.url], env=aws_env(), stdin=secondary,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.close(secondary)
        os.write(primary, answer.encode() + b"\n")
        _out, err = proc.communicate(timeout=120)
        return proc.returncode, err
    finally:
        os.close(primary)


def test_purge_asks_and_does_nothing_unless_told_yes(bus_server: BusServer, name: str) -> None:
    d = provision(bus_server, name)
    dead_letters(bus_server, d, 4)
    status, err = purge_on_a_terminal(bus_server, d.dlq_url, "no")
    assert status == 1
    assert "Delete all 5 message(s)" in err and f"dead-letter queue of {d.queue_url}" in err
    assert err.strip().endswith("sesshu: not purged: not confirmed")
    assert visible(bus_server, d.dlq_url) == (5, 0)

    status, err = purge_on_a_terminal(bus_server, d.dlq_url, "yes")
    assert status == 0, err
    poll(lambda: queue_depth(bus_server, d.dlq_url) == 0, timeout=60, what="the DLQ to be empty")


def test_purge_yes_empties_the_dlq_and_only_a_dlq(bus_server: BusServer, name: str) -> None:
    d = provision(bus_server, name)
    dead_letters(bus_server, d, 12)
    bus_server.client("sqs").send_message(QueueUrl=d.queue_url, MessageBody="keep me")
    one_line_error(sesshu(bus_server, "dlq", "purge", "--queue", d.queue_url, "--yes"), "no queue's dead-letter")
    result = sesshu(bus_server, "dlq", "purge", "--queue", f"{name}-dlq", "--yes")
    assert result.returncode == 0, result.stderr
    assert f"purged {d.dlq_url}" in result.stdout
    poll(lambda: queue_depth(bus_server, d.dlq_url) == 0, timeout=60, what="the DLQ to be empty")
    assert queue_depth(bus_server, d.queue_url) == 1


@pytest.mark.parametrize("action", ["peek", "redrive", "purge"])
def test_dlq_actions_take_endpoint_url_and_region(action: str) -> None:
    result = subprocess.run([sys.executable, "-m", "sesshu.ops.cli", "dlq", action, "--help"], env=aws_env(),
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--endpoint-url" in result.stdout and "--region" in result.stdout


def test_dlq_on_a_missing_queue_fails_in_one_line(bus_server: BusServer, name: str) -> None:
    one_line_error(sesshu(bus_server, "dlq", "peek", "--queue", f"{name}-absent", "--region", REGION),
                   f"no queue named '{name}-absent'")


def results_subscription(server: BusServer, d: Deployment) -> dict[str, str]:
    sns = server.client("sns")
    [sub] = sns.list_subscriptions_by_topic(TopicArn=d.results_topic)["Subscriptions"]
    return dict(sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])["Attributes"])


def publish_result(server: BusServer, d: Deployment, text: str, plugin: str | None) -> None:
    attributes = {"plugin": {"DataType": "String", "StringValue": plugin}} if plugin else {}
    server.client("sns").publish(TopicArn=d.results_topic, Message=text, MessageAttributes=attributes)


def test_provision_filter_plugin_sets_a_filter_policy_that_works(bus_server: BusServer, name: str) -> None:
    result = sesshu(bus_server, "provision", name, "--filter-plugin", "http_robots", "--filter-plugin", "chaos",
                    "--region", REGION)
    assert result.returncode == 0, result.stderr
    d = provision(bus_server, name)  # the same resources, to know their names; converges, changes nothing
    sub = results_subscription(bus_server, d)
    assert json.loads(sub["FilterPolicy"]) == {"plugin": ["chaos", "http_robots"]}
    assert sub.get("FilterPolicyScope", "MessageAttributes") == "MessageAttributes"

    # Both moto and LocalStack apply filter policies when they publish.
    for plugin in ("http_javascript", None, "chaos", "http_stylesheet", "http_robots"):
        publish_result(bus_server, d, f"from {plugin}", plugin)
    bodies: list[str] = []
    poll(lambda: bodies.extend(m["Body"] for m in drain(bus_server, d.results_queue_url)) or len(bodies) >= 2,
         timeout=30, what="the two matching results")
    assert sorted(bodies) == ["from chaos", "from http_robots"]

    # A run without the option removes the filter: every result arrives again.
    again = sesshu(bus_server, "provision", name, "--region", REGION)
    assert again.returncode == 0, again.stderr
    assert results_subscription(bus_server, d).get("FilterPolicy", "{}") == "{}"
    publish_result(bus_server, d, "unfiltered", None)
    got = poll(lambda: drain(bus_server, d.results_queue_url), timeout=30, what="the unfiltered result")
    assert [m["Body"] for m in got] == ["unfiltered"]


def test_provision_refuses_a_bad_filter_plugin(bus_server: BusServer) -> None:
    one_line_error(sesshu(bus_server, "provision", "x", "--filter-plugin", "no/such"), "--filter-plugin", "no/such")


class SameTenSqs:
    """A queue that hands back the same ten messages on every receive (as SQS may under VisibilityTimeout=0)."""

    def __init__(self) -> None:
        self.receives = 0
        self.released: list[str] = []

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        self.receives += 1
        return {"Messages": [{"MessageId": f"m{i}", "ReceiptHandle": f"m{i}#{self.receives}", "Body": "{}",
                              "Attributes": {"ApproximateReceiveCount": str(self.receives)}} for i in range(10)]}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.released.extend(e["ReceiptHandle"] for e in Entries)
        return {}


def test_peek_ends_when_nothing_new_comes_and_releases_the_latest_handles() -> None:
    from sesshu.ops.aws import EMPTY_RECEIVES
    from sesshu.ops.dlq import peek

    sqs = SameTenSqs()
    shown: list[str] = []
    peek(sqs, "dlq", lambda m: shown.append(m["MessageId"]))
    assert shown == [f"m{i}" for i in range(10)]
    assert sqs.receives == 1 + EMPTY_RECEIVES
    assert sorted(sqs.released) == sorted(f"m{i}#{sqs.receives}" for i in range(10))


def test_peek_releases_what_it_holds_when_printing_fails() -> None:
    from sesshu.ops.dlq import peek

    sqs = SameTenSqs()

    def broken(message: dict[str, Any]) -> None:
        raise BrokenPipeError

    with pytest.raises(BrokenPipeError):
        peek(sqs, "dlq", broken)
    assert len(sqs.released) == 10
