"""Hostile plugins against a real sesshud: each attack must fail, and nothing is lost.

The daemon runs as root (as CI does) from a venv an unprivileged account can
read (``tests.harness.sandboxed``). With ``workers.user: nobody`` every attack
of ``tests/plugins/hostile.py`` must fail; without it, what still holds is
shown too: a clean environment, non-dumpable processes, the sweep of what a
job leaves behind, and the limits that bind root as well.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sesshu.worker.sandbox import children_of
from tests.harness.aws import Deployment, Inbox, MotoServer, poll, provision, publish
from tests.harness.daemon import Daemon, pid_alive, session_processes
from tests.harness.sandboxed import WORKER, Staged

CANARY = "sesshu-canary-secret-0xC0FFEE"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="privilege separation needs root (CI runs as root)")


@pytest.fixture(scope="module")
def staged() -> Iterator[Staged]:
    s = Staged()
    yield s
    s.remove()


def config(path: Path, server: MotoServer, dep: Deployment, staged: Staged, **workers: Any) -> Path:
    settings: dict[str, Any] = {"count": 3, "timeout": 10, "polling": {"interval": 1},
                                "retry": {"delay": 1, "max_delay": 2}, "shutdown_timeout": 10,
                                "limits": {"processes": 64, "open_files": 64, "file_size": 4},
                                # Where attacks leave proof the test reads (a pid, a big file).
                                "filesystem": {"write": [str(staged.scratch)]}}
    settings.update(workers)
    path.write_text(yaml.safe_dump({
        "plugin": ["chaos", "hostile"],
        "plugin_path": [str(staged.plugins)],
        "workers": settings,
        "bus": {"region": "us-east-1", "endpoint_url": server.url,
                "input": {"queue": dep.queue_url}, "output": {"topic": dep.results_topic}},
    }))
    os.chmod(path, 0o644)
    return path


def start(server: MotoServer, dep: Deployment, staged: Staged, **workers: Any) -> Daemon:
    path = staged.conf / f"sesshu-{uuid.uuid4().hex[:8]}.yaml"
    # A secret the master holds: it must reach no worker.
    env = {**staged.env(), "AWS_SECRET_ACCESS_KEY": CANARY}
    return Daemon(config(path, server, dep, staged, **workers), server, env=env, command=staged.command(),
                  cwd="/").start()


class Contained:
    """One daemon under attack, and its results."""

    def __init__(self, server: MotoServer, staged: Staged, **workers: Any) -> None:
        self.server, self.staged, self.workers = server, staged, workers
        self.dep = provision(server, f"c{uuid.uuid4().hex[:10]}", max_receive=2)
        self.daemon = start(server, self.dep, staged, **workers)
        self.results = Inbox(server, self.dep.results_queue_url)
        self.dead = Inbox(server, self.dep.dlq_url, envelope=True)

    def run(self, *targets: str, plugin: str = "hostile", timeout: float = 60) -> dict[str, Any]:
        publish(self.server, self.dep, plugin, *targets)
        self.results.wait_for(set(targets), timeout)
        return {d["target"]: d["result"] for d in self.results.docs if d["target"] in targets}

    def master(self) -> int:
        return self.daemon.pid

    def processes(self, prefix: str) -> list[int]:
        return [pid for pid, title in session_processes(self.daemon.pid) if title.startswith(prefix)]

    def close(self) -> None:
        self.daemon.kill_all()


@pytest.fixture(scope="module")
def separated(moto: MotoServer, staged: Staged) -> Iterator[Contained]:
    c = Contained(moto, staged, user=WORKER)
    yield c
    c.close()


@pytest.fixture(scope="module")
def shared(moto: MotoServer, staged: Staged) -> Iterator[Contained]:
    c = Contained(moto, staged)
    yield c
    c.close()


def no_secret(value: Any) -> None:
    text = json.dumps(value)
    assert CANARY not in text
    assert "AWS_" not in text


# -- with workers.user -----------------------------------------------------------


def forkservers(c: Contained) -> str:
    """The fork servers' pids, as an attack's argument: the worker cannot list /proc to find them."""
    pids = [pid for pid, title in session_processes(c.master()) if "multiprocessing.forkserver" in title]
    assert pids
    return ",".join(map(str, pids))


def test_the_environment_holds_no_credentials(separated: Contained) -> None:
    target = f"hostile:env:{forkservers(separated)}"
    got = separated.run(target)[target]
    no_secret(got)
    home = pwd.getpwnam(WORKER).pw_dir
    assert got["environ"]["HOME"] == home
    assert set(got["environ"]) <= {"PATH", "PYTHONPATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "USER",
                                   "LOGNAME", "LC_MESSAGES", "LC_NUMERIC", "LC_TIME", "LC_COLLATE", "TMPDIR"}
    # The fork server's and the keeper's initial blocks are not even readable.
    assert got["parent"].startswith("denied")
    assert [v for k, v in got.items() if k.startswith("forkserver")]
    assert all(v.startswith("denied") for k, v in got.items() if k.startswith("forkserver"))


def test_the_master_cannot_be_read_traced_or_signalled(separated: Contained) -> None:
    master = separated.master()
    server = [pid for pid, title in session_processes(master) if "multiprocessing.forkserver" in title]
    targets = [f"hostile:read:{master}", f"hostile:ptrace:{master}", *(f"hostile:read:{p}" for p in server),
               *(f"hostile:signal:{master}:{sig}" for sig in (signal.SIGSTOP, signal.SIGHUP, signal.SIGTERM))]
    got = separated.run(*targets)
    assert got[f"hostile:read:{master}"] == {"environ": "denied: Permission denied", "mem": "denied: Permission denied"}
    assert got[f"hostile:ptrace:{master}"].startswith("denied")
    for pid in server:
        assert got[f"hostile:read:{pid}"]["environ"].startswith("denied")
    for sig in (signal.SIGSTOP, signal.SIGHUP, signal.SIGTERM):
        assert got[f"hostile:signal:{master}:{sig}"].startswith("denied")
    # Unstopped, unreloaded, unstopped: it still serves jobs.
    assert "SIGHUP" not in separated.daemon.log()
    assert separated.run("chaos:echo:still-here", plugin="chaos")["chaos:echo:still-here"]["echo"] == "still-here"


def test_a_sibling_pipe_cannot_be_stolen_or_its_result_forged(separated: Contained) -> None:
    publish(separated.server, separated.dep, "chaos", "chaos:sleep:3")
    poll(lambda: any("chaos:sleep" in t for _, t in session_processes(separated.master())), 20,
         what="the sibling job to run")
    siblings = ",".join(str(p) for p, t in session_processes(separated.master()) if "chaos:sleep" in t)
    got = separated.run(f"hostile:steal:{siblings}")[f"hostile:steal:{siblings}"]
    assert got and all(v.startswith(("pidfd_open denied", "pidfd_getfd denied")) for v in got.values()), got
    sibling = separated.run("chaos:sleep:3", plugin="chaos")
    assert sibling["chaos:sleep:3"] == 3.0  # the real result, not a forged one
    assert "forged" not in json.dumps(separated.results.docs)


def test_nothing_a_job_starts_outlives_it(separated: Contained) -> None:
    pidfile = separated.staged.scratch / f"escaped-{uuid.uuid4().hex[:6]}"
    separated.run(f"hostile:escape:{pidfile}")
    escaped = int(poll(lambda: pidfile.exists() and pidfile.read_text(), 10, what="the grandchild's pid"))
    poll(lambda: not pid_alive(escaped), 10, what=f"the escaped grandchild {escaped} to be killed")


def test_process_limit_fails_the_job_alone(separated: Contained) -> None:
    publish(separated.server, separated.dep, "hostile", "hostile:fork:300")
    separated.daemon.wait_log(r"retried: hostile hostile:fork:300: fetch hit workers\.limits\.processes")
    # The forks it made went with the job; the daemon serves on.
    poll(lambda: len([p for p in all_pids_of(WORKER)]) <= 3 + 1, 20, what="the forks to be killed")
    assert separated.run("chaos:echo:after-forks", plugin="chaos")["chaos:echo:after-forks"]["echo"] == "after-forks"


def test_open_files_and_file_size_limits_fail_the_job(separated: Contained) -> None:
    big = separated.staged.scratch / f"big-{uuid.uuid4().hex[:6]}"
    publish(separated.server, separated.dep, "hostile", "hostile:files:500", f"hostile:write:{big}:10")
    separated.daemon.wait_log(r"retried: hostile hostile:files:500: fetch hit workers\.limits\.open_files")
    separated.daemon.wait_log(r"retried: hostile hostile:write:\S+: fetch hit workers\.limits\.file_size")
    assert big.stat().st_size <= 4 << 20


@pytest.mark.parametrize("fixture", ["separated", "shared"])
def test_other_plugins_files_cannot_be_rewritten(request: pytest.FixtureRequest, fixture: str) -> None:
    contained: Contained = request.getfixturevalue(fixture)
    chaos = contained.staged.plugins / "chaos.py"
    before = chaos.read_bytes()
    got = contained.run(f"hostile:rewrite:{chaos}")[f"hostile:rewrite:{chaos}"]
    assert got.startswith("denied")
    assert chaos.read_bytes() == before


def test_a_worker_holds_only_its_pipe_and_no_privilege(separated: Contained) -> None:
    got = separated.run("hostile:fds", "hostile:status")
    assert set(got["hostile:fds"]) <= {0, 1, 2, 3, 4}  # 4: the listing's own directory fd
    status = got["hostile:status"]
    uid = str(pwd.getpwnam(WORKER).pw_uid)
    assert status["Uid"] == [uid] * 4
    assert status["Groups"] == []
    assert status["NoNewPrivs"] == ["1"]
    assert int(status["CapEff"][0], 16) == 0
    assert status["dumpable"] == 0
    assert status["cwd"].startswith(tempfile.gettempdir() + "/sesshu-scratch-")


def test_output_is_logged_with_pid_and_message_id(separated: Contained) -> None:
    separated.run("hostile:print:hello-from-a-plugin")
    separated.daemon.wait_log(r"sesshu\.worker: worker \d+ \(message [0-9a-f-]{36}\): hello-from-a-plugin$")
    separated.daemon.wait_log(r"hello-from-a-plugin on stderr")


def test_a_retitled_worker_is_not_taken_for_the_master(separated: Contained) -> None:
    publish(separated.server, separated.dep, "hostile", "hostile:title")
    poll(lambda: len(separated.processes("sesshud: master")) == 2, 20, what="a worker posing as the master")
    # The daemon is found by its pid (the harness' process handle, a pidfile in production).
    assert separated.daemon.proc is not None and separated.daemon.proc.poll() is None
    separated.results.wait_for({"hostile:title"})


# -- the second step: file view, scratch, signals, system calls; with and without workers.user --


@pytest.fixture(params=["separated", "shared"])
def either(request: pytest.FixtureRequest) -> Contained:
    """Each attack below must fail whether or not workers run as another account."""
    contained: Contained = request.getfixturevalue(request.param)
    return contained


def test_what_a_job_writes_no_later_job_sees(either: Contained) -> None:
    name = f"left-{uuid.uuid4().hex[:8]}"
    # One job at a time on one slot would prove the least; every slot runs a "leave" first.
    leaves = [f"hostile:leave:{name}.{i}" for i in range(3)]
    left = either.run(*leaves)
    for target in leaves:
        wrote = left[target]
        assert wrote[f"./{name}.{target[-1]}"].startswith("got") and wrote["cwd"].startswith(tempfile.gettempdir())
        for shared in ("/tmp", "/var/tmp", "/dev/shm"):
            assert wrote[f"{shared}/{name}.{target[-1]}"].startswith("denied"), wrote
    looks = [f"hostile:look:{name}.{i}" for i in range(3)]
    seen = either.run(*looks)
    cwds = set()
    for target in looks:
        got = seen[target]
        assert got["listing"] == [], got
        assert got["cwd"] == got["tmpdir"]
        assert all(v.startswith("denied") for v in got["found"].values()), got
        assert got["mode"] == 0o700
        cwds.add(got["cwd"])
    assert not cwds & {left[t]["cwd"] for t in leaves}  # a job that wrote leaves its directory to no one
    # A slot's last job directory is gone once the slot took another job.
    slots_since = {os.path.dirname(cwd) for cwd in cwds}
    for target in leaves:
        if os.path.dirname(left[target]["cwd"]) in slots_since:
            assert not os.path.exists(left[target]["cwd"])
    # And a file a job left is out of every later job's reach, whichever slot runs it.
    files = [f"hostile:readfile:{left[t]['cwd']}/{name}.{t[-1]}" for t in leaves]
    read = either.run(*files)
    assert all(v.startswith("denied") for v in read.values()), read
    expected_owner = pwd.getpwnam(WORKER).pw_uid if either.workers.get("user") else 0
    assert {seen[t]["owner"] for t in looks} == {expected_owner}


def test_the_daemons_files_are_out_of_reach_even_when_world_readable(either: Contained) -> None:
    config, log = either.daemon.config, either.daemon.log_path
    assert os.stat(config).st_mode & 0o004 and os.stat(log).st_mode & 0o004
    home = pwd.getpwnam(WORKER).pw_dir if either.workers.get("user") else "/root"
    targets = [f"hostile:readfile:{config}", f"hostile:readfile:{log}", "hostile:readfile:/etc/passwd",
               f"hostile:readfile:{home}/.aws/credentials"]
    got = either.run(*targets)
    for target in targets:
        assert got[target].startswith("denied"), (target, got[target])
    # What a network client needs is there.
    assert either.run("hostile:readfile:/etc/hosts")["hostile:readfile:/etc/hosts"].startswith("got")


def test_a_worker_cannot_signal_a_sibling_but_can_signal_its_own_child(either: Contained) -> None:
    publish(either.server, either.dep, "chaos", "chaos:sleep:4")
    sibling = int(poll(lambda: next((p for p, t in session_processes(either.master()) if "chaos:sleep:4" in t),
                                    None), 20, what="the sibling job to run"))
    keepers = either.processes("sesshud: keeper")
    targets = [f"hostile:signal:{sibling}:{int(signal.SIGSTOP)}", f"hostile:signal:{sibling}:{int(signal.SIGKILL)}",
               *(f"hostile:signal:{k}:{int(signal.SIGSTOP)}" for k in keepers),
               f"hostile:signal:{either.master()}:{int(signal.SIGSTOP)}", "hostile:sigchild"]
    got = either.run(*targets)
    for target in targets[:-1]:
        assert got[target] == "denied: Operation not permitted", (target, got[target])
    assert got["hostile:sigchild"] == -signal.SIGTERM
    assert either.run("chaos:sleep:4", plugin="chaos")["chaos:sleep:4"] == 4.0  # the sibling finished


def test_a_killed_runners_directory_is_removed_by_its_keeper(either: Contained) -> None:
    target = f"hostile:leave:doomed-{uuid.uuid4().hex[:6]}"
    slot = Path(either.run(target)[target]["cwd"]).parent
    assert slot.exists()  # the last job's directory stays until the next job starts
    keeper = int(slot.name.split("-")[1])
    (runner,) = children_of(keeper)
    os.kill(runner, signal.SIGKILL)
    poll(lambda: not slot.exists(), 20, what=f"{slot} to be removed")
    assert either.run("chaos:echo:after", plugin="chaos")["chaos:echo:after"]["echo"] == "after"


def test_workers_filesystem_read_grants_a_model_file_and_nothing_beside_it(moto: MotoServer,
                                                                          staged: Staged) -> None:
    models = Path(tempfile.mkdtemp(prefix="sesshu-models-", dir="/var/tmp"))
    try:
        os.chmod(models, 0o755)
        (models / "model.bin").write_text("weights")
        beside = Path(tempfile.mkdtemp(prefix="sesshu-beside-", dir="/var/tmp"))
        os.chmod(beside, 0o755)
        (beside / "other.bin").write_text("not granted")
        os.chmod(beside / "other.bin", 0o644)
        os.chmod(models / "model.bin", 0o644)
        c = Contained(moto, staged, user=WORKER, count=1, filesystem={"read": [str(models)]})
        try:
            granted, other = f"hostile:readfile:{models}/model.bin", f"hostile:readfile:{beside}/other.bin"
            rewrite = f"hostile:rewrite:{models}/model.bin"
            got = c.run(granted, other, rewrite)
            assert got[granted] == "got: b'weights'"
            assert got[other].startswith("denied") and got[rewrite].startswith("denied"), got
        finally:
            c.close()
            shutil.rmtree(beside, ignore_errors=True)
    finally:
        shutil.rmtree(models, ignore_errors=True)


def test_the_kernels_attack_surface_is_closed(either: Contained) -> None:
    got = either.run("hostile:syscalls")["hostile:syscalls"]
    assert got.pop("Seccomp") == "2"  # filter mode
    # unshare(1) makes its namespace with clone's flags, not unshare(2): it must fail too.
    assert got.pop("clone(CLONE_NEWUSER)").startswith("denied"), got
    not_refused = {name: result for name, result in got.items() if result != "EPERM"}
    assert not not_refused
    assert len(got) >= 25


def test_ordinary_plugins_keep_working(either: Contained) -> None:
    got = either.run("hostile:ordinary")["hostile:ordinary"]
    assert got["squares"] == [x * x for x in range(8)]
    assert got["echo"] == "from a shell"
    assert got["tempfile"] == got["cwd"]
    assert got["hosts"] is True and got["cpus"] >= 1


@pytest.mark.parametrize("attack", ["fork", "threads", "spawn"])
def test_every_way_to_the_process_limit_is_named(separated: Contained, attack: str) -> None:
    target = f"hostile:{attack}:300"
    publish(separated.server, separated.dep, "hostile", target)
    separated.daemon.wait_log(rf"retried: hostile {target}: fetch hit workers\.limits\.processes")
    poll(lambda: len(all_pids_of(WORKER)) <= 3 + 1, 20, what="what the job started to be killed")
    echo = f"chaos:echo:after-{attack}"
    assert separated.run(echo, plugin="chaos")[echo]["echo"] == f"after-{attack}"


def test_every_message_is_accounted_for(separated: Contained) -> None:
    separated.daemon.stop()
    log = separated.daemon.log()
    received = log.count("] INFO sesshu.jobs.outcomes: ") + log.count("] WARNING sesshu.jobs.outcomes: ")
    assert received > 0
    # "outcomes: done=M, ...; receives: retried=R" counts messages, and receives where they differ.
    summary = log.rsplit("stopped; outcomes: ", 1)[1].split("; bus requests")[0]
    messages, _, repeats = summary.partition("; receives: ")
    counts = {k: int(v) for k, v in (part.split("=") for part in messages.split(", "))}
    counts.update({k: int(v) for k, v in (part.split("=") for part in repeats.split(", ") if part)})
    assert sum(counts.values()) == received


# -- without workers.user: what still holds --------------------------------------


def test_without_a_worker_account_the_environment_is_still_clean(shared: Contained) -> None:
    target = f"hostile:env:{forkservers(shared)}"
    got = shared.run(target)[target]
    # Root may read every process on the host; what must be clean is this daemon's workers,
    # keepers and fork server. (The master's own block holds the credentials, as it must.)
    ours = {f"forkserver {pid}" for pid, title in session_processes(shared.master())
            if "multiprocessing.forkserver" in title}
    assert ours
    no_secret({k: v for k, v in got.items() if k in ("environ", "self", "parent") or k in ours})
    assert shared.daemon.wait_log(r"WARNING sesshu\.daemon\.assemble: workers\.user is not set")


def test_without_a_worker_account_sweeps_limits_and_flags_still_hold(shared: Contained) -> None:
    pidfile = shared.staged.scratch / f"escaped-{uuid.uuid4().hex[:6]}"
    got = shared.run("hostile:status", "hostile:fds", f"hostile:escape:{pidfile}")
    assert got["hostile:status"]["dumpable"] == 0
    assert got["hostile:status"]["NoNewPrivs"] == ["1"]
    assert set(got["hostile:fds"]) <= {0, 1, 2, 3, 4}
    escaped = int(poll(lambda: pidfile.exists() and pidfile.read_text(), 10, what="the grandchild's pid"))
    poll(lambda: not pid_alive(escaped), 10, what="the escaped grandchild to be killed")
    publish(shared.server, shared.dep, "hostile", "hostile:files:500")
    shared.daemon.wait_log(r"retried: hostile hostile:files:500: fetch hit workers\.limits\.open_files")


# -- integrity between jobs ----------------------------------------------------------


def test_max_jobs_one_gives_every_job_a_fresh_process(moto: MotoServer, staged: Staged) -> None:
    c = Contained(moto, staged, user=WORKER, count=1, max_jobs=1)
    try:
        c.run("hostile:patch:sesshu_plugin_chaos")
        assert c.run("chaos:echo:genuine", plugin="chaos")["chaos:echo:genuine"]["echo"] == "genuine"
    finally:
        c.close()


def test_without_max_jobs_one_a_patch_outlives_its_job(moto: MotoServer, staged: Staged) -> None:
    """The documented limit of long-lived workers: why max_jobs: 1 exists."""
    c = Contained(moto, staged, user=WORKER, count=1)
    try:
        c.run("hostile:patch:sesshu_plugin_chaos")
        assert c.run("chaos:echo:x", plugin="chaos")["chaos:echo:x"] == "patched"
    finally:
        c.close()


# -- refusals at start-up ----------------------------------------------------------


def check(staged: Staged, moto: MotoServer, *, as_user: str | None = None, command: list[str] | None = None,
          **workers: Any) -> subprocess.CompletedProcess[str]:
    dep = provision(moto, f"k{uuid.uuid4().hex[:10]}")
    path = config(staged.conf / f"check-{uuid.uuid4().hex[:6]}.yaml", moto, dep, staged, **workers)
    cmd = [*(command or staged.command()), "-c", str(path), "--check"]
    env = {**os.environ, **staged.env()} if command is None else dict(os.environ)
    user = pwd.getpwnam(as_user) if as_user else None
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env,
                          user=user.pw_uid if user else None, group=user.pw_gid if user else None,
                          extra_groups=[] if user else None, cwd="/")


@pytest.mark.parametrize(("user", "expected"), [
    ("no-such-account", "workers.user: no account 'no-such-account' on this host"),
    ("root", "workers.user: 'root' is the daemon's own account"),
])
def test_refused_worker_accounts(staged: Staged, moto: MotoServer, user: str, expected: str) -> None:
    done = check(staged, moto, user=user)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr


def test_a_master_that_cannot_switch_accounts_is_refused(staged: Staged, moto: MotoServer) -> None:
    done = check(staged, moto, as_user=WORKER, user="daemon")
    assert done.returncode == 1
    assert "workers.user: switching to 'daemon' needs root, or CAP_SETUID + CAP_SETGID + CAP_KILL" in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def test_an_interpreter_the_worker_cannot_read_is_named(staged: Staged, moto: MotoServer) -> None:
    from tests.harness.daemon import SESSHUD

    if not os.path.realpath(sys.executable).startswith("/root/") or not _root_home_private():
        pytest.fail("this test needs the default interpreter under a private /root, as on these machines")
    done = check(staged, moto, command=[str(SESSHUD)], user=WORKER)
    assert done.returncode == 1
    assert "workers.user: nobody cannot read" in done.stderr and "the Python interpreter" in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def _root_home_private() -> bool:
    return os.stat("/root").st_mode & 0o005 == 0


def all_pids_of(user: str) -> list[int]:
    uid = pwd.getpwnam(user).pw_uid
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid and pid_alive(int(entry)):
                    out.append(int(entry))
            except OSError:
                continue
    return out


# -- the systemd unit's set-up: an unprivileged master with three capabilities ---------------


CAPS = "+setuid,+setgid,+kill"


def test_an_unprivileged_master_with_three_capabilities_contains_as_root_does(moto: MotoServer,
                                                                                staged: Staged) -> None:
    """What the unit does with User=sesshu and AmbientCapabilities, done here with setpriv."""
    master = pwd.getpwnam("daemon")
    command = ["setpriv", f"--reuid={master.pw_uid}", f"--regid={master.pw_gid}", "--clear-groups",
               f"--inh-caps={CAPS}", f"--ambient-caps={CAPS}", f"--bounding-set=-all,{CAPS}", "--",
               *staged.command()]
    dep = provision(moto, f"u{uuid.uuid4().hex[:10]}", max_receive=2)
    path = config(staged.conf / f"caps-{uuid.uuid4().hex[:6]}.yaml", moto, dep, staged, user=WORKER,
                  timeout=2)
    # A service's working directory is /: this checkout may sit where the daemon's account cannot go.
    daemon = Daemon(path, moto, env={**staged.env(), "AWS_SECRET_ACCESS_KEY": CANARY}, command=command,
                    cwd="/").start()
    try:
        results = Inbox(moto, dep.results_queue_url)
        pidfile = staged.scratch / f"escaped-{uuid.uuid4().hex[:6]}"
        publish(moto, dep, "hostile", "hostile:status", "hostile:env", f"hostile:escape:{pidfile}")
        publish(moto, dep, "chaos", "chaos:spin")  # ignores SIGTERM: only CAP_KILL ends it
        results.wait_for({"hostile:status", "hostile:env", f"hostile:escape:{pidfile}"})
        got = {d["target"]: d["result"] for d in results.docs}
        status = got["hostile:status"]
        assert status["Uid"] == [str(pwd.getpwnam(WORKER).pw_uid)] * 4
        assert int(status["CapEff"][0], 16) == 0  # the master's three capabilities stay with it
        no_secret(got["hostile:env"])
        escaped = int(poll(lambda: pidfile.exists() and pidfile.read_text(), 10, what="the grandchild's pid"))
        poll(lambda: not pid_alive(escaped), 10, what="the escaped grandchild to be killed")
        daemon.wait_log(r"retried: chaos chaos:spin: plugin chaos timed out after 2 s")
        poll(lambda: not [p for p, t in session_processes(daemon.pid) if "chaos:spin" in t], 10,
             what="the spinning worker to be killed")
        assert daemon.stop() == 0
    finally:
        daemon.kill_all()
