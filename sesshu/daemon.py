"""Putting the daemon together from a config: plugins, children, bus, supervisor.

Start-up checks run in this order, each failing with a :class:`ConfigError`
that names its key: the config itself, that every enabled plugin is
installed, that every enabled plugin imports (in a child, never here), and
that the queue and the topic are there (``sesshu.startup``, which also sorts
a bus that refuses, exit 1, from one that cannot be reached, exit 75). A
broken deployment exits once, with one line, instead of crash-looping.
"""

from __future__ import annotations

import logging
import signal
import time
from multiprocessing.connection import wait
from multiprocessing.context import ForkServerContext

from setproctitle import setproctitle

from sesshu import logs
from sesshu.bus import QueueInfo
from sesshu.child import PluginSpec
from sesshu.config import Config, ConfigError, load
from sesshu.handle import ChildProcess
from sesshu.metrics import Metrics
from sesshu.pidfile import Pidfile
from sesshu.pool import Pool, forkserver_context
from sesshu.protocol import BootFailed, Ready, decode_child
from sesshu.registry import PluginSource, discover
from sesshu.sqsbus import SqsSnsBus
from sesshu.startup import EX_TEMPFAIL as EX_TEMPFAIL  # re-exported: the exit status of BusUnreachable
from sesshu.startup import BusUnreachable as BusUnreachable
from sesshu.startup import open_bus
from sesshu.supervisor import Supervisor

log = logging.getLogger("sesshu.daemon")

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


def check_plugins_import(ctx: ForkServerContext, config: Config, specs: list[PluginSpec]) -> None:
    """Import every enabled plugin in a throw-away child; raise ConfigError on failure."""
    child = ChildProcess.launch(ctx, specs, MAX_RESULT_BYTES, time.monotonic())
    try:
        assert child.conn is not None
        ready = wait([child.conn, child.sentinel], BOOT_CHECK_TIMEOUT)
        message = None
        if child.conn in ready:
            try:
                message = decode_child(child.conn.recv_bytes(1 << 20))
            except (EOFError, OSError):
                message = None
        if isinstance(message, BootFailed):
            index = config.plugin_names.index(message.plugin) if message.plugin in config.plugin_names else 0
            raise ConfigError(f"plugin[{index}]: {message.plugin!r} failed to load: {message.error}")
        if not isinstance(message, Ready):
            child.process.join(1.0)
            raise ConfigError(f"plugin: loading the plugins killed the check process ({child.reap()})")
    finally:
        child.close()
        child.process.join(5.0)
        if child.process.exitcode is None:
            child.signal_group(signal.SIGKILL)
            child.process.join(5.0)


def prepare(config: Config) -> tuple[ForkServerContext, list[PluginSpec]]:
    specs = plugin_specs(config)
    ctx = forkserver_context(PRELOAD)
    check_plugins_import(ctx, config, specs)
    return ctx, specs


def run(config: Config, ctx: ForkServerContext, specs: list[PluginSpec], pidfile: Pidfile | None = None) -> int:
    handler = logs.setup(config.log_path, config.log_name, config.log_level, config.log_format)
    setproctitle(f"sesshud: master -c {config.path}")
    opened = open_bus(config)
    bus = opened.bus
    pool = Pool(ctx, specs, config.worker_count, max_result_bytes(config), time.monotonic)
    pool.max_jobs, pool.memory_limit_mib = config.max_jobs, config.memory_limit
    supervisor = Supervisor(config, bus, pool)
    supervisor.on_reopen_logs = lambda: logs.reopen(handler)

    def load_again() -> tuple[Config, list[PluginSpec]]:
        new = load(config.path)
        return new, plugin_specs(new)

    def applied(new: Config) -> None:
        nonlocal handler
        handler = logs.setup(new.log_path, new.log_name, new.log_level, new.log_format)
        pool.max_jobs, pool.memory_limit_mib = new.max_jobs, new.memory_limit

    if config.metrics_port is not None:
        metrics = Metrics()
        try:
            metrics.serve(config.metrics_address or "127.0.0.1", config.metrics_port)
        except OSError as exc:
            raise ConfigError(f"metrics.port: cannot listen on {config.metrics_address}:"
                              f"{config.metrics_port}: {exc.strerror}") from None
        supervisor.metrics = metrics
        supervisor.outcomes.observer = metrics.outcome
        pool.on_restart = metrics.restart
        bus.on_call = metrics.bus_call
    supervisor.load_config = load_again
    supervisor.on_config_applied = applied
    supervisor.queue_info = opened.queue_info
    supervisor.settle.heartbeat = heartbeat_permitted(bus, config, supervisor.queue_info)
    if pidfile is not None:
        pidfile.write()
    log.info("started: %d workers, plugins %s, queue %s", config.worker_count,
             ", ".join(config.plugin_names), bus.queue_url)
    try:
        return supervisor.run()
    finally:
        if pidfile is not None:
            pidfile.remove()


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
