"""The ``sesshu`` operator command, run as a real process against the session's SQS/SNS server."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sesshu.bus.payloads import pointer_body
from sesshu.config.model import from_mapping
from sesshu.jobs.requests import RequestParser
from sesshu.ops.provision import Deployment
from tests.harness.aws import (
    REGION,
    MotoServer,
    aws_env,
    drain,
    extended_sns,
    poll,
    provision,
    queue_depth,
)

HERE = Path(__file__).parent
_names = itertools.count()


@pytest.fixture(scope="module")
def server(bus_server: MotoServer) -> MotoServer:
    """The session's server: moto, or LocalStack under ``make test-localstack``."""
    return bus_server


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    return f"op{next(_names)}-{request.node.name[5:30]}".replace("_", "-")


def sesshu(*args: str, stdin: str | None = None, endpoint: str | None = None) -> subprocess.CompletedProcess[str]:
    # AWS_ENDPOINT_URL only when asked for; otherwise --endpoint-url must do.
    return subprocess.run([sys.executable, "-m", "sesshu.ops.cli", *args], input=stdin, env=aws_env(endpoint),
                          check=False, capture_output=True, text=True, timeout=120)


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]


def write_config(tmp_path: Path, **overrides: Any) -> Path:
    doc: dict[str, Any] = {
        "plugin": ["chaos"],
        "plugin_path": [str(HERE / "plugins")],
        "bus": {"region": REGION, "input": {"queue": "nothing"}, "output": {"topic": "arn:aws:sns:x"}},
    }
    doc.update(overrides)
    path = tmp_path / "sesshu.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def subscriptions(server: MotoServer, topic: str) -> list[dict[str, Any]]:
    sns = server.client("sns")
    subs = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    for sub in subs:
        sub.update(sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])["Attributes"])
    return list(subs)


def test_provision_twice_is_idempotent(server: MotoServer, name: str) -> None:
    first = sesshu("provision", name, "--endpoint-url", server.url, "--region", REGION)
    assert first.returncode == 0, first.stderr
    again = sesshu("provision", name, "--endpoint-url", server.url, "--raw", "--visibility", "90")
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout

    config = from_mapping({"plugin": ["http_robots"], **yaml.safe_load(again.stdout)})
    assert (config.region, config.endpoint_url) == (REGION, server.url)
    assert config.queue.endswith(f"/{name}-requests")
    assert config.topic.endswith(f":{name}-results")

    sqs = server.client("sqs")
    attrs = sqs.get_queue_attributes(QueueUrl=config.queue, AttributeNames=["All"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "90"
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["maxReceiveCount"] == 3 and redrive["deadLetterTargetArn"].endswith(f":{name}-dlq")
    requests_topic = config.topic.replace("-results", "-requests")
    assert requests_topic in json.loads(attrs["Policy"])["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"]

    [to_queue] = subscriptions(server, requests_topic)
    assert to_queue["RawMessageDelivery"] == "true"  # the second run converged on --raw
    [to_results] = subscriptions(server, config.topic)
    assert to_results["RawMessageDelivery"] == "true"


def test_provision_rejects_a_bad_name(server: MotoServer) -> None:
    one_line_error(sesshu("provision", "no spaces", "--endpoint-url", server.url), "name")


def test_submit_to_the_topic_reaches_the_queue(server: MotoServer, name: str) -> None:
    d = provision(server, name)
    targets = [f"https://example.com/{i}" for i in range(12)]
    stdin = "\n".join(targets[2:]) + "\n\n  \n"
    result = sesshu("submit", "chaos", targets[0], "-", targets[1], "--topic", d.requests_topic,
                    "--endpoint-url", server.url, stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert "sent 12 request(s)" in result.stdout

    parser = RequestParser(["chaos"])
    got: list[str] = []

    def all_arrived() -> bool:
        got.extend(parser.parse(m["Body"]).target for m in drain(server, d.queue_url))
        return len(got) >= len(targets)

    poll(all_arrived, timeout=30, what="12 requests in the queue")
    assert sorted(got) == sorted(targets)


def test_submit_to_the_queue(server: MotoServer, name: str) -> None:
    d = provision(server, name)
    result = sesshu("submit", "chaos", "echo:1", "--queue", d.queue_url, endpoint=server.url)
    assert result.returncode == 0, result.stderr
    assert "sent 1 request(s)" in result.stdout
    [message] = drain(server, d.queue_url)
    assert json.loads(message["Body"]) == {"plugin": "chaos", "target": "echo:1"}


def test_submit_to_a_missing_topic_fails_in_one_line(server: MotoServer) -> None:
    topic = f"arn:aws:sns:{REGION}:123456789012:no-such-topic"
    one_line_error(sesshu("submit", "chaos", "x", "--topic", topic, "--endpoint-url", server.url), "Publish")


def publish_results(server: MotoServer, d: Deployment, count: int, *, wait: bool = True) -> list[dict[str, Any]]:
    docs = [{"plugin": "chaos", "target": f"t{i}", "status": "ok", "result": i} for i in range(count)]
    sns = server.client("sns")
    for doc in docs[:-1]:
        sns.publish(TopicArn=d.results_topic, Message=json.dumps(doc))
    # One arrives wrapped in an SNS envelope, as from a non-raw subscription.
    envelope = {"Type": "Notification", "MessageId": "x", "Message": json.dumps(docs[-1])}
    server.client("sqs").send_message(QueueUrl=d.results_queue_url, MessageBody=json.dumps(envelope))
    if wait:
        poll(lambda: queue_depth(server, d.results_queue_url) == count, what="results in the queue")
    return docs


def printed(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    return sorted(docs, key=lambda doc: doc["result"])


def test_results_prints_and_deletes(server: MotoServer, name: str) -> None:
    d = provision(server, name)
    docs = publish_results(server, d, 13)
    assert printed(sesshu("results", "--queue", d.results_queue_url, "--endpoint-url", server.url)) == docs
    assert queue_depth(server, d.results_queue_url) == 0


def test_results_keep_leaves_them_visible(server: MotoServer, name: str) -> None:
    d = provision(server, name)
    docs = publish_results(server, d, 12)
    for _ in range(2):
        result = sesshu("results", "--queue", d.results_queue_url, "--keep", endpoint=server.url)
        assert printed(result) == docs
    attrs = server.client("sqs").get_queue_attributes(
        QueueUrl=d.results_queue_url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "12"


def test_results_follow_exits_zero_on_sigterm(server: MotoServer, name: str) -> None:
    d = provision(server, name)
    proc = subprocess.Popen([sys.executable, "-m", "sesshu.ops.cli", "results", "--follow", "--queue",
                             d.results_queue_url, "--endpoint-url", server.url],
                            env=aws_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        docs = publish_results(server, d, 1, wait=False)
        # Printed means the loop runs; it deletes, then long-polls again.
        poll(lambda: queue_depth(server, d.results_queue_url) == 0, timeout=30, what="results to be read")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == docs


def test_check_ok(tmp_path: Path) -> None:
    result = sesshu("check", "-c", str(write_config(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK")


def test_check_bad_config_is_one_line(tmp_path: Path) -> None:
    one_line_error(sesshu("check", "-c", str(write_config(tmp_path, workers={"count": 0}))), "workers.count")


def test_check_plugin_that_does_not_import(tmp_path: Path) -> None:
    config = write_config(tmp_path, plugin=["broken"], plugin_path=[str(HERE / "broken_plugins")])
    one_line_error(sesshu("check", "-c", str(config)), "plugin[0]", "broken")


def aws_config(tmp_path: Path, server: MotoServer, queue: str, topic: str) -> Path:
    bus = {"region": REGION, "endpoint_url": server.url, "input": {"queue": queue}, "output": {"topic": topic}}
    return write_config(tmp_path, bus=bus)


def test_check_aws_ok(tmp_path: Path, server: MotoServer, name: str) -> None:
    d = provision(server, name)
    result = sesshu("check", "--aws", "-c", str(aws_config(tmp_path, server, f"{name}-requests", d.results_topic)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK") and d.queue_url in result.stdout
    assert "DLQ after 2 receives" in result.stdout


def test_check_aws_missing_queue(tmp_path: Path, server: MotoServer, name: str) -> None:
    d = provision(server, name)
    config = aws_config(tmp_path, server, f"{name}-absent", d.results_topic)
    one_line_error(sesshu("check", "--aws", "-c", str(config)), "bus.input.queue", f"{name}-absent")


def test_check_aws_missing_topic(tmp_path: Path, server: MotoServer, name: str) -> None:
    provision(server, name)
    config = aws_config(tmp_path, server, f"{name}-requests", f"arn:aws:sns:{REGION}:123456789012:{name}-absent")
    one_line_error(sesshu("check", "--aws", "-c", str(config)), "bus.output.topic")


def table(stdout: str) -> dict[str, list[str]]:
    header, *lines = stdout.splitlines()
    columns = ["NAME", "ORIGIN", "ENABLED", "LOCATION"]
    starts = [header.index(c) for c in columns]
    assert header.split() == columns
    cells = [[line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)] for line in lines]
    return {row[0]: row[1:] for row in cells}


def test_plugins_lists_origin_and_enabled(tmp_path: Path) -> None:
    result = sesshu("plugins", "-c", str(write_config(tmp_path, plugin=["http_robots", "chaos"])))
    assert result.returncode == 0, result.stderr
    rows = table(result.stdout)
    assert rows["http_robots"][:2] == ["shipped", "yes"]
    assert rows["http_robots"][2].endswith("http_robots.py") and Path(rows["http_robots"][2]).is_file()
    assert rows["http_javascript"][:2] == ["shipped", "no"]
    assert rows["chaos"] == ["plugin_path", "yes", str((HERE / "plugins" / "chaos.py").resolve())]


def test_plugins_flags_an_enabled_plugin_that_is_missing(tmp_path: Path) -> None:
    result = sesshu("plugins", "-c", str(write_config(tmp_path, plugin=["chaos", "nowhere"])))
    assert result.returncode == 1
    assert table(result.stdout)["nowhere"] == ["-", "yes", "NOT INSTALLED"]
    assert "nowhere" in result.stderr and "not installed" in result.stderr


# docs/operations.md: "The others take --endpoint-url and --region".
@pytest.mark.parametrize("command", ["check", "plugins", "submit", "results", "provision"])
def test_every_command_takes_endpoint_url_and_region(command: str) -> None:
    result = sesshu(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "--endpoint-url" in result.stdout and "--region" in result.stdout


def test_check_aws_takes_the_endpoint_and_region_from_the_command_line(tmp_path: Path, server: MotoServer,
                                                                      name: str) -> None:
    d = provision(server, name)
    config = write_config(tmp_path, bus={"input": {"queue": f"{name}-requests"},
                                         "output": {"topic": d.results_topic}})  # no region, no endpoint
    env = {k: v for k, v in aws_env().items() if k != "AWS_DEFAULT_REGION"}

    def check(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sesshu.ops.cli", "check", "--aws", "-c", str(config), *flags],
                              env=env, check=False, capture_output=True, text=True, timeout=120)

    one_line_error(check("--endpoint-url", server.url), "bus.region")
    result = check("--endpoint-url", server.url, "--region", REGION)
    assert result.returncode == 0, result.stderr
    assert d.queue_url in result.stdout


def test_check_aws_unreachable_exits_75_like_a_start(tmp_path: Path) -> None:
    config = write_config(tmp_path, bus={"region": REGION, "input": {"queue": "q"},
                                         "output": {"topic": f"arn:aws:sns:{REGION}:123456789012:t"}})
    result = sesshu("check", "--aws", "-c", str(config), "--endpoint-url", "http://127.0.0.1:1")
    assert result.returncode == 75, result
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "cannot reach the bus at start-up" in result.stderr


def test_plugins_without_a_config_lists_what_is_installed(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from sesshu.ops import cli as opcli

    monkeypatch.setattr(opcli, "DEFAULT_CONFIG", "/nonexistent/sesshu.yaml")
    assert opcli.main(["plugins", "--plugin-path", str(HERE / "plugins")]) == 0
    rows = table(capsys.readouterr().out)
    assert rows["http_robots"][:2] == ["shipped", "-"]  # no config: neither enabled nor disabled
    assert rows["chaos"][:2] == ["plugin_path", "-"]


def test_plugins_with_a_missing_config_named_on_the_command_line(tmp_path: Path) -> None:
    one_line_error(sesshu("plugins", "-c", str(tmp_path / "absent.yaml")), "absent.yaml", "cannot read")


def test_submit_resolves_a_topic_name(server: MotoServer, name: str) -> None:
    d = provision(server, name)
    result = sesshu("submit", "chaos", "echo:named", "--topic", f"{name}-requests", "--endpoint-url", server.url,
                    "--region", REGION)
    assert result.returncode == 0, result.stderr
    assert f"to {d.requests_topic}" in result.stdout
    got = poll(lambda: drain(server, d.queue_url), timeout=30, what="the request in the queue")
    assert [RequestParser(["chaos"]).parse(m["Body"]).target for m in got] == ["echo:named"]


@pytest.mark.parametrize(("topic", "words"), [
    ("no-such-topic", ["no topic named 'no-such-topic'", REGION, "ARN"]),
    ("not a name", ["neither a topic ARN nor a topic name"]),
    ("arn:aws:sns:x", ["is not a topic ARN"]),
])
def test_submit_refuses_a_topic_it_cannot_resolve(server: MotoServer, topic: str, words: list[str]) -> None:
    one_line_error(sesshu("submit", "chaos", "x", "--topic", topic, "--endpoint-url", server.url,
                          "--region", REGION), *words)


def test_submit_and_results_take_queue_names(server: MotoServer, name: str) -> None:
    d = provision(server, name)
    sent = sesshu("submit", "chaos", "echo:q", "--queue", f"{name}-requests", "--endpoint-url", server.url)
    assert sent.returncode == 0, sent.stderr
    assert f"to {d.queue_url}" in sent.stdout
    docs = publish_results(server, d, 2)
    assert printed(sesshu("results", "--queue", f"{name}-results", "--endpoint-url", server.url)) == docs
    one_line_error(sesshu("results", "--queue", f"{name}-absent", "--endpoint-url", server.url),
                   f"no queue named '{name}-absent'")


def test_results_prints_documents_stored_in_s3_raw_or_enveloped(server: MotoServer, name: str) -> None:
    """A pointer in the extended clients' format is followed to S3, whether it came raw or in an envelope."""
    d = provision(server, name)
    bucket = f"{name.lower()}-results"
    server.client("s3").create_bucket(Bucket=bucket)
    docs = [{"plugin": "chaos", "target": f"t{i}", "message_id": f"m{i}", "result": i} for i in range(3)]
    # Raw: what the results subscription of `sesshu provision` delivers.
    extended_sns(server, bucket).publish(TopicArn=d.results_topic, Message=json.dumps(docs[0]))
    server.client("sns").publish(TopicArn=d.results_topic, Message=json.dumps(docs[1]))  # inline
    # In an envelope, as a subscription without raw delivery has it: the attribute is inside.
    server.client("s3").put_object(Bucket=bucket, Key="k2", Body=json.dumps(docs[2]).encode())
    envelope = {"Type": "Notification", "MessageId": "x", "Message": pointer_body(bucket, "k2"),
                "MessageAttributes": {"ExtendedPayloadSize": {"Type": "Number", "Value": "60"}}}
    server.client("sqs").send_message(QueueUrl=d.results_queue_url, MessageBody=json.dumps(envelope))
    poll(lambda: queue_depth(server, d.results_queue_url) == 3, what="results in the queue")
    assert printed(sesshu("results", "--queue", d.results_queue_url, "--endpoint-url", server.url)) == docs


def test_results_prints_a_pointer_it_cannot_follow_with_a_warning(server: MotoServer, name: str) -> None:
    d = provision(server, name)
    body = pointer_body("no-such-bucket-of-sesshu", "k")
    server.client("sqs").send_message(QueueUrl=d.results_queue_url, MessageBody=body, MessageAttributes={
        "ExtendedPayloadSize": {"DataType": "Number", "StringValue": "10"}})
    result = sesshu("results", "--queue", d.results_queue_url, "--endpoint-url", server.url)
    assert result.returncode == 0 and result.stdout == body + "\n"
    assert "cannot read s3://no-such-bucket-of-sesshu/k" in result.stderr
