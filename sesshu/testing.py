"""One plugin job in a real worker, with no queue: ``sesshu run``, and plugin authors' tests.

:func:`run_plugin` starts one worker slot exactly as the daemon starts
them (fork server, keeper, runner; the same environment, limits, account
and containment, from a config when given), runs ``validate`` then
``fetch`` on one target, enforces the timeout from outside, and ends the
slot and everything the plugin started before it returns::

    from sesshu.testing import run_plugin

    def test_my_plugin_reads_the_title(site):
        run = run_plugin("my_plugin", site.url, plugin_path=["plugins"])
        assert run.outcome == "done" and run.result == {"title": "Hello"}

What the plugin prints is logged on ``sesshu.worker``, never mixed into the
result.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import wait
from typing import Any

from sesshu.config.model import Config, PluginConfig, from_mapping
from sesshu.config.schema import ConfigError, valid_plugin_name
from sesshu.plugin import addresses
from sesshu.pool.events import ChildBootFailed, JobFinished, JobLost, PoolEvent
from sesshu.pool.pool import Pool
from sesshu.pool.protocol import Job

__all__ = ["JobRun", "PluginBroken", "UnknownPlugin", "run_plugin"]

LABEL = "sesshu-run"  # how the worker's log lines name the job: there is no message
BOOT_TIMEOUT = 60.0  # seconds a worker may take to import the plugin


class UnknownPlugin(Exception):
    """The name is not a plugin found on the plugin path, shipped, or installed."""


class PluginBroken(Exception):
    """The plugin was found but a worker cannot load it (its import or ``configure`` failed)."""


@dataclass(frozen=True)
class JobRun:
    """How one job ended, as the daemon would record it."""

    outcome: str  # "done", "empty", "rejected" or "retried"
    result: Any = None  # the plugin's data, for done
    reason: str = ""  # why, for rejected and retried
    retry_after: int | None = None  # seconds, when the plugin raised RetryLater
    # for done: the document the daemon publishes, less its message_id (there is no message)
    document: str | None = None


def run_plugin(plugin: str, target: str, *, options: dict[str, Any] | None = None,
               plugin_path: list[str] | None = None, timeout: float = 30.0,
               config: Config | None = None, allow: Sequence[str] = ()) -> JobRun:
    """Run ``validate`` then ``fetch`` of ``plugin`` on ``target`` in a fresh worker; never raises for the plugin.

    ``config`` supplies the workers' settings (account, environment, limits,
    ``workers.network.allow``); its plugin entry of that name, if any, its
    options. ``allow`` adds address ranges the worker's HTTP may reach, such
    as ``["127.0.0.0/8"]`` for a test site on loopback (ValueError if one is
    not a range). Raises :class:`UnknownPlugin` or :class:`PluginBroken` when
    no job can start.
    """
    return run_job(job_config(plugin, options, plugin_path, timeout, config, allow=allow), target)


def job_config(plugin: str, options: dict[str, Any] | None, plugin_path: list[str] | None, timeout: float,
               config: Config | None, *, allow: Sequence[str] = ()) -> Config:
    """The config of a one-worker pool for ``plugin``: ``config``'s workers, or the defaults; ``allow`` added."""
    extra = tuple(str(addresses.network(cidr)) for cidr in allow)
    if not valid_plugin_name(plugin):
        raise UnknownPlugin(f"plugin {plugin!r}: not a plugin name (a Python identifier)")
    if config is None:
        try:
            config = from_mapping({"plugin": ["sesshu_run"], "bus": {"input": {"queue": "-"},
                                                                      "output": {"topic": "-"}}})
        except ConfigError as exc:  # pragma: no cover - the defaults are valid
            raise AssertionError(exc) from None
    entry = config.plugin(plugin)
    merged = {**(entry.options if entry else {}), **(options or {})}
    return replace(config, plugins=(PluginConfig(plugin, timeout, merged),), worker_count=1, max_jobs=None,
                   plugin_path=(*(os.path.abspath(d) for d in plugin_path or ()), *config.plugin_path),
                   network_allow=(*config.network_allow, *extra))


def run_job(config: Config, target: str, *, reap_orphans: bool = False) -> JobRun:
    """One job of ``config``'s only plugin; ``reap_orphans``: we are a subreaper, and own every child we have."""
    from sesshu.daemon.assemble import PRELOAD, plugin_specs, pool_settings
    from sesshu.pool.spawn import forkserver_context, start_fork_server

    (plugin,) = config.plugins
    try:
        settings = pool_settings(config, plugin_specs(config))
    except ConfigError as exc:
        if "is not installed" in str(exc) or str(exc).startswith("plugin[0]: "):
            raise UnknownPlugin(f"plugin {plugin.name!r}: {str(exc).partition(': ')[2]}") from None
        raise
    ctx = forkserver_context(PRELOAD)
    start_fork_server(settings.setup.environment)
    pool = Pool(ctx, settings, time.monotonic, orphans=reap_orphans)
    try:
        pool.maintain()
        if not _until(pool, BOOT_TIMEOUT, lambda events: bool(pool.idle())):
            raise PluginBroken(f"plugin {plugin.name!r}: the worker did not start within {BOOT_TIMEOUT:g} s")
        job = Job(1, plugin.name, target)
        if not pool.assign(pool.idle()[0], job, LABEL, plugin.timeout):
            raise PluginBroken(f"plugin {plugin.name!r}: the worker died before it took the job")
        ended: list[JobFinished | JobLost] = []
        # The pool enforces the timeout; the slack only covers killing and reaping a hung worker.
        _until(pool, plugin.timeout + 30.0, lambda events: bool(ended), ended)
        if not ended:  # pragma: no cover - the pool's deadline ends every job first
            return JobRun("retried", reason=f"no result within {plugin.timeout:g} s")
        return _outcome(ended[0], plugin.name, target)
    finally:
        pool.kill_all()
        _until(pool, 10.0, lambda events: not pool.children)
        if reap_orphans:
            pool.sweep_orphans(final=True)
        pool.close()


def _until(pool: Pool, seconds: float, done: Any, ended: list[JobFinished | JobLost] | None = None) -> bool:
    """Drive the pool until ``done(events)`` or ``seconds`` pass; a boot failure ends the wait."""
    deadline = time.monotonic() + seconds
    while True:
        events: list[PoolEvent] = [*pool.collect({pool}), *pool.enforce_deadlines()]
        for event in events:
            if isinstance(event, ChildBootFailed):
                raise PluginBroken(f"plugin {event.plugin!r} failed to load: {event.error}")
            if isinstance(event, JobFinished | JobLost) and ended is not None:
                ended.append(event)
        if done(events):
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        wakeup = pool.next_wakeup()
        wait([pool.fileno()], max(0.0, min(left, 1.0, (wakeup - time.monotonic()) if wakeup else 1.0)))


def _outcome(event: JobFinished | JobLost, plugin: str, target: str) -> JobRun:
    if isinstance(event, JobLost):
        return JobRun("retried", reason=f"{event.reason}: {event.detail}")
    result = event.result
    if result.status == "done":
        data = json.loads(result.payload)
        document = json.dumps({"target": target, "plugin": plugin, "result": data}, separators=(",", ":"))
        return JobRun("done", data, document=document)
    if result.status == "empty":
        return JobRun("empty")
    if result.status == "rejected":
        return JobRun("rejected", reason=result.error)
    return JobRun("retried", reason=result.error, retry_after=result.delay)
