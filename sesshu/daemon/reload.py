"""The running config, and its reload: read again on SIGHUP, applied once a probe worker loads its plugins.

The :class:`Reloader` owns the config the loop runs with; nothing else
replaces it. ``reload()`` reads the file again through the hook the daemon
declared and proposes the result to the pool, which loads its plugins in a
probe slot; the pool's answer comes back through ``answered()``, which applies
the new config or logs why it was refused. systemd hears RELOADING=1 once a
new config is proposed, and READY=1 when the pool answers, either way. The
loop asks for a reload only while it is not stopping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sesshu.config.model import Config
from sesshu.config.schema import ConfigError
from sesshu.daemon.notify import Notifier
from sesshu.daemon.report import Reporter
from sesshu.jobs.accept import Acceptor
from sesshu.pool.events import Reconfigured, ReconfigureFailed
from sesshu.pool.pool import Pool, PoolSettings
from sesshu.text import loggable

log = logging.getLogger(__name__)

# Re-reads the config file, given the running config (whose restart-only
# keys it keeps): the config to apply, and the pool settings it makes.
LoadConfig = Callable[[Config], tuple[Config, PoolSettings]]


class Reloader:
    def __init__(self, config: Config, pool: Pool, acceptor: Acceptor, notifier: Notifier, reporter: Reporter,
                 load_config: LoadConfig | None, on_applied: Callable[[Config], None] | None) -> None:
        self._config = config
        self._pool = pool
        self._acceptor = acceptor
        self._notifier = notifier
        self._reporter = reporter
        self._load_config = load_config
        self._on_applied = on_applied

    @property
    def config(self) -> Config:
        return self._config

    def reload(self) -> None:
        """Re-read the config file; apply it once its plugins load in a probe slot."""
        if self._load_config is None:
            return
        try:
            new, settings = self._load_config(self._config)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            return
        log.info("SIGHUP: loading the plugins of %s in a probe worker", new.path)
        self._notifier.reloading()
        self._pool.propose(settings, new)

    def answered(self, event: Reconfigured | ReconfigureFailed) -> None:
        """The pool's answer to a proposed config: it loaded (apply it) or a plugin did not (keep ours)."""
        if isinstance(event, Reconfigured):
            self._config = event.config
            self._acceptor.reconfigure(event.config.plugin_names)
            if self._on_applied is not None:
                self._on_applied(event.config)
            log.info("reloaded: %d workers, plugins %s", event.config.worker_count,
                     ", ".join(event.config.plugin_names))
        else:
            log.error("reload refused, keeping the running config: plugin %s failed to load: %s",
                      event.plugin, loggable(event.error, 500))
        self._reporter.reloaded()
