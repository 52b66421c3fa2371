"""The running configuration: the validated document made into a ``Config``, every default filled in."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from sesshu.config import file as configfile
from sesshu.config.schema import ConfigError, validate
from sesshu.plugin import addresses


@dataclass(frozen=True)
class PluginConfig:
    name: str
    timeout: float
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    """The validated configuration, with every default filled in."""

    path: str
    log_name: str
    log_path: str | None
    log_level: str
    log_format: str
    plugins: tuple[PluginConfig, ...]
    plugin_path: tuple[str, ...]
    worker_count: int
    timeout: float
    prefetch: int
    shutdown_timeout: float
    retry_delay: float
    retry_max_delay: float
    poll_interval: int
    region: str | None
    endpoint_url: str | None
    queue: str
    topic: str
    metrics_address: str | None = None
    metrics_port: int | None = None
    memory_limit: int | None = None  # MiB of address space per child
    max_jobs: int | None = None
    s3_bucket: str | None = None
    s3_prefix: str = "sesshu/"
    worker_user: str | None = None
    worker_group: str | None = None
    worker_environment: tuple[str, ...] = ()
    limit_processes: int = 512
    limit_open_files: int = 1024
    limit_file_size: int = 1024  # MiB
    read_paths: tuple[str, ...] = ()  # workers.filesystem.read
    write_paths: tuple[str, ...] = ()  # workers.filesystem.write
    require_containment: bool = False
    s3_threshold: int | None = None  # bytes: results above it go to S3 even when SNS would take them
    senders: int = 4
    receivers: int = 2
    failures_topic: str | None = None  # SNS topic ARN for failure records (sesshu.jobs.failures)
    network_allow: tuple[str, ...] = ()  # CIDR ranges plugins' HTTP may reach despite the address guard
    input_s3_buckets: tuple[str, ...] = ()  # where requests stored in S3 may be read from (sesshu.bus.offloaded)

    def plugin(self, name: str) -> PluginConfig | None:
        for p in self.plugins:
            if p.name == name:
                return p
        return None

    @property
    def plugin_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.plugins)


def load(path: str) -> Config:
    """Read, validate and normalise the config file at ``path``.

    A relative ``plugin_path`` entry is taken relative to the file's own
    directory: a service runs in ``/``, an operator in any directory.
    """
    try:
        raw = configfile.read(path)
    except configfile.UnreadableConfig as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return from_mapping(raw, path, base_dir=os.path.dirname(os.path.abspath(path)))


def from_mapping(raw: Any, path: str = "<config>", base_dir: str | None = None) -> Config:
    """Validate a parsed config; ``base_dir`` anchors relative ``plugin_path`` entries."""
    doc = validate(raw, path)
    workers, bus, logs = doc["workers"], doc["bus"], doc["logging"]
    if not logs["name"].isprintable():
        raise ConfigError("logging.name: must be printable text (no control characters)")
    plugins = tuple(_plugin_entry(e, workers["timeout"]) for e in doc["plugin"])
    seen: set[str] = set()
    for i, p in enumerate(plugins):
        if p.name in seen:
            raise ConfigError(f"plugin[{i}]: {p.name!r} is listed twice")
        seen.add(p.name)
    if bus["output"]["s3_threshold"] is not None and bus["output"]["s3_bucket"] is None:
        raise ConfigError("bus.output.s3_threshold: needs bus.output.s3_bucket to store results in")
    return Config(
        path=path,
        log_name=logs["name"],
        log_path=logs["path"],
        log_level=logs["level"],
        log_format=logs["format"],
        plugins=plugins,
        plugin_path=tuple(os.path.join(base_dir, p) if base_dir else p for p in doc["plugin_path"]),
        worker_count=workers["count"],
        timeout=float(workers["timeout"]),
        prefetch=workers["prefetch"],
        shutdown_timeout=float(workers["shutdown_timeout"]),
        retry_delay=float(workers["retry"]["delay"]),
        retry_max_delay=float(workers["retry"]["max_delay"]),
        poll_interval=workers["polling"]["interval"],
        region=bus["region"],
        endpoint_url=bus["endpoint_url"],
        queue=bus["input"]["queue"],
        topic=bus["output"]["topic"],
        metrics_address=(doc["metrics"] or {}).get("address"),
        metrics_port=(doc["metrics"] or {}).get("port"),
        memory_limit=workers["memory_limit"],
        max_jobs=workers["max_jobs"],
        s3_bucket=bus["output"]["s3_bucket"],
        s3_prefix=bus["output"]["s3_prefix"],
        worker_user=workers["user"],
        worker_group=workers["group"],
        worker_environment=tuple(workers["environment"]),
        limit_processes=workers["limits"]["processes"],
        limit_open_files=workers["limits"]["open_files"],
        limit_file_size=workers["limits"]["file_size"],
        read_paths=tuple(workers["filesystem"]["read"]),
        write_paths=tuple(workers["filesystem"]["write"]),
        require_containment=workers["require_containment"],
        s3_threshold=bus["output"]["s3_threshold"],
        senders=_lanes(bus["senders"], "bus.senders", AUTO_SENDERS, workers["count"]),
        receivers=_lanes(bus["receivers"], "bus.receivers", AUTO_RECEIVERS, workers["count"]),
        failures_topic=bus["output"]["failures_topic"],
        network_allow=tuple(str(addresses.network(c)) for c in workers["network"]["allow"]),
        input_s3_buckets=tuple(bus["input"]["s3_buckets"]),
    )


MAX_LANES = 64
# "auto": (workers per lane, fewest lanes, most lanes). A sender call carries ten results and
# takes one round trip, tens of milliseconds from EC2; one sender per 16
# workers keeps up with short jobs, and a receive per 64 workers with a deep
# queue. Quick jobs need more than the worker count says: ten results cost a
# publish and a delete, so at 35 ms a call two senders cap a host near 285
# jobs/s however few its workers, and a lone receiver near the same. Hence
# four senders and two receivers at least (see Intake.lead); an idle lane is
# only a parked thread.
AUTO_SENDERS = (16, 4, 16)
AUTO_RECEIVERS = (64, 2, 4)


def _lanes(value: Any, key: str, auto: tuple[int, int, int], workers: int) -> int:
    if value == "auto":
        per, fewest, most = auto
        return max(fewest, min(most, math.ceil(workers / per)))
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LANES:
        raise ConfigError(f"{key}: must be auto or a whole number from 1 to {MAX_LANES}")
    return value


def _plugin_entry(entry: str | dict[str, Any], default_timeout: float) -> PluginConfig:
    if isinstance(entry, str):
        return PluginConfig(entry, float(default_timeout), {})
    return PluginConfig(
        entry["name"], float(entry.get("timeout", default_timeout)), dict(entry.get("options", {}))
    )
