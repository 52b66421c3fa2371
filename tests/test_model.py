"""The running Config: defaults filled in, plugin entries, lanes sized, files loaded."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from sesshu.config import schema
from sesshu.config.model import Config, PluginConfig, from_mapping, load
from sesshu.config.schema import ConfigError
from tests.test_schema import BUS, MINIMAL, with_changes


def test_defaults_fill_in_omitted_keys() -> None:
    cfg = from_mapping(MINIMAL)
    assert cfg == Config(
        path="<config>", log_name="sesshu", log_path=None, log_level="info", log_format="text",
        plugins=(PluginConfig("chaos", 30.0, {}),), plugin_path=(), worker_count=4, timeout=30.0,
        prefetch=10, shutdown_timeout=30.0, retry_delay=5.0, retry_max_delay=900.0, poll_interval=20,
        region=None, endpoint_url=None, queue="requests", topic="arn:aws:sns:us-east-1:1:results",
    )


def test_partial_sections_keep_their_other_defaults() -> None:
    cfg = from_mapping(with_changes(workers={"count": 2, "retry": {"delay": 1}}, logging={"level": "DEBUG"}))
    assert cfg.worker_count == 2
    assert (cfg.retry_delay, cfg.retry_max_delay) == (1.0, 900.0)
    assert cfg.poll_interval == 20
    assert cfg.log_level == "debug"  # coerced to lower case
    assert cfg.log_name == "sesshu"


def test_from_mapping_does_not_change_its_input() -> None:
    doc = with_changes(plugin=[{"name": "chaos"}])
    before = copy.deepcopy(doc)
    from_mapping(doc)
    assert doc == before


def test_plugin_mapping_entries_carry_timeout_and_options() -> None:
    cfg = from_mapping(with_changes(
        plugin=[{"name": "slow", "timeout": 120, "options": {"depth": 3, "agent": "x"}}, "quick",
                {"name": "bare"}],
        workers={"timeout": 7.5},
    ))
    assert cfg.plugins == (
        PluginConfig("slow", 120.0, {"depth": 3, "agent": "x"}),
        PluginConfig("quick", 7.5, {}),
        PluginConfig("bare", 7.5, {}),
    )
    assert cfg.plugin("slow") == PluginConfig("slow", 120.0, {"depth": 3, "agent": "x"})
    assert cfg.plugin("nope") is None
    assert all(isinstance(p.timeout, float) for p in cfg.plugins)


def test_per_plugin_timeout_defaults_to_the_workers_default() -> None:
    cfg = from_mapping(with_changes(plugin=["a", {"name": "b", "options": {}}]))
    assert [p.timeout for p in cfg.plugins] == [30.0, 30.0]


def test_load_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match="cannot read config file") as info:
        load(str(path))
    assert str(path) in str(info.value)


def test_load_broken_yaml_names_the_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("bus:\n  input: {queue: q}\nplugin: [chaos\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load(str(path))
    assert str(info.value).startswith(f"{path}: ")
    assert "at line" in str(info.value)


def test_load_round_trips_a_written_config(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(with_changes(workers={"count": 3, "prefetch": 2})))
    cfg = load(str(path))
    assert (cfg.path, cfg.worker_count, cfg.prefetch) == (str(path), 3, 2)


@pytest.mark.parametrize("workers, senders, receivers", [(1, 4, 2), (4, 4, 2), (64, 4, 2), (256, 16, 4),
                                                         (200, 13, 4)])
def test_auto_lanes_follow_the_worker_count(workers: int, senders: int, receivers: int) -> None:
    cfg = from_mapping(with_changes(workers={"count": workers}))
    assert (cfg.senders, cfg.receivers) == (senders, receivers)
    cfg = from_mapping(with_changes(workers={"count": workers}, bus={**BUS, "senders": 3, "receivers": 5}))
    assert (cfg.senders, cfg.receivers) == (3, 5)


def test_network_allow_is_empty_by_default_and_normalised_when_given() -> None:
    assert from_mapping(MINIMAL).network_allow == ()
    cfg = from_mapping(with_changes(workers={"network": {"allow": ["127.0.0.0/8", "::1", " 10.0.0.0/8", "FD00::/8"]}}))
    assert cfg.network_allow == ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "fd00::/8")
    assert "network_allow" not in schema.RESTART_ONLY  # a reload gives the new list to the workers it starts
