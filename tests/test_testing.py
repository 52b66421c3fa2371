"""``sesshu.testing.run_plugin``: one job in a real worker, every way a job can end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sesshu.config.model import from_mapping
from sesshu.testing import JobRun, PluginBroken, UnknownPlugin, run_plugin
from tests.harness.daemon import TEST_PLUGINS, pid_alive

PATH = [str(TEST_PLUGINS)]


def chaos(target: str, **kwargs: object) -> JobRun:
    return run_plugin("chaos", target, plugin_path=PATH, **kwargs)  # type: ignore[arg-type]


def test_done_gives_the_data_and_the_document_the_daemon_publishes() -> None:
    run = chaos("chaos:echo:hi", options={"colour": "red"})
    assert run.outcome == "done" and run.result["echo"] == "hi" and run.result["options"] == {"colour": "red"}
    assert run.document is not None
    assert json.loads(run.document) == {"target": "chaos:echo:hi", "plugin": "chaos", "result": run.result}


@pytest.mark.parametrize(("target", "outcome", "reason"), [
    ("chaos:none", "empty", ""),
    ("chaos:invalid", "rejected", "invalid target: ValueError: not a chaos target"),
    ("chaos:refuse", "rejected", "rejected by the plugin: refused in validate"),
    ("chaos:never", "rejected", "rejected by the plugin: gone for good"),
    ("chaos:raise", "retried", "fetch raised RuntimeError: chaos asked for an exception"),
    ("chaos:later:90", "retried", "plugin asked to retry in 90 s: the site is busy"),
    ("chaos:segv", "retried", "crashed: "),
    ("chaos:unserialisable", "retried", "result is not JSON-serialisable"),
])
def test_every_way_a_job_ends(target: str, outcome: str, reason: str) -> None:
    run = chaos(target)
    assert run.outcome == outcome and reason in run.reason and run.result is None, run
    assert run.retry_after == (90 if target == "chaos:later:90" else None)


def test_a_hung_plugin_is_killed_at_its_timeout() -> None:
    run = chaos("chaos:spin", timeout=1.0)
    assert run.outcome == "retried" and run.reason.startswith("timeout: "), run


def test_a_config_gives_the_workers_and_the_plugins_options() -> None:
    config = from_mapping({"plugin": [{"name": "chaos", "options": {"from": "config", "keep": 1}}],
                           "plugin_path": PATH, "bus": {"input": {"queue": "q"}, "output": {"topic": "t"}}})
    run = run_plugin("chaos", "chaos:echo:x", config=config, options={"from": "caller"})
    assert run.result["options"] == {"from": "caller", "keep": 1}


def test_nothing_the_plugin_started_outlives_the_run(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    # The plugin writes the pid outside its scratch directory: the config grants that.
    config = from_mapping({"plugin": ["chaos"], "plugin_path": PATH,
                           "workers": {"filesystem": {"write": [str(tmp_path)]}},
                           "bus": {"input": {"queue": "q"}, "output": {"topic": "t"}}})
    run = chaos(f"chaos:grandchild:{pidfile}", timeout=2.0, config=config)
    assert run.outcome == "retried"
    assert not pid_alive(int(pidfile.read_text()))


@pytest.mark.parametrize("name", ["no_such_plugin", "../etc/passwd", ""])
def test_an_unknown_plugin_is_named(name: str) -> None:
    with pytest.raises(UnknownPlugin, match="plugin"):
        run_plugin(name, "x", plugin_path=PATH)


def test_a_plugin_that_does_not_load_says_why(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise ImportError('missing piece')\n")
    with pytest.raises(PluginBroken, match="missing piece"):
        run_plugin("broken", "x", plugin_path=[str(tmp_path)])
