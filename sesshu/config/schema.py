"""The configuration file's one declarative schema, and validation against it.

Defaults, validation, the reference docs and what a reload may change all
come from ``SCHEMA`` so that they cannot drift apart. Any problem becomes a
:class:`ConfigError` whose message names the offending key, for a one-line exit.
``sesshu.config.model`` turns the validated document into the running ``Config``.
"""

from __future__ import annotations

import math
import re
from typing import Any

from cerberus import Validator

from sesshu.config import file as configfile
from sesshu.plugin import addresses

# A Python identifier of at most 128 characters (messages.MAX_PLUGIN_CHARS);
# \Z, not $, which would let a trailing newline through.
PLUGIN_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z"
ACCOUNT_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\Z"
# AWS_* never reaches a worker, whatever the allow-list says: the master alone holds credentials.
ENV_NAME = r"^(?!AWS_)[A-Za-z_][A-Za-z0-9_]{0,127}\Z"
ABSOLUTE_PATH = r"^/[^\x00-\x1f\x7f]{0,4095}\Z"
S3_BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z"  # what S3 allows a bucket name
_PLUGIN_NAME_RE = re.compile(PLUGIN_NAME)


MAX_NODES = 100_000  # values in a config, aliases expanded; a real one holds a few dozen


class ConfigError(Exception):
    """A configuration problem, phrased as ``key: what is wrong``."""


def _cidr(field: str, value: str, error: Any) -> None:
    try:
        addresses.network(value)
    except ValueError as exc:
        error(field, f"{value!r} is not an address range such as 10.0.0.0/8 or fd00::/8 ({exc})")


_PLUGIN_MAPPING: dict[str, Any] = {
    "name": {"type": "string", "required": True, "regex": PLUGIN_NAME},
    "timeout": {"type": "number", "min": 0.1, "max": 43200},
    "options": {"type": "dict", "default": {}},
}
_PLUGIN_ENTRY = {"anyof": [{"type": "string", "regex": PLUGIN_NAME}, {"type": "dict", "schema": _PLUGIN_MAPPING}]}

# "meta": {"restart": field} marks a key a reload cannot change; ``field`` is the Config field
# it fills, which a reload keeps at its running value (RESTART_ONLY). Cerberus ignores "meta".
SCHEMA: dict[str, Any] = {
    "logging": {
        "type": "dict",
        "default": {},
        "schema": {
            "name": {"type": "string", "default": "sesshu", "regex": r"^[^/]+$"},
            "path": {"type": "string", "nullable": True, "default": None},
            "level": {
                "type": "string",
                "default": "info",
                "allowed": ["debug", "info", "warning", "error"],
                "coerce": str.lower,
            },
            "format": {"type": "string", "default": "text", "allowed": ["text", "json"]},
        },
    },
    "plugin": {"type": "list", "required": True, "minlength": 1, "schema": _PLUGIN_ENTRY},
    "plugin_path": {"type": "list", "default": [], "schema": {"type": "string", "empty": False}},
    "workers": {
        "type": "dict",
        "default": {},
        "schema": {
            "count": {"type": "integer", "min": 1, "max": 256, "default": 4},
            "timeout": {"type": "number", "min": 0.1, "max": 43200, "default": 30},
            "prefetch": {"type": "integer", "min": 0, "max": 100, "default": 10},
            "shutdown_timeout": {"type": "number", "min": 0, "max": 3600, "default": 30},
            "memory_limit": {"type": "integer", "min": 64, "nullable": True, "default": None},
            "max_jobs": {"type": "integer", "min": 1, "nullable": True, "default": None},
            "user": {"type": "string", "nullable": True, "default": None, "regex": ACCOUNT_NAME},
            "group": {"type": "string", "nullable": True, "default": None, "regex": ACCOUNT_NAME},
            "environment": {"type": "list", "default": [], "schema": {"type": "string", "regex": ENV_NAME}},
            # More than the system's files for plugins to read or write (Landlock; sesshu.worker.confine).
            "filesystem": {
                "type": "dict",
                "default": {},
                "schema": {
                    "read": {"type": "list", "default": [], "schema": {"type": "string", "regex": ABSOLUTE_PATH}},
                    "write": {"type": "list", "default": [], "schema": {"type": "string", "regex": ABSOLUTE_PATH}},
                },
            },
            "require_containment": {"type": "boolean", "default": False},
            "limits": {
                "type": "dict",
                "default": {},
                "schema": {
                    "processes": {"type": "integer", "min": 8, "max": 1_000_000, "default": 512},
                    "open_files": {"type": "integer", "min": 16, "max": 1_000_000, "default": 1024},
                    "file_size": {"type": "integer", "min": 1, "max": 1 << 30, "default": 1024},
                },
            },
            "retry": {
                "type": "dict",
                "default": {},
                "schema": {
                    "delay": {"type": "number", "min": 0, "max": 43200, "default": 5},
                    "max_delay": {"type": "number", "min": 0, "max": 43200, "default": 900},
                },
            },
            "network": {
                "type": "dict",
                "default": {},
                # Ranges the outbound address guard lets plugins' HTTP reach (sesshu.plugin.addresses).
                "schema": {"allow": {"type": "list", "default": [],
                                     "schema": {"type": "string", "check_with": _cidr}}},
            },
            "polling": {
                "type": "dict",
                "default": {},
                # The long poll's wait is fixed when the bus client and the intake are made.
                "schema": {"interval": {"type": "integer", "min": 1, "max": 20, "default": 20,
                                        "meta": {"restart": "poll_interval"}}},
            },
        },
    },
    "metrics": {
        "type": "dict",
        "nullable": True,
        "default": None,
        "schema": {
            # The endpoint is bound once, at start-up.
            "address": {"type": "string", "default": "127.0.0.1", "meta": {"restart": "metrics_address"}},
            "port": {"type": "integer", "min": 1, "max": 65535, "required": True,
                     "meta": {"restart": "metrics_port"}},
        },
    },
    "bus": {
        "type": "dict",
        "required": True,
        "schema": {
            # The bus, its lanes and the queue's attributes are opened once, at start-up.
            "region": {"type": "string", "nullable": True, "default": None, "meta": {"restart": "region"}},
            "endpoint_url": {"type": "string", "nullable": True, "default": None,
                             "meta": {"restart": "endpoint_url"}},
            # Bus calls in flight at once: sender calls (publish, delete,
            # visibility, upload) and receives. "auto" follows workers.count.
            "senders": {"type": ["integer", "string"], "default": "auto", "meta": {"restart": "senders"}},
            "receivers": {"type": ["integer", "string"], "default": "auto", "meta": {"restart": "receivers"}},
            "input": {
                "type": "dict",
                "required": True,
                "schema": {"queue": {"type": "string", "required": True, "empty": False,
                                     "meta": {"restart": "queue"}},
                           # Buckets that producers' extended clients store requests in:
                           # a pointer to any other bucket is rejected unread.
                           "s3_buckets": {"type": "list", "default": [], "meta": {"restart": "input_s3_buckets"},
                                          "schema": {"type": "string", "regex": S3_BUCKET}}},
            },
            "output": {
                "type": "dict",
                "required": True,
                "schema": {
                    "topic": {"type": "string", "required": True, "empty": False, "meta": {"restart": "topic"}},
                    "s3_bucket": {"type": "string", "nullable": True, "default": None, "empty": False,
                                  "meta": {"restart": "s3_bucket"}},
                    "s3_prefix": {"type": "string", "default": "sesshu/", "meta": {"restart": "s3_prefix"}},
                    "s3_threshold": {"type": "integer", "min": 1, "max": 262144, "nullable": True,
                                     "default": None, "meta": {"restart": "s3_threshold"}},
                    "failures_topic": {"type": "string", "nullable": True, "default": None, "empty": False,
                                       "meta": {"restart": "failures_topic"}},
                },
            },
        },
    },
}


def restart_fields(schema: dict[str, Any]) -> tuple[str, ...]:
    """The Config fields of every key in ``schema`` (nested sections too) marked ``"meta": {"restart": field}``."""
    fields: list[str] = []
    for rules in schema.values():
        if "restart" in rules.get("meta", {}):
            fields.append(rules["meta"]["restart"])
        if rules.get("type") == "dict" and "schema" in rules:  # a list's "schema" rules its items: no keys
            fields.extend(restart_fields(rules["schema"]))
    return tuple(fields)


RESTART_ONLY = restart_fields(SCHEMA)  # what a reload keeps at its running value: bus, metrics, the long poll


def validate(raw: Any, path: str = "<config>") -> dict[str, Any]:
    """The document checked against ``SCHEMA``, defaults filled in; a ConfigError names the first bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a YAML mapping")
    _check_shape(raw, path)
    v = Validator(SCHEMA)
    if not v.validate(raw):
        key, message = _first_error(v.errors)
        raise ConfigError(f"{key}: {message}")
    doc: dict[str, Any] = v.document
    _check_numbers(doc, SCHEMA)
    return doc


_ALL_TEXT = object()


def _check_shape(raw: Any, path: str) -> None:
    """Bound depth and size before cerberus (which recurses) or a worker (which pickles) sees it.

    YAML aliases can share one list among many places, or hold a list inside
    itself; this walk counts every place, so neither can go unnoticed.
    """
    stack: list[tuple[Any, int]] = [(raw, 0)]  # (value, containers around it)
    seen = 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise ConfigError(f"{path}: more than {MAX_NODES} values (once aliases are expanded)")
        if isinstance(value, (dict, list, tuple, set, frozenset)):
            # As configfile counts YAML: every mapping or list is a level.
            if depth >= configfile.MAX_DEPTH:
                raise ConfigError(
                    f"{path}: nested deeper than {configfile.MAX_DEPTH} levels (or a recursive alias)")
            if isinstance(value, dict):
                odd = next((k for k in value if not isinstance(k, str)), _ALL_TEXT)
                if odd is not _ALL_TEXT:
                    # cerberus sorts keys, and a null next to a string fails it.
                    kind = "null" if odd is None else type(odd).__name__
                    raise ConfigError(f"{path}: every key must be text; one is {kind}")
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))


def _check_numbers(doc: Any, schema: dict[str, Any], prefix: str = "") -> None:
    """What cerberus lets through: NaN and infinities pass min/max, and a bool is an integer."""
    for key, rules in schema.items():
        value = doc.get(key) if isinstance(doc, dict) else None
        here = f"{prefix}.{key}" if prefix else key
        if rules.get("type") in ("integer", "number"):
            if isinstance(value, bool):
                raise ConfigError(f"{here}: must be a number, not {str(value).lower()}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{here}: must be a finite number")
        elif rules.get("type") == "dict" and isinstance(value, dict) and "schema" in rules:
            _check_numbers(value, rules["schema"], here)
    if schema is SCHEMA:
        for i, entry in enumerate(doc.get("plugin", [])):
            if isinstance(entry, dict):
                _check_numbers(entry, _PLUGIN_MAPPING, f"plugin[{i}]")


def _first_error(errors: Any, prefix: str = "") -> tuple[str, str]:
    """Flatten cerberus' nested error tree into its first ``(dotted.key, message)``."""
    for key in sorted(errors, key=lambda k: (isinstance(k, int), k if isinstance(k, int) else str(k))):
        here = f"{prefix}[{key}]" if isinstance(key, int) else (f"{prefix}.{key}" if prefix else str(key))
        for item in errors[key]:
            if isinstance(item, dict):
                return _first_error(item, here)
            if isinstance(item, str):
                return here, _humane(item)
    return prefix or "config", "invalid"


def _humane(message: str) -> str:
    if message.startswith("no definitions validate"):
        return "must be a plugin name or a mapping {name, timeout, options}"
    return message


def valid_plugin_name(name: str) -> bool:
    return bool(_PLUGIN_NAME_RE.match(name))
