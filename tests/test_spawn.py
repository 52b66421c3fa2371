"""sesshu.pool.spawn: the fork server's preloads, and the probe slot that says whether plugins load."""

from __future__ import annotations

import importlib.util
from multiprocessing import forkserver
from pathlib import Path

import pytest

from sesshu.daemon.assemble import plugin_specs, pool_settings
from sesshu.pool.pool import PoolSettings
from sesshu.pool.spawn import ProbeFailed, forkserver_context, probe
from sesshu.worker.runner import PluginSpec
from tests.test_runner import BROKEN
from tests.test_supervisor import make_config

PROBE_TIMEOUT = 30.0  # generous: only a hung probe ever waits this long

HARDENING = ["sesshu.worker.zygote", "sesshu.worker.keeper"]


@pytest.fixture
def restore_preloads(monkeypatch: pytest.MonkeyPatch) -> None:
    # multiprocessing keeps the list in one module-wide object: a fork server
    # started by a later test must not get this test's list.
    server = forkserver._forkserver
    monkeypatch.setattr(server, "_preload_modules", list(server._preload_modules))  # type: ignore[attr-defined]


def current_preloads() -> list[str]:
    """The preload list as the fork server will see it when it starts."""
    return list(forkserver._forkserver._preload_modules)  # type: ignore[attr-defined]


@pytest.mark.usefixtures("restore_preloads")
def test_preloads_harden_first_and_freeze_last() -> None:
    ctx = forkserver_context(["json", "sesshu.httpget"])
    assert ctx.get_start_method() == "forkserver"
    assert current_preloads() == [*HARDENING, "json", "sesshu.httpget", "sesshu.worker.frozen"]
    forkserver_context()
    assert current_preloads() == [*HARDENING, "sesshu.worker.frozen"]


@pytest.mark.usefixtures("restore_preloads")
def test_the_preloads_of_our_own_exist() -> None:
    # The fork server skips a preload it cannot import without a word: a module renamed
    # in a reorganisation would silently leave every slot unhardened. Found, not imported:
    # importing zygote would make this test process non-dumpable.
    forkserver_context()
    ours = [name for name in current_preloads() if name.startswith("sesshu.")]
    assert ours == [*HARDENING, "sesshu.worker.frozen"]
    assert [name for name in ours if importlib.util.find_spec(name) is None] == []


def settings_for(specs: list[PluginSpec] | None = None) -> PoolSettings:
    config = make_config()
    return pool_settings(config, plugin_specs(config) if specs is None else specs)


def test_probe_passes_when_every_plugin_loads() -> None:
    settings = settings_for()
    assert [spec[0] for spec in settings.specs] == ["chaos"]
    probe(forkserver_context(), settings, make_config(), PROBE_TIMEOUT)


def test_probe_names_the_plugin_that_cannot_import() -> None:
    chaos = settings_for().specs[0]
    settings = settings_for([chaos, ("broken", "file", str(BROKEN / "broken.py"), {})])
    with pytest.raises(ProbeFailed) as failed:
        probe(forkserver_context(), settings, make_config(), PROBE_TIMEOUT)
    assert failed.value.plugin == "broken"
    assert "this plugin is broken on purpose" in failed.value.error
    assert str(failed.value).startswith("broken: ")


def test_probe_reports_a_worker_that_loading_killed(tmp_path: Path) -> None:
    # No frame at all, neither Ready nor BootFailed: the runner is gone mid-import.
    fatal = tmp_path / "fatal.py"
    fatal.write_text("import os\nos._exit(3)\n")
    settings = settings_for([("fatal", "file", str(fatal), {})])
    with pytest.raises(ProbeFailed) as failed:
        probe(forkserver_context(), settings, make_config(), PROBE_TIMEOUT)
    assert failed.value.plugin == "-"
    assert failed.value.error.startswith("loading the plugins killed the probe worker (")
