"""Shared fixtures: one real moto server for the session, unique deployments per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.aws import Deployment, MotoServer, provision
from tests.harness.daemon import Daemon
from tests.harness.site import FixtureSite


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(log_path=tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture
def deployment(moto: MotoServer) -> Deployment:
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
def site() -> Iterator[FixtureSite]:
    """A fresh loopback fixture web site."""
    with FixtureSite() as s:
        yield s
