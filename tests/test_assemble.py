"""Putting the daemon together: start-up checks, worker set-up, what a reload may change."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

import pytest

from sesshu.config.model import Config, from_mapping
from sesshu.config.schema import RESTART_ONLY, SCHEMA, ConfigError, restart_fields
from sesshu.daemon import assemble
from sesshu.daemon.assemble import restart_only, worker_setup


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


def schema_keys(schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every key a config file can set, dotted, with its rules; a section is its keys."""
    for key, rules in schema.items():
        if rules.get("type") == "dict" and "schema" in rules:
            yield from schema_keys(rules["schema"], f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", rules


# A value for every key, unlike the RUNNING one's and valid in it. workers.count stays at a
# count whose "auto" lanes are those of 4, lest bus.senders change along with it.
CHANGES: dict[str, Any] = {
    "logging.name": "other", "logging.path": "/tmp/other.log", "logging.level": "debug", "logging.format": "json",
    "plugin": ["chaos", "http_robots"], "plugin_path": ["/elsewhere"],
    "workers.count": 5, "workers.timeout": 60, "workers.prefetch": 3, "workers.shutdown_timeout": 5,
    "workers.memory_limit": 512, "workers.max_jobs": 100, "workers.user": "nobody", "workers.group": "nogroup",
    "workers.environment": ["LANG"], "workers.network.allow": ["10.0.0.0/8"],
    "workers.limits.processes": 64, "workers.limits.open_files": 64,
    "workers.limits.file_size": 2, "workers.retry.delay": 1, "workers.retry.max_delay": 60,
    "workers.polling.interval": 5, "workers.filesystem.read": ["/srv/models"],
    "workers.filesystem.write": ["/var/cache/x"], "workers.require_containment": True,
    "metrics.address": "0.0.0.0", "metrics.port": 9200,
    "bus.region": "eu-west-1", "bus.endpoint_url": "http://127.0.0.1:1", "bus.senders": 9, "bus.receivers": 3,
    "bus.input.queue": "other", "bus.input.s3_buckets": ["requests"], "bus.output.topic": "t2",
    "bus.output.s3_bucket": "b2",
    "bus.output.s3_prefix": "p/", "bus.output.s3_threshold": 1000, "bus.output.failures_topic": "f",
}
RUNNING: dict[str, Any] = {"plugin": ["chaos"], "metrics": {"port": 9100},
                           "bus": {"input": {"queue": "q"}, "output": {"topic": "t", "s3_bucket": "b"}}}


@pytest.mark.parametrize("key", list(CHANGES))
def test_a_reload_keeps_exactly_the_keys_the_schema_marks(key: str) -> None:
    rules = dict(schema_keys(SCHEMA))[key]
    raw = copy.deepcopy(RUNNING)
    *sections, leaf = key.split(".")
    place = raw
    for section in sections:
        place = place.setdefault(section, {})
    place[leaf] = CHANGES[key]
    running, new = from_mapping(RUNNING), from_mapping(raw)
    assert new != running  # the change reaches the Config, so the test is not vacuous
    applied, ignored = restart_only(new, running)
    field = rules.get("meta", {}).get("restart")
    if field is None:
        assert ignored == [] and applied == new
    else:
        assert ignored == [field] and applied == running  # the marker names the field the key fills


def test_every_key_has_a_change_and_only_bus_metrics_and_polling_keys_are_marked() -> None:
    keys = dict(schema_keys(SCHEMA))
    assert set(CHANGES) == set(keys)
    marked = {k for k, rules in keys.items() if "restart" in rules.get("meta", {})}
    # As docs/operations.md says: the bus client and the intake keep their long poll's wait.
    assert marked == {k for k in keys if k.startswith(("bus.", "metrics.")) or k == "workers.polling.interval"}
    assert sorted(RESTART_ONLY) == sorted(keys[k]["meta"]["restart"] for k in marked)


def test_a_marker_is_what_makes_a_key_restart_only(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = copy.deepcopy(SCHEMA)
    schema["workers"]["schema"]["count"]["meta"] = {"restart": "worker_count"}
    del schema["bus"]["schema"]["input"]["schema"]["queue"]["meta"]
    assert "worker_count" not in RESTART_ONLY
    assert sorted(restart_fields(schema)) == sorted({*RESTART_ONLY, "worker_count"} - {"queue"})
    monkeypatch.setattr(assemble, "RESTART_ONLY", restart_fields(schema))
    new = from_mapping({**RUNNING, "workers": {"count": 7}, "bus": {"input": {"queue": "other"},
                                                                    "output": {"topic": "t", "s3_bucket": "b"}}})
    applied, ignored = restart_only(new, from_mapping(RUNNING))
    assert ignored == ["worker_count"]
    assert (applied.worker_count, applied.queue) == (4, "other")


def test_worker_environment_passes_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("LANG", "C.UTF-8")
    setup = worker_setup(make_config(environment=["HTTPS_PROXY"]), [])
    assert setup.environment["HTTPS_PROXY"] == "http://proxy:3128"
    assert setup.environment["LANG"] == "C.UTF-8"
    assert not any(k.startswith("AWS_") for k in setup.environment)
    assert setup.identity is None and setup.must_read == ()


def test_the_workers_get_the_network_allow_list() -> None:
    assert worker_setup(make_config(), []).network_allow == ()
    setup = worker_setup(make_config(network={"allow": ["127.0.0.0/8", "fd00::/8"]}), [])
    assert setup.network_allow == ("127.0.0.0/8", "fd00::/8")


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
