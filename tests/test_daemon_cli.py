"""Bad configs against the real ``sesshud``: exit 1, one line naming the problem, before any AWS call.

Each case runs twice: ``sesshud --check -c FILE`` and a real start
``sesshud -c FILE``, whose bus endpoint is a free loopback port that no
one listens on. A start must find every problem ``--check`` finds, before
it would reach the bus.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.aws import aws_env, free_port
from tests.harness.daemon import SESSHUD, TEST_PLUGINS

# A guard against a hang, not a speed test: the exit status and the one line tell
# a refused config from a start that went on; generous for a loaded machine.
DEADLINE = 30.0


def config(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    endpoint = f"http://127.0.0.1:{free_port()}"
    doc: dict[str, Any] = {
        "plugin": ["chaos"],
        "plugin_path": [str(TEST_PLUGINS)],
        "bus": {"region": "us-east-1", "endpoint_url": endpoint, "input": {"queue": "q"},
                "output": {"topic": "arn:aws:sns:us-east-1:123456789012:t"}},
    }
    doc.update(changes)
    return doc


def write(path: Path, data: bytes | str) -> str:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def yaml_file(tmp_path: Path, **changes: Any) -> str:
    return write(tmp_path / "sesshu.yaml", yaml.safe_dump(config(tmp_path, **changes)))


def fifo(tmp_path: Path) -> str:
    os.mkfifo(tmp_path / "sesshu.yaml")
    return str(tmp_path / "sesshu.yaml")


def log_file_that_is(kind: str) -> Callable[[Path], str]:
    def make(tmp_path: Path) -> str:
        logs = tmp_path / "logs"
        logs.mkdir()
        if kind == "fifo":
            os.mkfifo(logs / "sesshu.log")
        else:
            (logs / "sesshu.log").mkdir()
        return yaml_file(tmp_path, logging={"path": str(logs)})
    return make


def good_yaml(tmp_path: Path) -> str:
    return yaml.safe_dump(config(tmp_path))


CASES: dict[str, tuple[Callable[[Path], str], str]] = {
    "binary": (lambda t: write(t / "c.yaml", bytes(range(256)) * 64), "not UTF-8 text"),
    "utf-16": (lambda t: write(t / "c.yaml", good_yaml(t).encode("utf-16")), "not UTF-8 text"),
    "latin-1": (lambda t: write(t / "c.yaml", good_yaml(t).encode() + "# café\n".encode("latin-1")),
                "not UTF-8 text (byte 0xe9"),
    "nested 100,000 deep, flow": (lambda t: write(t / "c.yaml", good_yaml(t) + "x: " + "[" * 100_000 + "\n"),
                                  "nest"),
    "nested 100,000 deep, block": (lambda t: write(t / "c.yaml", good_yaml(t) + "x:\n" + "- " * 100_000 + "y\n"),
                                   "nested deeper than 64 levels"),
    "5,000-digit integer": (lambda t: write(t / "c.yaml", good_yaml(t) + "n: " + "7" * 5000 + "\n"),
                            "not valid YAML at line"),
    "date 2001-13-45": (lambda t: write(t / "c.yaml", good_yaml(t) + "d: 2001-13-45\n"),
                        "not a valid timestamp (month must be in 1..12)"),
    "/dev/zero": (lambda t: "/dev/zero", "/dev/zero: not a regular file (it is a character device)"),
    "a FIFO": (fifo, "not a regular file (it is a FIFO)"),
    "a directory": (lambda t: str(t), "not a regular file (it is a directory)"),
    "10 MB of YAML": (lambda t: write(t / "c.yaml", good_yaml(t) + "pad:\n" + "- 0123456789abcdef\n" * 600_000),
                      "over the limit of 1048576"),
    "logging.path missing": (lambda t: yaml_file(t, logging={"path": str(t / "nope")}),
                             "logging.path: {t}/nope: no such directory"),
    "logging.path is a file": (lambda t: yaml_file(t, logging={"path": write(t / "f", "x")}),
                               "logging.path: {t}/f: is not a directory"),
    "log file is a FIFO": (log_file_that_is("fifo"), "logging.path: cannot open {t}/logs/sesshu.log for writing"),
    "log file is a directory": (log_file_that_is("dir"),
                                "logging.path: cannot open {t}/logs/sesshu.log for writing"),
    "logging.name holds a NUL": (lambda t: yaml_file(t, logging={"name": "ses\x00shu"}), "logging.name: "),
    "logging.name holds a newline": (lambda t: yaml_file(t, logging={"name": "ses\nshu"}), "logging.name: "),
    "plugin_path entry missing": (lambda t: yaml_file(t, plugin_path=[str(TEST_PLUGINS), str(t / "nope")]),
                                  "plugin_path[1]: {t}/nope: no such directory"),
    "plugin_path entry is a file": (lambda t: yaml_file(t, plugin_path=[str(TEST_PLUGINS), write(t / "f", "x")]),
                                    "plugin_path[1]: {t}/f: not a directory"),
    "relative plugin_path entry missing": (lambda t: yaml_file(t, plugin_path=["plugins"]),
                                           "plugin_path[0]: {t}/plugins: no such directory"),
}


def sesshud(*args: str, timeout: float = DEADLINE) -> subprocess.CompletedProcess[str]:
    # cwd /: where a service runs, so that nothing resolves against the test's directory.
    return subprocess.run([str(SESSHUD), *args], capture_output=True, text=True, errors="replace",
                          env=aws_env(), cwd="/", timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("mode", [["--check"], []], ids=["check", "start"])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_is_one_line_and_exit_1(tmp_path: Path, case: str, mode: list[str]) -> None:
    make, expected = CASES[case]
    path = make(tmp_path)
    done = sesshud(*mode, "-c", path)  # raises TimeoutExpired past the deadline
    lines = done.stderr.splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("sesshud: config error: ")
    assert expected.format(t=tmp_path) in lines[0]
    assert lines[0].isprintable()
    assert done.stdout == ""


def test_a_relative_plugin_path_is_found_from_any_directory(tmp_path: Path) -> None:
    (tmp_path / "plugins").symlink_to(TEST_PLUGINS)
    path = yaml_file(tmp_path, plugin_path=["plugins"])
    done = sesshud("--check", "-c", path, timeout=120)  # loads the plugins in a child: no speed test
    assert done.returncode == 0, done.stderr
    assert "OK (1 plugin(s) load)" in done.stdout


def test_check_leaves_no_log_file_behind(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    done = sesshud("--check", "-c", yaml_file(tmp_path, logging={"path": str(logs)}), timeout=120)
    assert done.returncode == 0, done.stderr
    assert list(logs.iterdir()) == []
