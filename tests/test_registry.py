"""Plugin discovery: plugin_path, shipped plugins, entry points; never an import."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sesshu.config.schema import ConfigError
from sesshu.plugin.registry import ENTRY_POINT_GROUP, SHIPPED_PACKAGE, PluginSource, discover, shipped_dir

SHIPPED = ("http_robots", "http_javascript", "http_stylesheet")


def plugin_file(directory: Path, name: str, body: str = "def validate(t):\n    pass\n\n"
                "def fetch(t):\n    return t\n") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    path.write_text(body)
    return path


def booby_trap(marker: Path) -> str:
    """Plugin source that leaves ``marker`` behind and raises, if anyone imports it."""
    return f"open({str(marker)!r}, 'w').close()\nraise RuntimeError('imported during discovery')\n"


def install_distribution(site: Path, entry_points: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                         name: str = "demo_dist") -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")
    monkeypatch.syspath_prepend(str(site))


def test_shipped_plugins_are_found() -> None:
    found = discover([])
    for name in SHIPPED:
        assert found[name] == PluginSource(name, "module", f"{SHIPPED_PACKAGE}.{name}", "shipped")
    assert "__init__" not in found
    directory = shipped_dir()
    assert directory is not None and (directory / "http_robots.py").is_file()


def test_plugin_path_plugins_are_found(tmp_path: Path) -> None:
    path = plugin_file(tmp_path / "extra", "my_plugin")
    found = discover([str(tmp_path / "extra")])
    assert found["my_plugin"] == PluginSource("my_plugin", "file", str(path.resolve()), "plugin_path")


def test_plugin_path_takes_precedence_over_shipped(tmp_path: Path) -> None:
    path = plugin_file(tmp_path, "http_robots")
    found = discover([str(tmp_path)])
    assert found["http_robots"] == PluginSource("http_robots", "file", str(path.resolve()), "plugin_path")
    assert found["http_javascript"].origin == "shipped"


def test_first_plugin_path_directory_wins(tmp_path: Path) -> None:
    first = plugin_file(tmp_path / "a", "twin")
    plugin_file(tmp_path / "b", "twin")
    found = discover([str(tmp_path / "a"), str(tmp_path / "b")])
    assert found["twin"].ref == str(first.resolve())


def test_private_and_invalid_names_are_ignored(tmp_path: Path) -> None:
    for name in ("_private", "__init__", "bad-name", "1st", "with space", "ok_one"):
        plugin_file(tmp_path, name)
    (tmp_path / "notes.txt").write_text("not a plugin")
    (tmp_path / "sub").mkdir()
    plugin_file(tmp_path / "sub", "nested")
    found = discover([str(tmp_path)])
    from_path = {n for n, s in found.items() if s.origin == "plugin_path"}
    assert from_path == {"ok_one"}


@pytest.mark.parametrize("entry, problem", [
    ("does-not-exist", "no such directory"),
    ("a-file", "not a directory"),
    ("a-file/below", "not a directory"),
])
def test_a_plugin_path_entry_that_is_no_directory_is_an_error(tmp_path: Path, entry: str, problem: str) -> None:
    (tmp_path / "a-file").write_text("x")
    plugin_file(tmp_path / "ok", "fine")
    with pytest.raises(ConfigError) as info:
        discover([str(tmp_path / "ok"), str(tmp_path / entry)])
    assert str(info.value) == f"plugin_path[1]: {tmp_path / entry}: {problem}"


def test_only_python_files_count(tmp_path: Path) -> None:
    plugin_file(tmp_path, "real")
    (tmp_path / "dir.py").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    found = {n for n, s in discover([str(tmp_path)]).items() if s.origin == "plugin_path"}
    assert found == {"real"}


def test_entry_points_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_distribution(tmp_path / "site", {"ep_plain": "ep_mod", "ep_attr": "ep_pkg.sub:thing",
                                             "bad-name": "ep_mod", "_hidden": "ep_mod"}, monkeypatch)
    found = discover([])
    assert found["ep_plain"] == PluginSource("ep_plain", "entry_point", "ep_mod", "entry point")
    assert found["ep_attr"] == PluginSource("ep_attr", "entry_point", "ep_pkg.sub:thing", "entry point")
    assert "bad-name" not in found and "_hidden" not in found


def test_shipped_and_plugin_path_take_precedence_over_entry_points(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    install_distribution(tmp_path / "site", {"http_robots": "ep_mod", "local": "ep_mod"}, monkeypatch)
    plugin_file(tmp_path / "extra", "local")
    found = discover([str(tmp_path / "extra")])
    assert found["http_robots"].origin == "shipped"
    assert found["local"].origin == "plugin_path"


def test_discovery_never_imports_a_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "imported"
    plugin_file(tmp_path / "extra", "trap_file", booby_trap(marker))
    site = tmp_path / "site"
    plugin_file(site, "trap_ep_mod", booby_trap(marker))
    install_distribution(site, {"trap_ep": "trap_ep_mod", "trap_attr": "trap_ep_mod:fetch"}, monkeypatch)
    before = set(sys.modules)
    found = discover([str(tmp_path / "extra")])
    assert {"trap_file", "trap_ep", "trap_attr"} <= set(found)
    assert not marker.exists()
    new = set(sys.modules) - before
    assert not {m for m in new if "trap" in m}
    assert not {m for m in new if m.startswith(f"{SHIPPED_PACKAGE}.")}
