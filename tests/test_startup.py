"""The start-up contract, with a real sesshud against the real local SQS/SNS server.

A bus that answers "no" (no such queue or topic, credentials refused) is exit
1 with one line; a bus that cannot be reached is exit 75. It holds for a start
and for ``sesshud --check --aws`` alike, whether the queue is a name or a URL.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import EndpointConnectionError, NoCredentialsError

from sesshu.bus.api import MISSING_QUEUE_CODES, BusError
from sesshu.bus.startup import BusUnreachable, verdict
from sesshu.config.schema import ConfigError
from sesshu.ops.provision import Deployment
from tests.harness.aws import REGION, MotoServer
from tests.harness.daemon import Daemon, write_config

UNREACHABLE = "http://127.0.0.1:1"  # nothing listens on port 1: connections are refused
MODES = {"start": (), "check": ("--check", "--aws")}


def with_bus(path: Path, endpoint: str, queue: str, topic: str, **bus: Any) -> Path:
    doc = yaml.safe_load(path.read_text())
    doc["bus"] = {"region": REGION, "endpoint_url": endpoint, "input": {"queue": queue},
                  "output": {"topic": topic}, **bus}
    path.write_text(yaml.safe_dump(doc))
    return path


def run(config: Path, mode: str, server: MotoServer | None = None,
        env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Start sesshud (or its check) and wait for it to exit by itself; its exit status and output."""
    d = Daemon(config, server, *MODES[mode], env=env).start(wait_ready=False)
    try:
        status = d.wait(120)
    finally:
        d.kill_all()
    return status, d.log().strip().splitlines()


def fails_with_one_line(status: int, lines: list[str], expected: int, *words: str) -> None:
    assert status == expected, lines
    assert not any("Traceback" in line for line in lines), lines
    errors = [line for line in lines if line.startswith("sesshud: ")]
    # A start may log warnings first; exactly one line says why it stopped, and it is the last.
    assert len(errors) == 1 and errors[0] == lines[-1], lines
    for word in words:
        assert word in errors[0], errors[0]


@pytest.mark.parametrize("mode", MODES)
def test_missing_queue_by_name(moto: MotoServer, deployment: Deployment, cfg_path: Path, mode: str) -> None:
    config = with_bus(write_config(cfg_path, moto, deployment), moto.url, "absent-queue", deployment.results_topic)
    status, lines = run(config, mode, moto)
    fails_with_one_line(status, lines, 1, "config error: bus.input.queue: no queue 'absent-queue'")


@pytest.mark.parametrize("mode", MODES)
def test_missing_queue_by_url(moto: MotoServer, deployment: Deployment, cfg_path: Path, mode: str) -> None:
    url = deployment.queue_url.rsplit("/", 1)[0] + "/absent-queue"
    config = with_bus(write_config(cfg_path, moto, deployment), moto.url, url, deployment.results_topic)
    status, lines = run(config, mode, moto)
    fails_with_one_line(status, lines, 1, "config error: bus.input.queue: no queue", url)


@pytest.mark.parametrize("mode", MODES)
def test_missing_topic(moto: MotoServer, deployment: Deployment, cfg_path: Path, mode: str) -> None:
    topic = deployment.results_topic + "-absent"
    config = with_bus(write_config(cfg_path, moto, deployment), moto.url, deployment.queue_url, topic)
    status, lines = run(config, mode, moto)
    fails_with_one_line(status, lines, 1, "config error: bus.output.topic: no topic", topic)


@pytest.mark.parametrize("mode", MODES)
def test_a_topic_name_is_not_an_arn(moto: MotoServer, deployment: Deployment, cfg_path: Path, mode: str) -> None:
    config = with_bus(write_config(cfg_path, moto, deployment), moto.url, deployment.queue_url, "results")
    status, lines = run(config, mode, moto)
    fails_with_one_line(status, lines, 1, "bus.output.topic: 'results' is not a topic ARN")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("queue", ["by-name", "by-url"])
def test_unreachable_endpoint_is_tempfail(moto: MotoServer, deployment: Deployment, cfg_path: Path,
                                          mode: str, queue: str) -> None:
    given = "sesshu-requests" if queue == "by-name" else f"{UNREACHABLE}/123456789012/sesshu-requests"
    config = with_bus(write_config(cfg_path, moto, deployment), UNREACHABLE, given, deployment.results_topic)
    status, lines = run(config, mode)  # no AWS_ENDPOINT_URL: the config's endpoint is all there is
    fails_with_one_line(status, lines, 75, "cannot reach the bus at start-up", UNREACHABLE)


def test_check_aws_reports_the_queue_and_the_topic(moto: MotoServer, deployment: Deployment,
                                                    cfg_path: Path) -> None:
    config = write_config(cfg_path, moto, deployment)
    status, lines = run(config, "check", moto)
    assert status == 0, lines
    assert lines[-1].startswith(f"sesshud: {config}: OK (")
    assert deployment.queue_url in lines[-1] and deployment.results_topic in lines[-1]
    assert "DLQ after 2 receives" in lines[-1]


def test_aws_goes_with_check(moto: MotoServer, deployment: Deployment, cfg_path: Path) -> None:
    d = Daemon(write_config(cfg_path, moto, deployment), moto, "--aws").start(wait_ready=False)
    assert d.wait(60) == 2
    assert "--aws goes with --check" in d.log()


# With authentication on, moto checks keys and IAM policies. The first
# SETUP_ACTIONS requests are let through unauthenticated: they make the user
# the daemon runs as, its key, its policy, and the queue and topic.
SETUP_ACTIONS = 5
# The IAM policy of docs/security.md, without the two calls that are optional at start-up.
MINIMAL = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl",
           "sns:Publish"]


class AuthBus:
    def __init__(self, server: MotoServer) -> None:
        iam = server.client("iam")
        iam.create_user(UserName="worker")
        key = iam.create_access_key(UserName="worker")["AccessKey"]
        iam.put_user_policy(UserName="worker", PolicyName="minimal", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": MINIMAL, "Resource": "*"}]}))
        self.queue_url = server.client("sqs").create_queue(QueueName="auth-requests")["QueueUrl"]
        self.topic = server.client("sns").create_topic(Name="auth-results")["TopicArn"]
        self.server = server
        self.key = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


@pytest.fixture(scope="module")
def auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthBus]:
    log = tmp_path_factory.mktemp("moto-auth") / "moto.log"
    with MotoServer(log, env={"INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_ACTIONS)}) as server:
        yield AuthBus(server)


@pytest.mark.parametrize("mode", MODES)
def test_refused_credentials(auth: AuthBus, moto: MotoServer, deployment: Deployment, cfg_path: Path,
                             mode: str) -> None:
    config = with_bus(write_config(cfg_path, moto, deployment), auth.server.url, auth.queue_url, auth.topic)
    bogus = {"AWS_ACCESS_KEY_ID": "AKIANOTAREALKEY00000", "AWS_SECRET_ACCESS_KEY": "nope"}
    status, lines = run(config, mode, env=bogus)
    fails_with_one_line(status, lines, 1, "config error: bus.input.queue:", "refused", "InvalidClientTokenId")
    assert "nope" not in "\n".join(lines)


def test_denied_optional_calls_only_warn(auth: AuthBus, moto: MotoServer, deployment: Deployment,
                                         cfg_path: Path, daemons: list[Daemon]) -> None:
    """The minimal policy of docs/security.md: no GetQueueAttributes, no GetTopicAttributes; it still starts."""
    config = with_bus(write_config(cfg_path, moto, deployment), auth.server.url, auth.queue_url, auth.topic)
    status, lines = run(config, "check", env=auth.key)
    assert status == 0, lines
    assert "not verified: sns:GetTopicAttributes denied" in lines[-1]
    d = Daemon(config, None, env=auth.key)
    daemons.append(d.start())
    assert "cannot read the queue's attributes" in d.log()
    assert "cannot check the results topic" in d.log()
    assert d.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize(("error", "expected"), [
    (BusError("x", "AWS.SimpleQueueService.NonExistentQueue", 400), "config: no queue"),
    (BusError("x", "InvalidClientTokenId", 403), "config: refused"),
    (BusError("x", "SignatureDoesNotMatch", 403), "config: refused"),
    (BusError("x", "InvalidAddress", 404), "config: refused"),
    (BusError("x", "NoCredentialsError"), "config: no AWS credentials"),
    (BusError("x", "Throttling", 400), "unreachable"),
    (BusError("x", "InternalError", 500), "unreachable"),
    (BusError("x", "Whatever", 503), "unreachable"),
])
def test_verdict(error: BusError, expected: str) -> None:
    kind, _, words = expected.partition(": ")
    found = verdict(error, "bus.input.queue", "queue 'q'", MISSING_QUEUE_CODES)
    assert isinstance(found, ConfigError if kind == "config" else BusUnreachable)
    assert words in str(found)


def test_verdict_on_no_answer_at_all() -> None:
    error = BusError("x", "EndpointConnectionError")
    error.__cause__ = EndpointConnectionError(endpoint_url=UNREACHABLE)
    assert isinstance(verdict(error, "k", "queue 'q'", MISSING_QUEUE_CODES), BusUnreachable)
    missing = BusError("x", "NoCredentialsError")
    missing.__cause__ = NoCredentialsError()
    assert isinstance(verdict(missing, "k", "queue 'q'", MISSING_QUEUE_CODES), ConfigError)


def test_verdict_is_one_line() -> None:
    error = BusError('<?xml version="1.0"?>\n<ErrorResponse>\n</ErrorResponse>', "InvalidClientTokenId", 403)
    assert "\n" not in str(verdict(error, "k", "queue 'q'", MISSING_QUEUE_CODES))


def test_help_shows_the_default_config_and_the_exit_statuses() -> None:
    import subprocess

    from tests.harness.daemon import SESSHUD

    result = subprocess.run([str(SESSHUD), "--help"], check=True, capture_output=True, text=True, timeout=60)
    text = " ".join(result.stdout.split())
    assert "default: /etc/sesshu.yaml" in text
    assert "1 configuration error" in text and "75 the bus could not be reached" in text
