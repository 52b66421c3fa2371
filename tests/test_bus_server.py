"""The test server itself: loopback only, whichever implementation it is."""

from __future__ import annotations

import json
import uuid

from tests.harness.aws import BusServer, Deployment, Inbox, listening_sockets, publish


def test_server_listens_on_loopback_only(moto: BusServer, deployment: Deployment) -> None:
    # Every service in use first, in case one of them opens a socket lazily.
    publish(moto, deployment, "chaos", "chaos:echo:loopback")
    assert Inbox(moto, deployment.queue_url).wait(1)
    bucket = f"loopback-{uuid.uuid4().hex[:10]}"
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=json.dumps({"x": 1}).encode())

    sockets = listening_sockets(moto.processes())
    # The server's own port must be found, or this check would prove nothing.
    assert any(kind == "tcp" and port == moto.port for _, kind, _, port in sockets), sockets
    assert all(address == "127.0.0.1" for _, _, address, _ in sockets), sockets
