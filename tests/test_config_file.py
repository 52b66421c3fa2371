"""Reading a config file that cannot be trusted: sesshu.config.file, and config.load/from_mapping on hostile input.

Whatever the file or the mapping holds, the loader returns a Config or
raises ConfigError: never another exception, never a hang.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sesshu.config import file as configfile
from sesshu.config.model import Config, from_mapping, load
from sesshu.config.schema import ConfigError

# Not a speed target: what these files guard against (a billion laughs, nesting
# that is quadratic to parse) runs for minutes or exhausts memory. Finished
# within this many seconds, even on a loaded two-core machine, it was refused
# before the blow-up.
BLOW_UP = 30

MINIMAL: dict[str, Any] = {
    "plugin": ["chaos"],
    "bus": {"input": {"queue": "requests"}, "output": {"topic": "arn:aws:sns:us-east-1:1:results"}},
}
GOOD = yaml.safe_dump(MINIMAL)


def error_of_file(tmp_path: Path, data: bytes | str, name: str = "c.yaml") -> str:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    with pytest.raises(ConfigError) as info:
        load(str(path))
    text = str(info.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    return text[len(f"{path}: "):]


def nested_flow(depth: int) -> str:
    return "a: " + "[" * depth + "]" * depth + "\n"


@pytest.mark.parametrize("data, expected", [
    (bytes(range(256)) * 4, "not UTF-8 text (it holds NUL bytes: a binary, or UTF-16?); save it as UTF-8"),
    (GOOD.encode("utf-16"), "not UTF-8 text (it holds NUL bytes: a binary, or UTF-16?); save it as UTF-8"),
    (GOOD.encode("utf-16-le"), "not UTF-8 text (it holds NUL bytes: a binary, or UTF-16?); save it as UTF-8"),
    ("name: café\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 at offset 9); save it as UTF-8"),
    (b"\x89PNG\r\n\x1a\n", "not UTF-8 text (byte 0x89 at offset 0); save it as UTF-8"),
    ("a: " + "9" * 5000 + "\n", "not valid YAML at line 1: not a valid int (Exceeds the limit (4300 digits) "
                                "for integer string conversion: value has 5000 digits)"),
    ("a:\n  b: 2001-13-45\n", "not valid YAML at line 2: not a valid timestamp (month must be in 1..12)"),
    ("a: 2001-02-29 10:00:00\n", "not valid YAML at line 1: not a valid timestamp (day is out of range for month)"),
    ("a: !!bool maybe\n", "not valid YAML at line 1: not a valid bool"),
    ("a: !!timestamp nope\n", "not valid YAML at line 1: not a valid timestamp"),
    ("a: !!int x\n", "not valid YAML at line 1: not a valid int (invalid literal for int() with base 10: 'x')"),
    ("a: !!python/object/apply:os.system [true]\n",
     "not valid YAML at line 1: could not determine a constructor for the tag "
     "'tag:yaml.org,2002:python/object/apply:os.system'"),
    ("? [a]\n: b\n", "not valid YAML at line 1: found unhashable key"),
    ("a: *nowhere\n", "not valid YAML at line 1: found undefined alias"),
    ("a: 1\n---\nb: 2\n", "not valid YAML at line 2: but found another document"),
    ("a: \x07\n", "not valid YAML: unacceptable character #x0007: control characters are not allowed"),
    ("- " * 100_000 + "x\n", "not valid YAML at line 1: nested deeper than 64 levels"),
    ("".join(" " * i + "a:\n" for i in range(500)), "not valid YAML at line 65: nested deeper than 64 levels"),
    ("{a: " * 100_000, "not valid YAML at line 1: nested deeper than 64 levels"),
    ("a: &x [*x]\n", "nested deeper than 64 levels (or a recursive alias)"),
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)), "more than 100000 values (once aliases are expanded)"),  # a billion laughs
    ("- chaos\n", "the config must be a YAML mapping"),
])
def test_each_bad_file_gives_one_line(tmp_path: Path, data: bytes | str, expected: str) -> None:
    started = time.monotonic()
    assert error_of_file(tmp_path, data) == expected
    assert time.monotonic() - started < BLOW_UP


def test_yaml_nested_100000_deep_in_flow_style_is_refused_fast(tmp_path: Path) -> None:
    started = time.monotonic()
    text = error_of_file(tmp_path, nested_flow(100_000))
    assert text.startswith("not valid YAML at line 1: ")
    assert "nest" in text  # libyaml's own limit, or ours
    assert time.monotonic() - started < BLOW_UP


def test_nesting_up_to_the_limit_is_fine(tmp_path: Path) -> None:
    # The config, its plugin list, one entry and its options are four levels: 60 more fit.
    path = tmp_path / "c.yaml"
    path.write_text(GOOD.replace("- chaos", "- {name: chaos, options: {x: " + "[" * 59 + "1" + "]" * 59 + "}}"))
    assert load(str(path)).plugins[0].options["x"] == deep(59, "list", 1)
    assert from_mapping({**MINIMAL, "plugin": [{"name": "c", "options": {"x": deep(60, "list", 1)}}]})
    path.write_text(GOOD.replace("- chaos", "- {name: chaos, options: {x: " + "[" * 61 + "]" * 61 + "}}"))
    with pytest.raises(ConfigError, match="nested deeper than 64 levels"):
        load(str(path))


@pytest.mark.parametrize("special, expected", [
    ("/dev/zero", "not a regular file (it is a character device)"),
    ("/dev/null", "not a regular file (it is a character device)"),
])
def test_devices_are_refused_without_reading(special: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(special)
    assert str(info.value) == f"{special}: {expected}"


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "c.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as info:
        load(str(fifo))
    assert str(info.value) == f"{fifo}: not a regular file (it is a FIFO)"


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(str(tmp_path))
    assert str(info.value) == f"{tmp_path}: not a regular file (it is a directory)"


def test_size_cap(tmp_path: Path) -> None:
    big = GOOD + "# " + "x" * configfile.MAX_BYTES + "\n"
    text = error_of_file(tmp_path, big)
    assert text == f"the file is {len(big)} bytes, over the limit of {configfile.MAX_BYTES}"
    # Just under the cap is read (and is quick with or without libyaml).
    fits = GOOD + "# " + "x" * (configfile.MAX_BYTES - len(GOOD) - 3) + "\n"
    path = tmp_path / "fits.yaml"
    path.write_text(fits)
    assert load(str(path)).queue == "requests"


def test_a_utf8_byte_order_mark_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert load(str(path)).queue == "requests"


def test_a_nul_in_the_path() -> None:
    with pytest.raises(ConfigError, match="NUL"):
        load("/etc/x\x00y")


def test_aliases_that_stay_small_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("plugin:\n  - {name: a, options: &o {depth: 3}}\n  - {name: b, options: *o}\n"
                    "bus: {input: {queue: q}, output: {topic: t}}\n")
    cfg = load(str(path))
    assert [p.options for p in cfg.plugins] == [{"depth": 3}, {"depth": 3}]


# -- relative plugin_path ---------------------------------------------------------------------


def test_a_relative_plugin_path_is_relative_to_the_config_file(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    path = conf / "c.yaml"
    path.write_text(GOOD + "plugin_path: [plugins, ../shared, /opt/abs]\n")
    monkeypatch.chdir("/")
    assert load(str(path)).plugin_path == (str(conf / "plugins"), str(conf / "../shared"), "/opt/abs")
    monkeypatch.chdir(conf)
    assert load("c.yaml").plugin_path == (str(conf / "plugins"), str(conf / "../shared"), "/opt/abs")


def test_an_empty_plugin_path_entry_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^plugin_path\[0\]: empty values not allowed"):
        from_mapping({**MINIMAL, "plugin_path": [""]})


@pytest.mark.parametrize("name", ["a\x00b", "a\nb", "\x1b[2J", "a\u202eb", "a/b"])
def test_log_names_are_one_printable_file_name(name: str) -> None:
    with pytest.raises(ConfigError, match=r"^logging\.name: "):
        from_mapping({**MINIMAL, "logging": {"name": name}})


# -- fuzz ---------------------------------------------------------------------------------------

KEYS = st.sampled_from(["plugin", "bus", "input", "output", "queue", "topic", "workers", "count", "logging",
                        "name", "path", "level", "plugin_path", "metrics", "port", "retry", "options", "timeout"])
# What YAML's safe loader can make: also bytes (!!binary), dates, timestamps and sets (!!set).
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**4400, max_value=10**4500)
           | st.floats() | st.text(max_size=20) | st.sampled_from(["chaos", "info", "/tmp", "text"])
           | st.binary(max_size=5) | st.dates() | st.datetimes())
HASHABLE = st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.dates()
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.sets(HASHABLE, max_size=3)
                      | st.dictionaries(KEYS | st.text(max_size=5) | HASHABLE, inner, max_size=5), max_leaves=30)


def outcome(fn: Any, *args: Any) -> Config | str:
    try:
        return fn(*args)  # type: ignore[no-any-return]
    except ConfigError as exc:
        assert str(exc)
        return str(exc)


def with_value(where: list[str], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(MINIMAL)
    node = doc
    for key in where[:-1]:
        node = node.setdefault(key, {}) if isinstance(node.get(key), dict) or key not in node else node[key]
        if not isinstance(node, dict):
            return doc
    node[where[-1]] = value
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(VALUES)
def test_fuzz_from_mapping_on_any_data(raw: Any) -> None:
    outcome(from_mapping, raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(KEYS, min_size=1, max_size=3), VALUES)
def test_fuzz_from_mapping_with_one_bad_value_in_a_good_config(where: list[str], value: Any) -> None:
    outcome(from_mapping, with_value(where, value))


def deep(depth: int, kind: str, leaf: Any = "x") -> Any:
    value: Any = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"options": value}
    return value


@pytest.mark.parametrize("depth", [65, 5_000, 200_000])
@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize("where", [["colour"], ["plugin"], ["workers", "count"], ["logging"], ["plugin_path"]])
def test_deep_data_anywhere_is_a_config_error(depth: int, kind: str, where: list[str]) -> None:
    text = outcome(from_mapping, with_value(where, deep(depth, kind)))
    assert isinstance(text, str) and "nested deeper than 64 levels" in text


def test_deep_plugin_options_are_a_config_error() -> None:
    doc = {**MINIMAL, "plugin": [{"name": "chaos", "options": deep(100_000, "dict")}]}
    assert "nested deeper than" in str(outcome(from_mapping, doc))


def test_recursive_data_is_a_config_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert "recursive" in str(outcome(from_mapping, {**MINIMAL, "plugin_path": loop}))


YAML_BITS = st.sampled_from(["plugin:", "bus:", "- ", "[", "]", "{", "}", ": ", "\n", "  ", "&a ", "*a ", "!!int ",
                             "!!timestamp ", "!!binary ", "!!set ", "? ", "<<: ", "'", '"', "#", "---\n", "...\n",
                             "2001-13-45", "9" * 5000, "0x1f", "1e999", ".nan", "chaos", "~", "\t", "|", ">"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(YAML_BITS, max_size=40).map("".join) | st.text(max_size=200) | st.binary(max_size=200))
def test_fuzz_load_on_any_file(tmp_path: Path, data: str | bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    assert isinstance(outcome(load, str(path)), (Config, str))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.integers(1, 150_000), st.sampled_from(["[", "{a: ", "- ", "[{b: ", "? "]))
def test_fuzz_load_on_deep_yaml(tmp_path: Path, depth: int, opener: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(GOOD + "x: " + opener * depth + "\n")
    started = time.monotonic()
    outcome(load, str(path))
    assert time.monotonic() - started < BLOW_UP
