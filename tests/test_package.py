"""The Debian package, installed as an operator would, run, removed and purged.

``make deb`` builds it; then, as root, in a sandbox that is this very host
under a throw-away overlay (tests/harness/sandbox.py, so that nothing is left
behind even if the test fails): ``dpkg -i``, the config pointed at the local
SQS/SNS server, the real init script through ``service`` (start, status,
reload, log rotation, restart, stop), a job done by a shipped plugin, then
``dpkg -r`` and ``dpkg -P``, after which the host must be as it was: every
path the sandbox wrote is checked against the host.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import sesshu
from sesshu.ops.provision import Deployment
from tests.harness.aws import REGION, Inbox, MotoServer, poll, publish
from tests.harness.sandbox import Change, Sandbox
from tests.harness.site import FixtureSite, Route

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="installs a package on the host: needs root (CI is root)")

ROOT = Path(__file__).resolve().parent.parent
LOG = "/var/log/sesshu/sesshu.log"
# Files that a Debian host's own bookkeeping changes whenever a package that
# has accounts comes and goes: dpkg's database and log, the lock and the
# backup copies (NAME-) of the account files. Anything else must be exactly
# as the host has it.
# man-db's trigger re-indexes the man pages on install and purge: its cache, not our file.
BOOKKEEPING = re.compile(r"^/(var/lib/dpkg/.*|var/log/dpkg\.log|etc/\.pwd\.lock|etc/(passwd|group|shadow|gshadow)-"
                         r"|var/log/(lastlog|faillog)|var/cache/man/.*)$")
# Docker's "start no services" policy: not there on a real host, so not in the sandbox.
POLICY_RC_D = "/usr/sbin/policy-rc.d"

# How the init script and the unit run the daemon: its own account, with exactly
# the three capabilities it needs to switch workers to workers.user.
CAPS = "+setuid,+setgid,+kill"
AS_SESSHU = ("setpriv", "--reuid=sesshu", "--regid=sesshu", "--init-groups", f"--inh-caps={CAPS}",
             f"--ambient-caps={CAPS}", f"--bounding-set=-all,{CAPS}", "--", "env", "HOME=/var/lib/sesshu")


def say(line: str) -> None:
    """The transcript (pytest -s shows it)."""
    print(f"[package] {line}", flush=True)


@pytest.fixture(scope="module")
def deb() -> Path:
    for tool in ("make", "dpkg-deb", "unshare", "start-stop-daemon"):
        assert shutil.which(tool), f"{tool} is needed to build and test the package"
    arch = subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True, text=True).stdout
    path = ROOT / "dist" / f"sesshu_{sesshu.__version__}_{arch.strip()}.deb"
    built = subprocess.run(["make", "deb"], cwd=ROOT, check=False, capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert path.is_file()
    return path


# utmp's "runlevel 2" record, as sysvinit writes it at boot (struct utmp,
# 384 bytes on Linux: type RUN_LVL, pid = level + 256 * previous level).
RUNLEVEL_2 = r"""
import struct
record = struct.pack("<hxxi32s4s32s256shhiii16s20x", 1, ord("2") + 256 * ord("N"), b"~", b"~~", b"runlevel",
                     b"", 0, 0, 0, 0, 0, b"")
assert len(record) == 384
open("/run/utmp", "wb").write(record)
"""


@pytest.fixture
def sandbox(tmp_path: Path, deb: Path) -> Iterator[Sandbox]:
    """A booted sysvinit host, as far as invoke-rc.d can tell: runlevel 2, and no "start nothing" policy."""
    with Sandbox(tmp_path, deb.parent) as box:
        if box.exists(POLICY_RC_D):
            box.run("rm", POLICY_RC_D).check()
        box.run("/usr/bin/python3", "-c", RUNLEVEL_2).check()
        assert box.run("runlevel").check().stdout.strip() == "N 2"
        yield box


def service(box: Sandbox, action: str, expect: int = 0) -> str:
    result = box.run("service", "sesshud", action, timeout=180)
    assert result.returncode == expect, f"service sesshud {action}: {result}"
    say(f"service sesshud {action} -> {result.returncode}: {(result.stdout + result.stderr).strip()}")
    return result.stdout


def running_pid(box: Sandbox) -> int:
    out = service(box, "status")
    found = re.search(r"running \(pid (\d+)\)", out)
    assert found, out
    return int(found.group(1))


def owner(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Uid:")).split()[1])


def operator_config(moto: MotoServer, deployment: Deployment, workers: int) -> str:
    """/etc/sesshu.yaml as the operator fills it in, for the local server's deployment."""
    doc = yaml.safe_load((ROOT / "etc" / "sesshu.dist.yaml").read_text())
    doc["plugin"] = ["http_robots"]
    doc["workers"].update({"count": workers, "shutdown_timeout": 10, "polling": {"interval": 1},
                           "network": {"allow": ["127.0.0.0/8"]}})  # the test site is on loopback
    doc["bus"] = {"region": REGION, "input": {"queue": deployment.queue_url},
                  "output": {"topic": deployment.results_topic}}
    return yaml.safe_dump(doc)


def postrotate(logrotate: str) -> str:
    """The postrotate script of /etc/logrotate.d/sesshu, as logrotate would run it."""
    found = re.search(r"postrotate\n(.*?)\n\s*endscript", logrotate, re.S)
    assert found, logrotate
    return found.group(1)


def left_behind(changes: list[Change]) -> list[str]:
    """What the sandbox changed on the host, bookkeeping aside."""
    problems = []
    for change in changes:
        if change.kind == "dir" or BOOKKEEPING.match(change.path):
            continue
        if change.kind == "whiteout":
            if change.path != POLICY_RC_D:
                problems.append(f"{change.path}: deleted")
            continue
        try:
            st = os.lstat(change.path)
        except FileNotFoundError:
            problems.append(f"{change.path}: new {change.kind}")
            continue
        if stat.S_ISLNK(st.st_mode):
            same = change.kind == "link" and os.readlink(change.path) == change.digest
        elif stat.S_ISREG(st.st_mode):
            same = (change.kind == "file" and hashlib.sha256(Path(change.path).read_bytes()).hexdigest()
                    == change.digest and (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
                    == (change.mode, change.uid, change.gid))
        else:
            same = False
        if not same:
            problems.append(f"{change.path}: changed")
    return problems


# Warnings a bundled virtualenv brings, kept on purpose: its scripts' shebang is
# its own python (unusual-interpreter) and that python a symlink to Debian's
# (absolute-symlink-in-top-level-folder); a wheel ships a test file with the
# executable bit (executable-not-elf-or-script); the maintainer scripts test
# for deb-systemd-helper by path, as debhelper's own snippets do
# (command-with-path-in-maintainer-script); the init script uses
# start-stop-daemon and LSB headers, not /lib/lsb/init-functions.
KEPT_WARNINGS = {"unusual-interpreter", "absolute-symlink-in-top-level-folder", "executable-not-elf-or-script",
                 "command-with-path-in-maintainer-script", "init.d-script-does-not-source-init-functions",
                 "skip-systemd-native-flag-missing-pre-depends"}


@pytest.mark.skipif(shutil.which("lintian") is None, reason="no lintian here (tests/host-packages installs it as root)")
def test_lintian_finds_no_error_and_only_the_warnings_we_kept(deb: Path) -> None:
    result = subprocess.run(["lintian", "--tag-display-limit", "0", str(deb)], capture_output=True, text=True,
                            timeout=600, check=False)
    tags = [line.split()[:3] for line in result.stdout.splitlines() if line[:2] in ("E:", "W:")]
    errors = [t for t in tags if t[0] == "E:"]
    assert not errors, result.stdout
    assert {t[2] for t in tags} <= KEPT_WARNINGS, result.stdout


def test_install_run_remove_purge(sandbox: Sandbox, deb: Path, moto: MotoServer, deployment: Deployment) -> None:
    box = sandbox
    # -- install
    installed = box.run("dpkg", "-i", f"/run/sandbox/in/{deb.name}", timeout=300).check()
    say(f"dpkg -i {deb.name}: " + " / ".join(installed.stdout.strip().splitlines()[-2:]))
    for account, home in (("sesshu", "/var/lib/sesshu"), ("sesshu-worker", "/nonexistent")):
        entry = box.run("getent", "passwd", account).check().stdout.split(":")
        assert entry[5] == home and entry[6].strip() == "/usr/sbin/nologin" and int(entry[2]) < 1000, entry
    assert box.run("stat", "-c", "%U:%G %a", "/var/log/sesshu", "/var/lib/sesshu").check().stdout.split("\n")[:2] \
        == ["sesshu:sesshu 750", "sesshu:sesshu 750"]
    conffiles = box.run("dpkg-query", "-W", "-f=${Conffiles}", "sesshu").check().stdout
    for path in ("/etc/sesshu.yaml", "/etc/default/sesshud", "/etc/init.d/sesshud", "/etc/logrotate.d/sesshu"):
        assert path in conffiles
    for shared in ("sesshu/prometheus/sesshu-alerts.yml", "sesshu/grafana/sesshu-dashboard.json",
                   "man/man8/sesshud.8.gz", "man/man1/sesshu.1.gz", "man/man5/sesshu.yaml.5.gz",
                   "bash-completion/completions/sesshu", "bash-completion/completions/sesshud",
                   "doc/sesshu/docs/security.md.gz", "doc/sesshu/docs/operations.md.gz"):
        assert box.exists(f"/usr/share/{shared}"), shared
    if box.exists("/usr/bin/man"):
        assert box.run("man", "-w", "sesshud").check().stdout.strip() == "/usr/share/man/man8/sesshud.8.gz"
        assert "sesshu run" in box.run("man", "sesshu", env={"MANWIDTH": "100"}).check().stdout
    # Enabled for both init systems, and not started: the config is a placeholder still.
    assert box.exists("/etc/systemd/system/multi-user.target.wants/sesshud.service")
    assert box.sh("ls /etc/rc2.d/S*sesshud").returncode == 0
    service(box, "status", expect=3)
    checked = box.run(*AS_SESSHU, "sesshud", "--check").check().stdout.splitlines()
    assert checked[-1].startswith("sesshud: /etc") and checked[0].startswith("sesshud: containment: "), checked
    say("installed: accounts sesshu and sesshu-worker, /var/log/sesshu, service enabled and not running")

    # -- configure as the operator: the config, the service account's credentials, the defaults file
    box.write("/etc/sesshu.yaml", operator_config(moto, deployment, workers=2))
    box.sh("install -d -o sesshu -g sesshu -m 0700 /var/lib/sesshu/.aws").check()
    box.write("/var/lib/sesshu/.aws/credentials", "[default]\naws_access_key_id = testing\n"
              "aws_secret_access_key = testing\n", mode="0600")
    box.run("chown", "sesshu:sesshu", "/var/lib/sesshu/.aws/credentials").check()
    defaults = box.read("/etc/default/sesshud")
    box.write("/etc/default/sesshud", defaults + f"export AWS_ENDPOINT_URL={moto.url}\nSTOP_TIMEOUT=30\n")
    check = box.run(*AS_SESSHU, "sesshud", "--check", "--aws", env={"AWS_ENDPOINT_URL": moto.url})
    assert check.returncode == 0 and deployment.queue_url in check.stdout, check
    say(f"configured for {moto.url}: sesshud --check --aws: {check.stdout.strip()}")

    robots = Route(body=b"User-agent: *\nDisallow: /private\nAllow: /public\n")
    with FixtureSite({"/robots.txt": robots}) as site:
        results = Inbox(moto, deployment.results_queue_url)

        def job(path: str) -> None:
            target = f"{site.url}/{path}"
            publish(moto, deployment, "http_robots", target)
            got = [json.loads(body) for body in results.wait(len(results.raw) + 1)]
            assert {"target": target, "plugin": "http_robots", "result": ["/private", "/public"]} in [
                {k: v for k, v in doc.items() if k != "message_id"} for doc in got], got
            say(f"job done: http_robots {target} -> {got[-1]['result']}")

        # -- start, status, a job
        service(box, "start")
        first = running_pid(box)
        assert owner(first) == int(box.run("id", "-u", "sesshu").check().stdout)
        job("first")

        # -- reload: the running daemon takes the new config
        box.write("/etc/sesshu.yaml", operator_config(moto, deployment, workers=3))
        service(box, "reload")
        poll(lambda: "reloaded: 3 workers" in box.read(LOG), 60, what="the reload in the log")
        assert running_pid(box) == first

        # -- log rotation, as logrotate does it: move the file, then the postrotate script
        box.run("mv", LOG, LOG + ".1").check()
        box.sh(postrotate(box.read("/etc/logrotate.d/sesshu"))).check()
        poll(lambda: box.exists(LOG), 30, what="sesshud to reopen its log")
        say("logrotate: sesshu.log moved away, USR1 through the pidfile, sesshu.log reopened")

        # -- restart: a new daemon, and it works
        service(box, "restart")
        second = running_pid(box)
        assert second != first and not os.path.exists(f"/proc/{first}")
        job("second")

        # -- an upgrade (here: the same package again) restarts a running daemon, keeps the config
        upgraded = box.run("dpkg", "-i", f"/run/sandbox/in/{deb.name}", timeout=300).check()
        say("dpkg -i again, while running: " + " / ".join(upgraded.stdout.strip().splitlines()[-2:]))
        third = running_pid(box)
        assert third != second and not os.path.exists(f"/proc/{second}")
        assert "workers:\n  count: 3" in box.read("/etc/sesshu.yaml")
        job("third")

        # -- stop
        service(box, "stop")
        service(box, "status", expect=3)
        assert not os.path.exists(f"/proc/{third}")
        assert "stopped; outcomes: done=1" in box.read(LOG)

        # -- remove stops a running daemon, and keeps the configuration
        service(box, "start")
        fourth = running_pid(box)
    removed = box.run("dpkg", "-r", "sesshu", timeout=300).check()
    say("dpkg -r sesshu: " + " / ".join(removed.stdout.strip().splitlines()[-1:]))
    poll(lambda: not os.path.exists(f"/proc/{fourth}"), 30, what="the daemon to stop on remove")
    assert not box.exists("/usr/lib/sesshu") and not box.exists("/usr/bin/sesshud")
    assert box.exists("/etc/sesshu.yaml") and box.exists("/var/log/sesshu/sesshu.log")
    assert box.run("getent", "passwd", "sesshu").returncode == 0

    # -- purge: nothing is left
    purged = box.run("dpkg", "-P", "sesshu", timeout=300).check()
    say("dpkg -P sesshu: " + " / ".join(purged.stdout.strip().splitlines()[-1:]))
    for account in ("sesshu", "sesshu-worker"):
        assert box.run("getent", "passwd", account).returncode == 2
        assert box.run("getent", "group", account).returncode == 2
    for path in ("/usr/lib/sesshu", "/var/log/sesshu", "/var/lib/sesshu", "/run/sesshu", "/etc/sesshu.yaml",
                 "/etc/default/sesshud", "/etc/init.d/sesshud", "/etc/logrotate.d/sesshu", "/usr/bin/sesshu",
                 "/lib/systemd/system/sesshud.service", "/etc/systemd/system/multi-user.target.wants/sesshud.service",
                 "/etc/systemd/system/sesshud.service"):
        assert not box.exists(path), path
    assert box.sh("ls /etc/rc?.d/*sesshud").returncode != 0
    assert box.run("dpkg-query", "-W", "sesshu").returncode != 0
    assert box.processes() == [box.agent_pid], "processes left in the sandbox"
    problems = left_behind(box.changes())
    assert not problems, "purge left traces:\n" + "\n".join(problems)
    say("purged: no accounts, no files; every other path the sandbox wrote is as on the host")


def test_the_sandbox_sees_every_trace(tmp_path: Path) -> None:
    """What the purge check relies on: a file added, changed or deleted shows; bookkeeping does not.

    (/etc/debian_version and /etc/issue.net come with base-files: every Debian host has them.)
    """
    with Sandbox(tmp_path, tmp_path) as box:
        box.sh("touch /etc/sesshu-stray && chmod 0600 /etc/debian_version && rm /etc/issue.net "
               "&& echo note >> /var/log/dpkg.log && cp -p /etc/passwd /etc/passwd.tmp "
               "&& mv /etc/passwd.tmp /etc/passwd").check()
        assert sorted(left_behind(box.changes())) == [
            "/etc/debian_version: changed", "/etc/issue.net: deleted", "/etc/sesshu-stray: new file"]
    assert not os.path.exists("/etc/sesshu-stray") and os.path.exists("/etc/issue.net")
