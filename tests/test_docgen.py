"""The man pages and completions are generated from the code, and say what the code does."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCGEN = ROOT / "packaging" / "docgen.py"


def test_the_committed_pages_are_what_the_parsers_and_the_schema_say() -> None:
    result = subprocess.run([sys.executable, str(DOCGEN), "--check"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_every_option_and_config_key_is_on_its_page() -> None:
    from sesshu.config.schema import SCHEMA
    from sesshu.daemon.cli import _parser

    daemon = (ROOT / "packaging" / "man" / "sesshud.8").read_text()
    for action in _parser()._actions:
        for option in action.option_strings:
            assert option.replace("-", "\\-") in daemon, option
    config = (ROOT / "packaging" / "man" / "sesshu.yaml.5").read_text()
    for key in ("workers.count", "workers.limits.processes", "bus.output.failures_topic", "metrics.port"):
        assert f"\\fB{key}\\fR" in config, key
    assert "restart to change it" in config and len(SCHEMA) >= 5


@pytest.mark.skipif(shutil.which("man") is None, reason="no man here")
@pytest.mark.parametrize("page", ["sesshud.8", "sesshu.1", "sesshu.yaml.5"])
def test_man_renders_each_page_without_a_warning(page: str) -> None:
    result = subprocess.run(["man", "--warnings", "-l", str(ROOT / "packaging" / "man" / page)], capture_output=True,
                            text=True, timeout=60, check=False, env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert page.rsplit(".", 1)[0].upper() in result.stdout


@pytest.mark.parametrize(("words", "offered"), [
    (["sesshu", "dlq", "p"], ["peek", "purge"]),
    (["sesshu", "r"], ["results", "run"]),
    (["sesshu", "run", "--t"], ["--timeout"]),
    (["sesshud", "--ch"], ["--check"]),
])
def test_bash_completes_commands_and_options(words: list[str], offered: list[str]) -> None:
    script = ROOT / "packaging" / "completion" / words[0]
    call = (f"source {script}; COMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}; "
            f"_{words[0]}; echo \"${{COMPREPLY[*]}}\"")
    result = subprocess.run(["bash", "-c", call], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.split() == offered
