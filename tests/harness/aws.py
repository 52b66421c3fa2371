"""A real SQS/SNS-speaking server on loopback (moto's standalone server), and
the queues and topics a Sesshu deployment needs, for tests, demo and bench.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3

from sesshu.provision import Deployment
from sesshu.provision import provision as provision_deployment

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


class MotoServer:
    """``moto_server`` in a subprocess on a free 127.0.0.1 port."""

    def __init__(self, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MotoServer:
        exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which("moto_server")
        if exe is None:
            raise RuntimeError("moto_server not found: install the test extra (pip install -e '.[test]')")
        log = open(self._log_path, "wb") if self._log_path else None  # noqa: SIM115 - handed to the child
        self._proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(self.port)],
                                      stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT, env=aws_env())
        if log is not None:
            log.close()  # the child holds its own copy of the fd
        poll(self._up, timeout=60, what="moto_server to answer")
        return self

    def _up(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {self._proc.returncode}")
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def client(self, service: str) -> Any:
        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        ).client(service, endpoint_url=self.url)

    def __enter__(self) -> MotoServer:  # noqa: PYI034 - start() returns the server
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def provision(server: MotoServer, name: str, *, visibility: int = 30, max_receive: int | None = 2,
              raw: bool = False) -> Deployment:
    """The deployment ``sesshu provision`` would make, on ``server``."""
    return provision_deployment(server.client("sqs"), server.client("sns"), name,
                                visibility=visibility, max_receive=max_receive, raw=raw)


def drain(server: MotoServer, queue_url: str, *, wait: int = 0) -> list[dict[str, Any]]:
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


def queue_depth(server: MotoServer, queue_url: str) -> int:
    attrs = server.client("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])
