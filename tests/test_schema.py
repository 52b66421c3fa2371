"""The config schema: the sample file, defaults, and errors that name their key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from sesshu.config import schema as config
from sesshu.config.model import PluginConfig, from_mapping, load
from sesshu.config.schema import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "etc" / "sesshu.dist.yaml"

MINIMAL: dict[str, Any] = {
    "plugin": ["chaos"],
    "bus": {"input": {"queue": "requests"}, "output": {"topic": "arn:aws:sns:us-east-1:1:results"}},
}


def with_changes(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(MINIMAL)
    doc.update(changes)
    return doc


def error_of(doc: Any) -> str:
    with pytest.raises(ConfigError) as info:
        from_mapping(doc)
    return str(info.value)


def test_sample_config_validates_with_the_values_it_shows() -> None:
    cfg = load(str(SAMPLE))
    assert cfg.path == str(SAMPLE)
    assert (cfg.log_name, cfg.log_path, cfg.log_level, cfg.log_format) == (
        "sesshu", "/var/log/sesshu", "info", "text")
    assert cfg.plugins == (
        PluginConfig("http_robots", 30.0, {}),
        PluginConfig("http_javascript", 30.0, {}),
        PluginConfig("http_stylesheet", 20.0, {}),
    )
    assert cfg.plugin_names == ("http_robots", "http_javascript", "http_stylesheet")
    assert cfg.plugin_path == ()
    assert cfg.worker_count == 4
    assert cfg.timeout == 30.0
    assert cfg.prefetch == 10
    assert cfg.shutdown_timeout == 30.0
    assert (cfg.retry_delay, cfg.retry_max_delay) == (5.0, 900.0)
    assert cfg.poll_interval == 20
    assert cfg.region == "us-west-2"
    assert cfg.endpoint_url is None
    assert cfg.queue == "sesshu-requests"
    assert cfg.topic == "arn:aws:sns:us-west-2:123456789012:sesshu-results"


def test_sample_config_is_exactly_the_schema_document() -> None:
    # Every key the sample shows is one the schema knows (no "unknown field").
    raw = yaml.safe_load(SAMPLE.read_text())
    assert set(raw) <= set(config.SCHEMA)
    assert set(raw["workers"]) <= set(config.SCHEMA["workers"]["schema"])


@pytest.mark.parametrize("changes, expected", [
    ({"workers": {"count": 0}}, "workers.count: min value is 1"),
    ({"workers": {"polling": {"interval": 0}}}, "workers.polling.interval: min value is 1"),
    ({"workers": {"polling": {"interval": 99}}}, "workers.polling.interval: max value is 20"),
    ({"workers": {"timeout": -1}}, "workers.timeout: min value is 0.1"),
    ({"workers": {"count": "four"}}, "workers.count: must be of integer type"),
    ({"workers": {"retry": {"delay": -1}}}, "workers.retry.delay: min value is 0"),
    ({"plugin": [42]}, "plugin[0]: must be a plugin name or a mapping"),
    ({"plugin": ["chaos", "a/b"]}, "plugin[1]: must be a plugin name or a mapping"),
    ({"plugin": ["chaos", "a.b"]}, "plugin[1]: must be a plugin name or a mapping"),
    ({"plugin": [{"name": "../x"}]}, "plugin[0]: must be a plugin name or a mapping"),
    ({"plugin": [{"timeout": 3}]}, "plugin[0]: must be a plugin name or a mapping"),
    ({"plugin": [{"name": "chaos", "colour": "red"}]}, "plugin[0]: must be a plugin name or a mapping"),
    ({"plugin": [{"name": "chaos", "timeout": 0}]}, "plugin[0]: must be a plugin name or a mapping"),
    ({"plugin": ["chaos", "chaos"]}, "plugin[1]: 'chaos' is listed twice"),
    ({"plugin": ["chaos", {"name": "chaos", "timeout": 3}]}, "plugin[1]: 'chaos' is listed twice"),
    ({"plugin": []}, "plugin: min length is 1"),
    ({"plugin": "chaos"}, "plugin: must be of list type"),
    ({"bus": None}, "bus: null value not allowed"),
    ({"bus": {"output": {"topic": "t"}}}, "bus.input: required field"),
    ({"bus": {"input": {}, "output": {"topic": "t"}}}, "bus.input.queue: required field"),
    ({"bus": {"input": {"queue": ""}, "output": {"topic": "t"}}}, "bus.input.queue: empty values not allowed"),
    ({"bus": {"input": {"queue": "q"}}}, "bus.output: required field"),
    ({"colour": "red"}, "colour: unknown field"),
    ({"logging": {"level": "bogus"}}, "logging.level: unallowed value bogus"),
    ({"logging": {"format": "xml"}}, "logging.format: unallowed value xml"),
    ({"logging": {"name": "a/b"}}, "logging.name: value does not match regex"),
    ({"plugin_path": "/opt/plugins"}, "plugin_path: must be of list type"),
    ({"workers": {"network": {"allow": "127.0.0.0/8"}}}, "workers.network.allow: must be of list type"),
    ({"workers": {"network": {"allow": [8]}}}, "workers.network.allow[0]: must be of string type"),
    ({"workers": {"network": {"allow": ["::1", "10.0.0.1/8"]}}},
     "workers.network.allow[1]: '10.0.0.1/8' is not an address range such as 10.0.0.0/8 or fd00::/8 "
     "(10.0.0.1/8 has host bits set)"),
    ({"workers": {"network": {"allow": ["localhost"]}}}, "workers.network.allow[0]: 'localhost' is not an address"),
    ({"workers": {"network": {"allow": ["10.0.0.0/33"]}}}, "workers.network.allow[0]: '10.0.0.0/33' is not"),
    ({"workers": {"network": {"deny": []}}}, "workers.network.deny: unknown field"),
])
def test_schema_errors_name_their_key(changes: dict[str, Any], expected: str) -> None:
    assert error_of(with_changes(**changes)).startswith(expected)


def test_missing_bus_names_bus() -> None:
    doc = copy.deepcopy(MINIMAL)
    del doc["bus"]
    assert error_of(doc) == "bus: required field"


def test_missing_plugin_names_plugin() -> None:
    doc = copy.deepcopy(MINIMAL)
    del doc["plugin"]
    assert error_of(doc) == "plugin: required field"


@pytest.mark.parametrize("text", ["", "- chaos\n- robots\n", "just a string\n", "42\n"])
def test_a_document_that_is_no_mapping(tmp_path: Path, text: str) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert str(info.value) == f"{path}: the config must be a YAML mapping"


def test_valid_plugin_name() -> None:
    assert config.valid_plugin_name("http_robots")
    assert config.valid_plugin_name("_private")
    for bad in ("", "os.path", "a/b", "../x", "1abc", "a-b", "a b"):
        assert not config.valid_plugin_name(bad), bad


@pytest.mark.parametrize("key", ["timeout", "shutdown_timeout"])
def test_nan_is_rejected(key: str) -> None:
    assert error_of(with_changes(workers={key: float("nan")})).startswith(f"workers.{key}:")


def test_nan_retry_delay_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "nan.yaml"
    path.write_text(yaml.safe_dump(MINIMAL) + "workers:\n  retry:\n    delay: .nan\n")
    with pytest.raises(ConfigError, match=r"^workers\.retry\.delay: "):
        load(str(path))


def test_boolean_worker_count_is_rejected() -> None:
    assert error_of(with_changes(workers={"count": True})).startswith("workers.count:")


BUS = {"input": {"queue": "q"}, "output": {"topic": "t"}}


@pytest.mark.parametrize("key", ["senders", "receivers"])
@pytest.mark.parametrize("value", [0, 65, -1, True, "many", 2.5])
def test_bus_lanes_are_auto_or_a_small_whole_number(key: str, value: Any) -> None:
    error = error_of(with_changes(bus={**BUS, key: value}))
    assert error.startswith(f"bus.{key}: ") and "\n" not in error


def test_an_s3_threshold_needs_a_bucket() -> None:
    output = {"topic": "t", "s3_threshold": 65536}
    assert error_of(with_changes(bus={**BUS, "output": output})).startswith("bus.output.s3_threshold: needs")
    cfg = from_mapping(with_changes(bus={**BUS, "output": {**output, "s3_bucket": "b"}}))
    assert cfg.s3_threshold == 65536
    assert error_of(with_changes(bus={**BUS, "output": {**output, "s3_bucket": "b", "s3_threshold": 0}})
                    ).startswith("bus.output.s3_threshold: min value is 1")


def test_failures_topic_is_optional_and_never_empty() -> None:
    assert from_mapping(MINIMAL).failures_topic is None
    arn = "arn:aws:sns:us-east-1:1:failures"
    output = {"topic": "arn:aws:sns:us-east-1:1:results", "failures_topic": arn}
    assert from_mapping(with_changes(bus={"input": {"queue": "q"}, "output": output})).failures_topic == arn
    output["failures_topic"] = ""
    assert error_of(with_changes(bus={"input": {"queue": "q"}, "output": output})).startswith(
        "bus.output.failures_topic: empty values not allowed")


def test_input_s3_buckets_are_bucket_names() -> None:
    assert from_mapping(with_changes(bus={**BUS, "input": {"queue": "q", "s3_buckets": ["a-b.c"]}})
                        ).input_s3_buckets == ("a-b.c",)
    assert from_mapping(with_changes(bus=BUS)).input_s3_buckets == ()
    error = error_of(with_changes(bus={**BUS, "input": {"queue": "q", "s3_buckets": ["Not_A_Bucket"]}}))
    assert error.startswith("bus.input.s3_buckets"), error
