"""A real SQS/SNS-speaking server on loopback (moto's standalone server, or
LocalStack: ``tests.harness.localstack``), and the queues and topics a Sesshu
deployment needs, for tests, demo and bench.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import psutil

from sesshu.bus.payloads import POINTER_CLASS
from sesshu.ops.provision import Deployment
from sesshu.ops.provision import provision as provision_deployment

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def aws_env(endpoint: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FAKE_CREDENTIALS)
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env


def poll(condition: Any, timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Wait until ``condition()`` is truthy; return its value, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class BusServer:
    """An SQS/SNS/S3 server in a subprocess on a free 127.0.0.1 port; subclasses start it."""

    name = ""  # "moto" or "localstack": what tests and reports call it

    def __init__(self, log_path: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_path = log_path
        self._env = env or {}  # e.g. INITIAL_NO_AUTH_ACTION_COUNT, to make it check credentials
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BusServer:
        raise NotImplementedError

    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def processes(self) -> list[psutil.Process]:
        """The server and every process it started."""
        root = psutil.Process(self.pid())
        return [root, *root.children(recursive=True)]

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def client(self, service: str) -> Any:
        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        ).client(service, endpoint_url=self.url)

    def __enter__(self) -> BusServer:  # noqa: PYI034 - start() returns the server
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MotoServer(BusServer):
    """moto's server in a subprocess on a free 127.0.0.1 port, each queue locked
    (``tests.harness.motoserver`` says why)."""

    name = "moto"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tests.harness.motoserver", "--port", str(self.port)]

    def start(self) -> MotoServer:
        log = open(self._log_path, "wb") if self._log_path else None  # noqa: SIM115 - handed to the child
        env = {**aws_env(), **self._env}
        # The server runs a module of this checkout's tests package, from any directory.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO_ROOT), env.get("PYTHONPATH"))))
        self._proc = subprocess.Popen(self.command(), stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                      env=env)
        if log is not None:
            log.close()  # the child holds its own copy of the fd
        poll(self._up, timeout=60, what="the moto server to answer")
        return self

    def _up(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise RuntimeError(f"the moto server exited with {self._proc.returncode}")
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                return True
        except OSError:
            return False


def start_server(name: str, workdir: Path) -> BusServer:
    """Start the server called ``name`` ("moto" or "localstack"), its files in ``workdir``."""
    if name == "moto":
        return MotoServer(log_path=workdir / "moto.log").start()
    if name == "localstack":
        from tests.harness.localstack import LocalStackServer

        return LocalStackServer(workdir).start()
    raise ValueError(f"unknown bus server {name!r}: moto or localstack")


def listening_sockets(processes: list[psutil.Process]) -> list[tuple[int, str, str, int]]:
    """(pid, "tcp" or "udp", address, port) of every socket these processes serve on.

    A TCP socket counts in state LISTEN; a UDP socket counts when it is not
    connected to a peer (a server's socket, as a DNS server's would be).
    """
    found = []
    for proc in processes:
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        for c in conns:
            tcp = c.type == socket.SOCK_STREAM
            if (tcp and c.status == psutil.CONN_LISTEN) or (not tcp and not c.raddr):
                found.append((proc.pid, "tcp" if tcp else "udp", c.laddr.ip, c.laddr.port))
    return found


def provision(server: BusServer, name: str, *, visibility: int = 30, max_receive: int | None = 2,
              raw: bool = False) -> Deployment:
    """The deployment ``sesshu provision`` would make, on ``server``."""
    return provision_deployment(server.client("sqs"), server.client("sns"), name,
                                visibility=visibility, max_receive=max_receive, raw=raw)


def drain(server: BusServer, queue_url: str, *, wait: int = 0) -> list[dict[str, Any]]:
    """Receive and delete everything visible in a queue now."""
    sqs = server.client("sqs")
    out: list[dict[str, Any]] = []
    while True:
        reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait,
                                    MessageSystemAttributeNames=["All"])
        msgs = reply.get("Messages", [])
        if not msgs:
            return out
        out.extend(msgs)
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])


def queue_depth(server: BusServer, queue_url: str) -> int:
    attrs = server.client("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def publish(server: BusServer, dep: Deployment, plugin: str, *targets: str) -> None:
    """Publish one request per target to the requests topic, as Panorama does (batches of 10)."""
    sns = server.client("sns")
    for i in range(0, len(targets), 10):
        entries = [{"Id": str(n), "Message": json.dumps({"plugin": plugin, "target": t})}
                   for n, t in enumerate(targets[i:i + 10])]
        reply = sns.publish_batch(TopicArn=dep.requests_topic, PublishBatchRequestEntries=entries)
        assert not reply.get("Failed"), reply["Failed"]


class Inbox:
    """Everything that arrives on a queue (results, or dead letters), drained as it goes.

    ``envelope``: the bodies are SNS envelopes (dead-lettered requests), and
    ``docs`` holds the requests inside them.
    """

    def __init__(self, server: BusServer, queue_url: str, envelope: bool = False) -> None:
        self.server, self.queue_url, self.envelope = server, queue_url, envelope
        self.raw: list[str] = []

    def bodies(self) -> list[str]:
        """Every body received so far, after draining what is there now."""
        self.raw.extend(m["Body"] for m in drain(self.server, self.queue_url))
        return list(self.raw)

    @property
    def docs(self) -> list[dict[str, Any]]:
        """The bodies that are JSON documents (a dead letter may be anything).

        A result stored in S3 arrives as the extended clients' pointer: its
        document is read from S3, as their receive would.
        """
        out = []
        for body in self.raw:
            try:
                doc = json.loads(body)
                doc = json.loads(doc["Message"]) if self.envelope else doc
                if isinstance(doc, list) and len(doc) == 2 and doc[0] == POINTER_CLASS:
                    where = doc[1]
                    stored = self.server.client("s3").get_object(Bucket=where["s3BucketName"], Key=where["s3Key"])
                    doc = json.loads(stored["Body"].read())
                out.append(doc)
            except (ValueError, KeyError, TypeError):
                continue
        return [d for d in out if isinstance(d, dict)]

    def pointers(self) -> list[list[Any]]:
        """The bodies that are S3 pointers, as they came."""
        return [doc for body in self.raw if isinstance(doc := _json(body), list) and doc[:1] == [POINTER_CLASS]]

    def refresh(self) -> Counter[str]:
        self.bodies()
        return self.counts()

    def counts(self) -> Counter[str]:
        """How many documents arrived for each target."""
        return Counter(d["target"] for d in self.docs)

    def wait(self, n: int, timeout: float = 60.0) -> list[str]:
        """Wait for at least ``n`` bodies in all; return them."""
        return list(poll(lambda: self.bodies() if len(self.bodies()) >= n else None, timeout,
                         interval=0.2, what=f"{n} messages on {self.queue_url}"))

    def wait_for(self, targets: list[str] | set[str], timeout: float = 90.0) -> Counter[str]:
        """Wait until every target has arrived at least once."""
        want = set(targets)
        poll(lambda: want <= set(self.refresh()), timeout, interval=0.2,
             what=f"{len(want)} targets on {self.queue_url} (missing: {sorted(want - set(self.counts()))[:5]})")
        return self.counts()


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def extended_sqs(server: BusServer, bucket: str | None = None) -> Any:
    """An SQS client of AWS's SQS Extended Client Library, on ``server`` (its S3 client too).

    With ``bucket``, every message it sends goes through S3 (``always_through_s3``).
    """
    session_class = _extended("sqs_extended_client", "SQSExtendedClientSession")
    session = session_class(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    sqs = session.client("sqs", endpoint_url=server.url)
    sqs.s3_client = server.client("s3")  # the library makes its own without the endpoint
    if bucket is not None:
        sqs.large_payload_support = bucket
        sqs.always_through_s3 = True
    return sqs


def extended_sns(server: BusServer, bucket: str) -> Any:
    """An SNS client of AWS's SNS Extended Client Library, on ``server``, storing every message in ``bucket``."""
    session_class = _extended("sns_extended_client", "SNSExtendedClientSession")
    session = session_class(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    sns = session.client("sns", endpoint_url=server.url)
    sns.s3_client = server.client("s3")
    sns.large_payload_support = bucket
    sns.always_through_s3 = True
    return sns


def _extended(module: str, name: str) -> Any:
    """An extended client library's session class, without what importing it does to boto3.

    Importing either library replaces ``boto3.Session`` (and the default
    session) with its own, for the whole process: every later client of the
    tests would be an extended one. Put boto3 back as it was.
    """
    session, default = boto3.session.Session, boto3.DEFAULT_SESSION
    try:
        return getattr(importlib.import_module(module), name)
    finally:
        boto3.session.Session = boto3.Session = session  # type: ignore[misc]
        boto3.DEFAULT_SESSION = default
