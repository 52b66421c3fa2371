"""The package tree keeps the design it shows (docs/architecture.md).

Read from the source with ``ast``, so a rule holds whatever a test happens
to import: boto3 stays in the bus and the operator tools, and the worker
side reaches nothing that talks to AWS, however indirectly.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "sesshu"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(name: str) -> set[str]:
    """Every module this one imports, at any depth of its code (lazy imports included)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return found


def reach(start: str) -> set[str]:
    """The sesshu modules ``start`` imports, and theirs, and so on."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [m for m in imports(name) if m in MODULES]
    return seen


def third_party(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names if not n.startswith("sesshu")}


def test_boto3_is_imported_by_the_bus_and_the_operator_tools_only() -> None:
    users = {name for name in MODULES if third_party(imports(name)) & {"boto3", "botocore"}}
    assert users and all(name.startswith(("sesshu.bus.", "sesshu.ops.")) for name in users), sorted(users)


def test_the_worker_side_reaches_nothing_that_talks_to_aws() -> None:
    for name in [n for n in MODULES if n.startswith("sesshu.worker")]:
        reached = reach(name)
        assert not {m for m in reached if m.startswith(("sesshu.bus", "sesshu.ops"))}, (name, sorted(reached))
        assert not third_party(set().union(*(imports(m) for m in reached))) & {"boto3", "botocore"}, name


def test_few_modules_stay_at_the_top_and_every_package_says_what_it_holds() -> None:
    top = [p for p in ROOT.glob("*.py")]
    assert len(top) <= 10, sorted(p.name for p in top)
    for package in [p for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()]:
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc, f"{package.name}/__init__.py has no docstring"


def test_the_architecture_page_names_every_module() -> None:
    page = (ROOT.parent / "docs" / "architecture.md").read_text()
    for path in MODULES.values():
        if path.name != "__init__.py":
            short = str(path.relative_to(ROOT))
            assert f"`{short}`" in page or f"`sesshu/{short}`" in page, f"docs/architecture.md does not name {short}"


def test_every_module_of_sixty_lines_or_more_has_a_test_file_named_after_it() -> None:
    """``test_<module>.py``, or ``test_<package>_<module>.py`` where two packages hold a module of one name."""
    tests = Path(__file__).resolve().parent
    missing = []
    for name, path in MODULES.items():
        if len(path.read_text().splitlines()) < 60:
            continue
        parts = name.split(".")[1:]
        if path.name == "__init__.py":
            candidates = {f"test_{parts[-1]}.py"}
        else:
            candidates = {f"test_{parts[-1]}.py", f"test_{'_'.join(parts[-2:])}.py"}
        if not any((tests / c).exists() for c in candidates):
            missing.append(f"{name}: {' or '.join(sorted(candidates))}")
    assert missing == []
