"""Run sesshud the way containment needs: code an unprivileged account can read.

The default interpreter here lives under /root (mode 0700), which a worker
that switched to ``nobody`` cannot read. ``make sysvenv`` builds a venv on
Debian's /usr/bin/python3 in a world-readable place; this module stages the
code under test (sesshu, the shipped plugins and the test plugins) beside it,
so the venv runs exactly this checkout.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tests.harness.daemon import ROOT, TEST_PLUGINS

WORKER = "nobody"  # uid 65534 exists on Debian and in CI


def sysvenv_python() -> Path:
    venv = Path(os.environ.get("SESSHU_SYSVENV", "/var/tmp/sesshu-test-sysvenv"))
    python = venv / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"no venv at {venv}: run `make sysvenv` (make test does)")
    return python


class Staged:
    """A world-readable copy of this checkout's code, a folder for configs and logs, and a shared one.

    The configs and logs sit outside the code, as /etc/sesshu.yaml and
    /var/log/sesshu do, where a worker's file view does not reach. The
    shared folder (world-writable) is where attacks leave proof, such as a
    grandchild's pid: a test grants it to workers with workers.filesystem.write.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sesshu-staged-", dir="/var/tmp"))
        os.chmod(self.root, 0o755)
        shutil.copytree(ROOT / "sesshu", self.root / "sesshu")
        shutil.copytree(ROOT / "plugins", self.root / "sesshu_plugins")
        shutil.copytree(TEST_PLUGINS, self.root / "plugins")
        for path in self.root.rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        self.conf = Path(tempfile.mkdtemp(prefix="sesshu-conf-", dir="/var/tmp"))
        os.chmod(self.conf, 0o755)
        self.scratch = Path(tempfile.mkdtemp(prefix="sesshu-shared-", dir="/var/tmp"))
        os.chmod(self.scratch, 0o1777)
        self.plugins = self.root / "plugins"

    def command(self) -> list[str]:
        # -P: the working directory is not put on sys.path, so only the staged code runs.
        return [str(sysvenv_python()), "-P", "-m", "sesshu.daemon.cli"]

    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": str(self.root)}

    def remove(self) -> None:
        for path in (self.root, self.conf, self.scratch):
            shutil.rmtree(path, ignore_errors=True)
