"""Putting the daemon together: start-up checks, worker set-up, what a reload may change."""

from __future__ import annotations

import os
from typing import Any

import pytest

from sesshu.config.schema import Config, ConfigError, from_mapping
from sesshu.daemon.assemble import RESTART_ONLY, restart_only, worker_setup


def make_config(**workers: Any) -> Config:
    return from_mapping({"plugin": ["chaos"], "workers": workers,
                         "bus": {"input": {"queue": "q"}, "output": {"topic": "t"}}})


def test_denied_visibility_permission_refuses_long_timeouts() -> None:
    from sesshu.bus.api import QueueInfo
    from sesshu.config.schema import ConfigError
    from sesshu.daemon.assemble import heartbeat_permitted

    class Denied:
        def visibility_permitted(self) -> bool:
            return False

    short, long = make_config(timeout=20), make_config(timeout=45)
    info = QueueInfo(visibility_timeout=30, max_receive_count=3)
    assert heartbeat_permitted(Denied(), short, info) is False  # type: ignore[arg-type]
    denied = r"^workers\.timeout: 45 s is not below .*sqs:ChangeMessageVisibility is denied"
    with pytest.raises(ConfigError, match=denied):
        heartbeat_permitted(Denied(), long, info)  # type: ignore[arg-type]


def test_a_reload_keeps_the_running_bus_and_metrics_and_says_so() -> None:
    running = make_config()
    new = from_mapping({"plugin": ["chaos", "http_robots"], "workers": {"count": 7},
                        "metrics": {"port": 9999},
                        "bus": {"input": {"queue": "other"}, "output": {"topic": "t", "s3_bucket": "b"}}})
    applied, ignored = restart_only(new, running)
    assert sorted(ignored) == ["metrics_address", "metrics_port", "queue", "s3_bucket"]
    assert all(getattr(applied, k) == getattr(running, k) for k in RESTART_ONLY)
    assert applied.worker_count == 7 and applied.plugin_names == ("chaos", "http_robots")


def test_worker_environment_passes_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("LANG", "C.UTF-8")
    setup = worker_setup(make_config(environment=["HTTPS_PROXY"]), [])
    assert setup.environment["HTTPS_PROXY"] == "http://proxy:3128"
    assert setup.environment["LANG"] == "C.UTF-8"
    assert not any(k.startswith("AWS_") for k in setup.environment)
    assert setup.identity is None and setup.must_read == ()


def test_the_allow_list_cannot_name_aws_variables() -> None:
    with pytest.raises(ConfigError, match=r"^workers\.environment\[0\]"):
        make_config(environment=["AWS_SECRET_ACCESS_KEY"])


@pytest.mark.skipif(os.geteuid() != 0, reason="resolving a worker account as root")
def test_a_worker_account_brings_its_home_and_the_files_to_check() -> None:
    setup = worker_setup(make_config(user="nobody"), [("chaos", "file", "/x/chaos.py", {})])
    assert setup.identity is not None and setup.identity.uid == 65534
    assert setup.environment["HOME"] == setup.identity.home
    assert ("/x/chaos.py", "plugin chaos") in setup.must_read
    assert any(what == "the Python interpreter" for _, what in setup.must_read)


def test_a_group_without_a_user_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^workers\.group: needs workers\.user"):
        worker_setup(make_config(group="nogroup"), [])
