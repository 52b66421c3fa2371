"""Shared fixtures: one real SQS/SNS/S3 server for the session, unique deployments per test.

The server is moto unless ``--bus-server=localstack`` (or the environment
variable ``SESSHU_TEST_SERVER=localstack``) asks for LocalStack: the same
tests then run against a second implementation (``make test-localstack``).
A test that relies on moto's own behaviour says so with
``@pytest.mark.moto_only(reason)`` and is skipped, with that reason, on the other.
"""

from __future__ import annotations

import os
import resource
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sesshu.plugin import addresses
from tests.harness.aws import BusServer, Deployment, listening_sockets, provision, start_server
from tests.harness.daemon import Daemon
from tests.harness.site import FixtureSite

SERVERS = ("moto", "localstack")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bus-server", choices=SERVERS, default=os.environ.get("SESSHU_TEST_SERVER") or "moto",
                     help="the SQS/SNS/S3 server the tests run against (default: $SESSHU_TEST_SERVER, or moto)")


def pytest_configure(config: pytest.Config) -> None:
    # A plain user's shell starts with 1024 open files, and the pool tests hold
    # hundreds of slots of several fds each; the hard limit is what the account
    # may use, as systemd's LimitNOFILE gives a service.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    if soft != unlimited and (hard == unlimited or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != unlimited else max(soft, 65536), hard))
    config.addinivalue_line("markers", "moto_only(reason): relies on moto's behaviour; skipped on other servers")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    server = config.getoption("--bus-server")
    for item in items:
        mark = item.get_closest_marker("moto_only")
        if mark is not None and server != "moto":
            reason = mark.kwargs.get("reason") or (mark.args[0] if mark.args else "")
            item.add_marker(pytest.mark.skip(reason=f"moto only: {reason}"))


@pytest.fixture(scope="session")
def bus_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BusServer]:
    name = request.config.getoption("--bus-server")
    server = start_server(name, tmp_path_factory.mktemp(name))
    try:
        yield server
        # Again after every test had its turn: a service may open a socket lazily.
        outside = [s for s in listening_sockets(server.processes()) if s[2] != "127.0.0.1"]
        assert not outside, f"{name} listens beyond loopback: {outside}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto(bus_server: BusServer) -> BusServer:
    """The session's server under the name most tests know it by (it may be LocalStack)."""
    return bus_server


@pytest.fixture
def deployment(moto: BusServer) -> Deployment:
    return provision(moto, f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons a test starts are appended here, and killed (with any leftovers) at teardown."""
    started: list[Daemon] = []
    yield started
    for d in started:
        d.kill_all()


@pytest.fixture
def cfg_path(tmp_path: Path) -> Path:
    return tmp_path / "sesshu.yaml"


@pytest.fixture
def loopback_allowed() -> Iterator[None]:
    """This process's outbound address guard lets plugins' HTTP reach loopback, as the tests' configs do."""
    addresses.allow(["127.0.0.0/8", "::1/128"])
    yield
    addresses.allow([])


@pytest.fixture
def site(loopback_allowed: None) -> Iterator[FixtureSite]:
    """A fresh loopback fixture web site, which this process may fetch from (loopback_allowed)."""
    with FixtureSite() as s:
        yield s
