"""What a runner is confined to, and what the daemon says about it: unit cases, then real sesshud runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sesshu.worker import confine, landlock
from sesshu.worker.confine import ContainmentMissing, Protections
from tests.harness.aws import aws_env
from tests.harness.daemon import SESSHUD
from tests.test_daemon_cli import config


def test_the_view_reads_the_system_and_writes_only_the_slot_and_what_is_granted() -> None:
    view = {g.path: g.access for g in confine.grants("/scratch/slot-1", ("/models",), ("/cache",))}
    assert view["/usr"] == landlock.READ and view["/etc/ssl"] == landlock.READ and view["/models"] == landlock.READ
    assert view["/scratch/slot-1"] & landlock.WRITE_FILE and view["/cache"] & landlock.MAKE_DIR
    assert view["/dev/null"] & landlock.WRITE_FILE and not view["/dev/null"] & landlock.MAKE_REG
    assert "/etc" not in view and "/tmp" not in view and "/proc" not in view
    assert sys.prefix in view  # the interpreter and its library
    assert all(not access & landlock.WRITE_FILE for path, access in view.items()
               if path not in ("/scratch/slot-1", "/cache", "/dev/null"))


@pytest.mark.parametrize(("found", "line"), [
    (Protections(7, None), "containment: Landlock ABI 7 (files, signals), seccomp, rlimits, "
                           "a scratch directory per job, account sesshu-worker"),
    (Protections(4, None), "containment: Landlock ABI 4 (files), seccomp, rlimits, a scratch directory per job, "
                           "account sesshu-worker; missing: Landlock signal scoping (the kernel has ABI 4; it "
                           "takes 6): a plugin can signal other workers of its account"),
    (Protections(0, "libseccomp is not installed (Debian: libseccomp2)"),
     "containment: rlimits, a scratch directory per job, account sesshu-worker; missing: Landlock (the kernel "
     "has none): plugins can read every file their account can, and write outside their scratch directory; "
     "seccomp (libseccomp is not installed (Debian: libseccomp2)): every system call is open to plugins"),
])
def test_one_line_says_what_holds_and_what_is_missing(found: Protections, line: str) -> None:
    assert found.describe("sesshu-worker") == line


def test_require_refuses_what_is_missing_and_passes_a_full_set() -> None:
    confine.require(Protections(6, None))
    for partial in (Protections(5, None), Protections(7, "no library")):
        with pytest.raises(ContainmentMissing, match=r"^workers\.require_containment: this host lacks "):
            confine.require(partial)


def test_a_config_below_a_granted_path_is_found() -> None:
    assert confine.readable_by_plugins("/usr/local/etc/sesshu.yaml", ()) == "/usr"
    assert confine.readable_by_plugins("/srv/models/sesshu.yaml", ("/srv/models",)) == "/srv/models"
    assert confine.readable_by_plugins("/etc/sesshu.yaml", ("/srv/models",)) is None
    assert confine.readable_by_plugins("/usrx/sesshu.yaml", ()) is None  # a prefix is not a parent


# -- sesshud --check, with Landlock and as on a kernel without it ----------------------------


def check(tmp_path: Path, *, without_landlock: bool = False, **workers: object) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "sesshu.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path, workers=workers)))
    wrapper = [sys.executable, "-m", "tests.harness.nolandlock"] if without_landlock else []
    return subprocess.run([*wrapper, str(SESSHUD), "--check", "-c", str(path)], capture_output=True, text=True,
                          env=aws_env(), timeout=120, cwd=Path(__file__).resolve().parents[1])


def test_check_names_the_protections_in_force(tmp_path: Path) -> None:
    done = check(tmp_path)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if "containment:" in line)
    expected = f"Landlock ABI {landlock.abi()} (files, signals), seccomp, rlimits, a scratch directory per job"
    assert expected in line and "missing" not in line


def test_without_landlock_the_daemon_starts_and_says_what_is_missing(tmp_path: Path) -> None:
    done = check(tmp_path, without_landlock=True)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if "containment:" in line)
    assert "seccomp" in line and "missing: Landlock (the kernel has none)" in line


def test_require_containment_makes_that_a_start_up_error(tmp_path: Path) -> None:
    done = check(tmp_path, without_landlock=True, require_containment=True)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "sesshud: config error: workers.require_containment: this host lacks Landlock (the kernel has none): "
        "plugins can read every file their account can, and write outside their scratch directory"]
    assert check(tmp_path, require_containment=True).returncode == 0


def test_check_warns_when_plugins_may_read_the_config(tmp_path: Path) -> None:
    done = check(tmp_path, filesystem={"read": [str(tmp_path)]})
    assert done.returncode == 0, done.stderr
    assert (f"sesshud: warning: the config file {tmp_path}/sesshu.yaml lies below {tmp_path}, which plugins may "
            "read") in done.stdout
    assert "warning" not in check(tmp_path).stdout
