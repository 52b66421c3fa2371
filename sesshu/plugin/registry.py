"""Where plugins are found, without importing any of them.

The parent process only *locates* plugins here; importing them happens in the
children (``sesshu.worker.runner``), so a plugin's import-time side effects can never
reach the supervisor. Search order, first match wins:

1. each directory of ``plugin_path``, for ``NAME.py`` (each entry must be a
   directory: a missing one is a :class:`~sesshu.config.schema.ConfigError`);
2. the shipped plugins (the ``sesshu_plugins`` package, ``plugins/`` in git);
3. the ``sesshu.plugins`` entry-point group.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from sesshu.config.schema import ConfigError, valid_plugin_name

ENTRY_POINT_GROUP = "sesshu.plugins"
SHIPPED_PACKAGE = "sesshu_plugins"


@dataclass(frozen=True)
class PluginSource:
    """How a child can import one plugin.

    ``kind`` is ``"file"`` (``ref`` is a path), ``"module"`` (a dotted module
    name) or ``"entry_point"`` (``module`` or ``module:attribute``).
    """

    name: str
    kind: str
    ref: str
    origin: str  # shipped, plugin_path or entry point, for operators


def shipped_dir() -> Path | None:
    spec = importlib.util.find_spec(SHIPPED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def discover(plugin_path: tuple[str, ...] | list[str]) -> dict[str, PluginSource]:
    """Every plugin that can be loaded, by name."""
    found: dict[str, PluginSource] = {}
    for i, directory in enumerate(plugin_path):
        for file in _python_files(i, directory):
            _add(found, PluginSource(file.stem, "file", str(file.resolve()), "plugin_path"))
    shipped = shipped_dir()
    if shipped is not None:
        for file in sorted(shipped.glob("*.py")):
            ref = f"{SHIPPED_PACKAGE}.{file.stem}"
            _add(found, PluginSource(file.stem, "module", ref, "shipped"))
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        _add(found, PluginSource(ep.name, "entry_point", ep.value, "entry point"))
    return found


def _python_files(index: int, directory: str) -> list[Path]:
    """The ``*.py`` files of one ``plugin_path`` entry; a ConfigError if it is no readable directory.

    A typo in ``plugin_path`` must not pass silently and leave the plugin to
    be found somewhere else, or nowhere.
    """
    key = f"plugin_path[{index}]"
    try:
        with os.scandir(directory) as entries:
            return sorted(Path(e.path) for e in entries if e.name.endswith(".py") and e.is_file())
    except FileNotFoundError:
        raise ConfigError(f"{key}: {directory}: no such directory") from None
    except NotADirectoryError:
        raise ConfigError(f"{key}: {directory}: not a directory") from None
    except OSError as exc:
        raise ConfigError(f"{key}: {directory}: cannot list it: {exc.strerror or exc}") from None
    except ValueError:  # a NUL byte in the path
        raise ConfigError(f"{key}: the path holds a NUL byte") from None


def _add(found: dict[str, PluginSource], source: PluginSource) -> None:
    if source.name.startswith("_") or not valid_plugin_name(source.name):
        return
    found.setdefault(source.name, source)
