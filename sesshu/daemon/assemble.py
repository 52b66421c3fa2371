"""Putting the daemon together from a config: plugins, children, bus, supervisor.

Start-up checks run in this order, each failing with a :class:`ConfigError`
that names its key: the config itself, that every enabled plugin is
installed, that every enabled plugin imports (in a child, never here), and
that the queue can be found. A broken deployment exits once, with one line,
instead of crash-looping.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import resource
import sys
import time
from dataclasses import replace
from importlib.machinery import PathFinder
from multiprocessing.context import ForkServerContext

import sesshu
from sesshu.bus.api import QueueInfo
from sesshu.bus.sqs import SqsSnsBus
from sesshu.bus.startup import EX_TEMPFAIL as EX_TEMPFAIL  # re-exported: the exit status of BusUnreachable
from sesshu.bus.startup import BusUnreachable as BusUnreachable
from sesshu.bus.startup import open_bus
from sesshu.config.model import Config, load
from sesshu.config.schema import RESTART_ONLY, ConfigError
from sesshu.daemon import logs
from sesshu.daemon.metrics import Metrics
from sesshu.daemon.notify import Notifier
from sesshu.daemon.pidfile import Pidfile
from sesshu.daemon.supervisor import Hooks, Supervisor
from sesshu.plugin.registry import PluginSource, discover
from sesshu.pool.pool import Pool, PoolSettings
from sesshu.pool.spawn import ProbeFailed, forkserver_context, probe, start_fork_server
from sesshu.text import loggable
from sesshu.worker import confine, sandbox, scratch
from sesshu.worker.confine import ContainmentMissing
from sesshu.worker.runner import PluginSpec
from sesshu.worker.sandbox import Identity, SandboxError, WorkerSetup

log = logging.getLogger(__name__)

BOOT_CHECK_TIMEOUT = 60.0
MAX_RESULT_BYTES = 256 * 1024  # what fits the SNS topic
S3_MAX_RESULT_BYTES = 32 * 1024 * 1024  # with bus.output.s3_bucket, results this large go to S3
# Modules the shipped plugins use, imported once in the fork server.
PRELOAD = ["sesshu.httpget", "bs4"]


def plugin_specs(config: Config) -> list[PluginSpec]:
    """Locate every enabled plugin, or say which one is not installed."""
    found = discover(config.plugin_path)
    specs: list[PluginSpec] = []
    for i, plugin in enumerate(config.plugins):
        source: PluginSource | None = found.get(plugin.name)
        if source is None:
            known = ", ".join(sorted(found)) or "none"
            raise ConfigError(f"plugin[{i}]: {plugin.name!r} is not installed (installed: {known})")
        specs.append((plugin.name, source.kind, source.ref, plugin.options))
    return specs


def worker_setup(config: Config, specs: list[PluginSpec]) -> WorkerSetup:
    """What every worker applies to itself: account, environment, limits, files it must read, allowed ranges."""
    identity: Identity | None = None
    if config.worker_user is not None:
        try:
            identity = sandbox.resolve_identity(config.worker_user, config.worker_group)
        except SandboxError as exc:
            raise ConfigError(str(exc)) from None
        if os.geteuid() != 0 and not _can_switch():
            raise ConfigError(f"workers.user: switching to {config.worker_user!r} needs root, or "
                              "CAP_SETUID + CAP_SETGID + CAP_KILL (see docs/security.md)")
    elif config.worker_group is not None:
        raise ConfigError("workers.group: needs workers.user")
    # The kernel counts processes per account: with the daemon's own account,
    # a process limit would count the daemon and everything else it runs.
    processes = config.limit_processes if identity is not None else None
    limits = sandbox.Limits(processes, config.limit_open_files, config.limit_file_size, config.memory_limit)
    env = sandbox.worker_environment(config.worker_environment, identity)
    must_read = _must_read(specs) if identity is not None else ()
    if config.require_containment:
        try:
            confine.require(confine.protections())
        except ContainmentMissing as exc:
            raise ConfigError(str(exc)) from None
    return WorkerSetup(identity, env, limits, must_read, scratch_root=scratch.root(identity),
                       read=_plugin_dirs(config, specs) + config.read_paths, write=config.write_paths,
                       require_containment=config.require_containment, network_allow=config.network_allow)


def _plugin_dirs(config: Config, specs: list[PluginSpec]) -> tuple[str, ...]:
    """Where the plugins live, for their file view: plugin_path, and each file plugin's directory."""
    dirs = dict.fromkeys(config.plugin_path)
    for _, kind, ref, _ in specs:
        if kind == "file":
            dirs[os.path.dirname(ref)] = None
        else:
            dirs.update(dict.fromkeys(_package_dirs(ref.partition(":")[0].strip().split(".")[0])))
    return tuple(dirs)


def _package_dirs(top: str) -> list[str]:
    """Where a top-level module or package lives: an editable install's may lie off sys.path."""
    try:
        spec = importlib.util.find_spec(top)  # a top-level name: nothing is imported to find it
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return list(spec.submodule_search_locations)
    return [os.path.dirname(spec.origin)] if spec.origin and os.path.isabs(spec.origin) else []


def containment(config: Config) -> str:
    """The one line that says what holds a plugin on this host."""
    return confine.protections().describe(config.worker_user)


def exposed(config: Config) -> list[str]:
    """The daemon's own files that its plugins can read all the same, each with the grant that exposes it."""
    read = config.plugin_path + config.read_paths + config.write_paths  # what a worker may write, it may read
    out = []
    for what, path in (("config file", config.path), ("log file", config.log_path)):
        grant = confine.readable_by_plugins(path, read) if path else None
        if grant is not None:
            out.append(f"the {what} {path} lies below {grant}, which plugins may read")
    return out


def _can_switch() -> bool:
    """CAP_SETUID and CAP_SETGID in our effective set (bits 7 and 6)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    caps = int(line.split()[1], 16)
                    return bool(caps & (1 << 7)) and bool(caps & (1 << 6))
    except (OSError, ValueError):
        pass
    return False


def _must_read(specs: list[PluginSpec]) -> tuple[tuple[str, str], ...]:
    """Files a worker reads after it dropped its rights: found here without importing any plugin."""
    paths = [(os.path.realpath(sys.executable), "the Python interpreter"),
             (os.path.realpath(os.__file__), "Python's standard library"),
             (os.path.realpath(sesshu.__file__), "Sesshu")]
    for name, kind, ref, _ in specs:
        origin = ref if kind == "file" else _module_origin(ref.partition(":")[0].strip())
        if origin is not None:
            paths.append((os.path.realpath(origin), f"plugin {name}"))
    return tuple(paths)


def _module_origin(dotted: str) -> str | None:
    """Where a module's file is, found without importing it or its packages."""
    spec = None
    path: list[str] | None = None
    parts = dotted.split(".")
    for i in range(len(parts)):
        spec = PathFinder.find_spec(".".join(parts[: i + 1]), path)
        if spec is None:
            return None
        path = list(spec.submodule_search_locations or [])
    return spec.origin if spec is not None else None


def pool_settings(config: Config, specs: list[PluginSpec]) -> PoolSettings:
    return PoolSettings(specs, config.worker_count, worker_setup(config, specs), max_result_bytes(config),
                        config.max_jobs)


def prepare(config: Config) -> tuple[ForkServerContext, PoolSettings]:
    """Everything a start does short of the bus; ``--check`` stops here."""
    settings = pool_settings(config, plugin_specs(config))
    ctx = forkserver_context(PRELOAD)
    start_fork_server(settings.setup.environment)
    try:
        probe(ctx, settings, config, BOOT_CHECK_TIMEOUT)
    except ProbeFailed as exc:
        error = loggable(exc.error, 500)
        if exc.plugin in config.plugin_names:
            error = f"plugin[{config.plugin_names.index(exc.plugin)}]: {exc.plugin!r} failed to load: {error}"
        elif not error.startswith("workers."):
            error = f"plugin: {error}"
        raise ConfigError(error) from None
    return ctx, settings


def restart_only(new: Config, running: Config) -> tuple[Config, list[str]]:
    """The reloadable part of ``new``, and which restart-only fields (schema.RESTART_ONLY) it would change.

    Those, the bus and metrics keys and the long poll's wait, keep their running values.
    """
    changed = [k for k in RESTART_ONLY if getattr(new, k) != getattr(running, k)]
    return replace(new, **{k: getattr(running, k) for k in RESTART_ONLY}), changed


def run(config: Config, ctx: ForkServerContext, settings: PoolSettings, pidfile: Pidfile | None = None) -> int:
    handler = logs.setup(config.log_path, config.log_name, config.log_level, config.log_format)
    harden_master()
    if config.worker_user is None:
        log.warning("workers.user is not set: plugins run with the daemon's own rights "
                    "(see docs/security.md)")
    log.info("%s", containment(config))
    for problem in exposed(config):
        log.warning("%s (see docs/security.md)", problem)
    metrics: Metrics | None = None
    if config.metrics_port is not None:
        metrics = Metrics()
        try:
            metrics.serve(config.metrics_address or "127.0.0.1", config.metrics_port)
        except OSError as exc:
            raise ConfigError(f"metrics.port: cannot listen on {config.metrics_address}:"
                              f"{config.metrics_port}: {exc.strerror}") from None
    opened = open_bus(config, on_call=metrics.bus_call if metrics else None,
                      on_failures_published=metrics.failures_published if metrics else None)
    bus = opened.bus
    pool = Pool(ctx, settings, time.monotonic, on_restart=metrics.restart if metrics else None, orphans=True)

    def load_again(running: Config) -> tuple[Config, PoolSettings]:
        new, ignored = restart_only(load(config.path), running)
        logs.check(new.log_path, new.log_name)  # a reload must not die opening its new log
        if ignored:
            log.warning("reload: changes to %s take effect only after a restart", ", ".join(sorted(ignored)))
        return new, pool_settings(new, plugin_specs(new))

    def applied(new: Config) -> None:
        nonlocal handler
        handler = logs.setup(new.log_path, new.log_name, new.log_level, new.log_format)

    info = opened.queue_info
    supervisor = Supervisor(
        config, bus, pool, queue_info=info, heartbeat=heartbeat_permitted(bus, config, info),
        hooks=Hooks(load_config=load_again, on_config_applied=applied,
                    reopen_logs=lambda: logs.reopen(handler), metrics=metrics, notifier=Notifier()))
    if pidfile is not None:
        pidfile.write()
    log.info("started: %d workers, plugins %s, queue %s", config.worker_count,
             ", ".join(config.plugin_names), bus.queue_url)
    try:
        return supervisor.run()
    finally:
        if pidfile is not None:
            pidfile.remove()


def harden_master() -> None:
    """No worker may ptrace us or read our memory; orphans come to us; room for every slot's fds."""
    sandbox.set_dumpable(False)
    sandbox.set_subreaper()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def heartbeat_permitted(bus: SqsSnsBus, config: Config, info: QueueInfo) -> bool:
    """Probe sqs:ChangeMessageVisibility; without it, no timeout may outlast the visibility timeout."""
    if bus.visibility_permitted():
        return True
    longest = max(p.timeout for p in config.plugins)
    if info.visibility_timeout is not None and longest >= info.visibility_timeout:
        raise ConfigError(
            f"workers.timeout: {longest:g} s is not below the queue's visibility timeout "
            f"({info.visibility_timeout} s), and sqs:ChangeMessageVisibility is denied, so no "
            "heartbeat can extend it")
    log.warning("sqs:ChangeMessageVisibility is denied: no visibility heartbeat, and rejected or "
                "retried messages wait out their visibility timeout")
    return False


def max_result_bytes(config: Config) -> int:
    return S3_MAX_RESULT_BYTES if config.s3_bucket else MAX_RESULT_BYTES
