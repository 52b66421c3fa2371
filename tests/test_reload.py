"""The reloader with fakes around it: nothing changes until the pool's probe answers, and then only if it loaded."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from sesshu.config.model import Config, from_mapping
from sesshu.config.schema import ConfigError
from sesshu.daemon.reload import Reloader
from sesshu.pool.events import Reconfigured, ReconfigureFailed

SETTINGS: Any = object()  # the pool settings of the new config: the reloader only passes them on


def config(*plugins: str, count: int = 2) -> Config:
    return from_mapping({"plugin": list(plugins), "workers": {"count": count},
                         "bus": {"input": {"queue": "q"}, "output": {"topic": "t"}}})


class Recorder:
    """Stands in for the pool, the acceptor, the notifier and the reporter: every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def propose(self, settings: Any, new: Config) -> None:
        self.calls.append(("propose", settings, new))

    def reconfigure(self, plugin_names: tuple[str, ...]) -> None:
        self.calls.append(("reconfigure", plugin_names))

    def reloading(self) -> None:
        self.calls.append(("reloading",))

    def reloaded(self) -> None:
        self.calls.append(("reloaded",))

    def applied(self, new: Config) -> None:
        self.calls.append(("applied", new))


def reloader(running: Config, calls: Recorder, load: Any = None, *, hooks: bool = True) -> Reloader:
    return Reloader(running, calls, calls, calls, calls,  # type: ignore[arg-type]
                    load, calls.applied if hooks else None)


def test_a_reload_proposes_the_new_config_and_changes_nothing_until_the_pool_answers() -> None:
    running, new, calls = config("chaos"), config("chaos", "robots", count=3), Recorder()
    seen: list[Config] = []

    def load(current: Config) -> tuple[Config, Any]:
        seen.append(current)
        return new, SETTINGS

    r = reloader(running, calls, load)
    r.reload()
    assert seen == [running]  # the running config, whose restart-only keys the hook keeps
    assert calls.calls == [("reloading",), ("propose", SETTINGS, new)]
    assert r.config is running


def test_a_config_that_loaded_in_the_probe_is_applied(caplog: pytest.LogCaptureFixture) -> None:
    running, new, calls = config("chaos"), config("chaos", "robots", count=3), Recorder()
    r = reloader(running, calls, lambda current: (new, SETTINGS))
    with caplog.at_level(logging.INFO, logger="sesshu.daemon.reload"):
        r.answered(Reconfigured(new))
    assert r.config is new
    assert calls.calls == [("reconfigure", ("chaos", "robots")), ("applied", new), ("reloaded",)]
    assert caplog.messages == ["reloaded: 3 workers, plugins chaos, robots"]


def test_a_plugin_that_failed_in_the_probe_keeps_the_running_config(caplog: pytest.LogCaptureFixture) -> None:
    running, calls = config("chaos"), Recorder()
    r = reloader(running, calls, lambda current: (config("broken"), SETTINGS))
    with caplog.at_level(logging.INFO, logger="sesshu.daemon.reload"):
        r.answered(ReconfigureFailed("broken", "ImportError: no\nmodule \x1b[31m"))
    assert r.config is running
    assert calls.calls == [("reloaded",)]  # systemd hears READY=1 again all the same
    [line] = caplog.messages
    assert line.startswith("reload refused, keeping the running config: plugin broken failed to load: ImportError")
    assert "\n" not in line and "\x1b" not in line


def test_a_config_file_that_does_not_validate_is_refused_before_any_probe(caplog: pytest.LogCaptureFixture) -> None:
    running, calls = config("chaos"), Recorder()

    def load(current: Config) -> tuple[Config, Any]:
        raise ConfigError("workers.count: must be at least 1")

    r = reloader(running, calls, load)
    with caplog.at_level(logging.INFO, logger="sesshu.daemon.reload"):
        r.reload()
    assert calls.calls == [] and r.config is running
    assert caplog.messages == ["reload refused, keeping the running config: workers.count: must be at least 1"]


def test_without_a_hook_to_read_the_file_a_reload_does_nothing() -> None:
    calls = Recorder()
    r = reloader(config("chaos"), calls, None, hooks=False)
    r.reload()
    assert calls.calls == []
    new = config("robots")
    r.answered(Reconfigured(new))  # a pool's answer is still applied: the pool's settings already changed
    assert r.config is new and calls.calls == [("reconfigure", ("robots",)), ("reloaded",)]
