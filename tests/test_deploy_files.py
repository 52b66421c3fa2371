"""The deployment files in etc/: CloudFormation, the systemd unit, the init script."""

from __future__ import annotations

import configparser
import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.aws import poll

ROOT = Path(__file__).resolve().parent.parent
ETC = ROOT / "etc"
UNIT = ETC / "systemd" / "sesshud.service"
INIT = ETC / "init.d" / "sesshud"


@pytest.mark.parametrize("template", ["sesshu.yaml", "sesshu-fleet.yaml"])
def test_cloudformation_templates_lint(template: str) -> None:
    cfn_lint = shutil.which("cfn-lint", path=os.path.dirname(sys.executable)) or shutil.which("cfn-lint")
    assert cfn_lint, "cfn-lint is missing: pip install -e '.[test]'"
    result = subprocess.run([cfn_lint, str(ETC / "cloudformation" / template)],
                            check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags, each read as {"Fn": value}."""


for _tag in ("Ref", "Sub", "GetAtt", "Base64", "Join", "Select", "Split", "If", "Equals", "Not"):
    _CfnLoader.add_constructor(f"!{_tag}", lambda loader, node, t=_tag: {t: loader.construct_scalar(node)
                                                                         if isinstance(node, yaml.ScalarNode)
                                                                         else loader.construct_sequence(node)})


def test_the_fleet_scales_on_backlog_per_instance_and_alarms_on_the_dlq_and_old_requests() -> None:
    fleet = yaml.load((ETC / "cloudformation" / "sesshu-fleet.yaml").read_text(), Loader=_CfnLoader)
    bus = yaml.load((ETC / "cloudformation" / "sesshu.yaml").read_text(), Loader=_CfnLoader)
    res = fleet["Resources"]
    spec = res["BacklogPerInstancePolicy"]["Properties"]["TargetTrackingConfiguration"]
    metrics = {m["Id"]: m for m in spec["CustomizedMetricSpecification"]["Metrics"]}
    assert metrics["visible"]["MetricStat"]["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert metrics["instances"]["MetricStat"]["Metric"]["MetricName"] == "GroupInServiceInstances"
    assert "visible /" in metrics["backlogPerInstance"]["Expression"] and metrics["backlogPerInstance"]["ReturnData"]
    assert "GroupInServiceInstances" in res["Group"]["Properties"]["MetricsCollection"][0]["Metrics"]
    alarms = {r["Properties"]["MetricName"] for r in res.values() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert alarms == {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"}
    # Every parameter the bus stack gives has an output there to take it from.
    for name in ("QueueUrl", "QueueName", "DeadLetterQueueName", "ResultsTopicArn", "InstanceProfileArn"):
        assert name in bus["Outputs"] and name in fleet["Parameters"], name


def test_the_fleets_user_data_writes_a_config_that_validates() -> None:
    from sesshu.config.model import from_mapping

    fleet = yaml.load((ETC / "cloudformation" / "sesshu-fleet.yaml").read_text(), Loader=_CfnLoader)
    script = fleet["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Sub"]
    config = script.split("<<'CONFIG'\n", 1)[1].split("\nCONFIG\n", 1)[0]
    values = {"Workers": "16", "AWS::Region": "eu-west-1", "ResultsTopicArn": "arn:aws:sns:eu-west-1:1:r",
              "QueueUrl": "https://sqs.eu-west-1.amazonaws.com/1/x-requests"}
    for key, value in values.items():
        config = config.replace("${" + key + "}", value)
    assert "${" not in config
    parsed = from_mapping(yaml.safe_load(config))
    assert parsed.worker_count == 16 and parsed.queue.endswith("x-requests") and parsed.worker_user == "sesshu-worker"


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_systemd_unit_settings() -> None:
    service = unit()["Service"]
    exec_start = shlex.split(service["ExecStart"])
    # sesshud itself, not through a shell: a bare name, found in /usr/local/bin or /usr/bin.
    assert exec_start[0] == "sesshud", "run sesshud itself, not through a shell"
    # The pidfile is where the init script and logrotate find the daemon.
    assert exec_start[1:] == ["-c", "/etc/sesshu.yaml", "--pidfile", "/run/sesshu/sesshud.pid"]
    assert service["RuntimeDirectory"] == "sesshu"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"
    # Longer than sesshud's default 30 s graceful drain.
    assert int(service["TimeoutStopSec"]) > 30
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "1"  # a config error must not restart-loop
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert service["User"] == "sesshu"
    # The package gives sesshu its home in /var/lib/sesshu, so ProtectHome=yes
    # does not hide its ~/.aws/credentials (docs/operations.md, Pidfile, init script, systemd).
    assert service["ProtectHome"] == "yes"
    assert "adduser --system --group --quiet --home /var/lib/sesshu" in (ROOT / "packaging/debian/postinst").read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    # verify insists that ExecStart exists: point it at an installed sesshud.
    sesshud = shutil.which("sesshud", path=os.path.dirname(sys.executable))
    assert sesshud is not None
    copy = tmp_path / "sesshud.service"
    copy.write_text(UNIT.read_text().replace("ExecStart=sesshud ", f"ExecStart={sesshud} "))
    result = subprocess.run(["systemd-analyze", "verify", str(copy)],
                            check=False, capture_output=True, text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "sesshud.service" in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


def test_init_script_has_an_lsb_header() -> None:
    text = INIT.read_text()
    assert text.startswith("#!/bin/sh\n")
    header = text[text.index("### BEGIN INIT INFO"):text.index("### END INIT INFO")]
    for key in ("Provides:", "Required-Start:", "Required-Stop:", "Default-Start:", "Default-Stop:",
                "Short-Description:"):
        assert key in header
    assert os.access(INIT, os.X_OK)
    subprocess.run(["sh", "-n", str(INIT)], check=True)


# A stand-in for sesshud: it logs what happens to it next to its config.
FAKE_DAEMON = """\
import os, signal, sys
args = sys.argv[1:]
config = args[args.index("-c") + 1]
behaviour = open(config).read()

def note(what):
    with open(config + ".log", "a") as f:
        f.write(what + "\\n")

if "--check" in args:
    note("check")
    if "broken" in behaviour:
        print("sesshud: config error: broken on purpose", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)
signal.signal(signal.SIGHUP, lambda *_: note("HUP"))
signal.signal(signal.SIGUSR1, lambda *_: note("USR1"))
if "ignore-term" in behaviour:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
pidfile = args[args.index("--pidfile") + 1]
note(f"start {os.getpid()} {' '.join(args)}")
# Written last, once the handlers are in place, and atomically.
with open(pidfile + ".tmp", "w") as f:
    f.write(f"{os.getpid()}\\n")
os.rename(pidfile + ".tmp", pidfile)
while True:
    signal.pause()
"""

# Runs the init script's commands as a child subreaper. The daemon it starts
# is orphaned on purpose (start-stop-daemon --background), so whatever
# adopts it must reap it, or a stopped daemon lingers as a zombie that
# still "exists"; a container's pid 1 may never reap. One JSON request a
# line on stdin, one JSON reply a line on stdout.
REAPER = """\
import ctypes, json, os, sys
PR_SET_CHILD_SUBREAPER = 36
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")

def reap_orphans():
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass

for line in sys.stdin:
    request = json.loads(line)
    reap_orphans()
    out, err = request["out"], request["err"]
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
               (os.POSIX_SPAWN_OPEN, 2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)]
    pid = os.posix_spawnp(request["argv"][0], request["argv"], request["env"], file_actions=actions)
    while True:
        # Also reaps the daemon the moment it dies, while a stop waits for it.
        done, status = os.waitpid(-1, 0)
        if done == pid:
            break
    print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)
"""


class InitScript:
    """``sh etc/init.d/sesshud ACTION`` with a defaults file pointing at the fake daemon."""

    def __init__(self, tmp_path: Path, user: str) -> None:
        self.dir = tmp_path
        self.config = tmp_path / "sesshu.yaml"
        self.config.write_text("fine\n")
        self.log = tmp_path / "sesshu.yaml.log"
        self.pidfile = tmp_path / "run" / "sesshud.pid"  # run/ is missing: the script makes it
        daemon = tmp_path / "fake-sesshud"
        daemon.write_text(f"#!{sys.executable}\n{FAKE_DAEMON}")
        daemon.chmod(0o755)
        self.defaults = tmp_path / "defaults"
        self.defaults.write_text(
            f"DAEMON={daemon}\nCONFIG={self.config}\nPIDFILE={self.pidfile}\nUSER={user}\n"
            "ARGS='--extra one'\nSTOP_TIMEOUT=1\nSTART_TIMEOUT=20\nOUTPUT=\n"
        )
        (tmp_path / "reaper.py").write_text(REAPER)
        self._reaper = subprocess.Popen([sys.executable, str(tmp_path / "reaper.py")], text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def __call__(self, action: str) -> subprocess.CompletedProcess[str]:
        out, err = self.dir / "out", self.dir / "err"
        env = {**os.environ, "SESSHUD_DEFAULTS": str(self.defaults)}
        request = {"argv": ["sh", str(INIT), action], "env": env, "out": str(out), "err": str(err)}
        assert self._reaper.stdin is not None and self._reaper.stdout is not None
        self._reaper.stdin.write(json.dumps(request) + "\n")
        self._reaper.stdin.flush()
        ready, _, _ = select.select([self._reaper.stdout], [], [], 90)
        assert ready, f"init script {action} did not finish within 90 s"
        reply: dict[str, Any] = json.loads(self._reaper.stdout.readline())
        return subprocess.CompletedProcess([action], reply["rc"], out.read_text(), err.read_text())

    def pid(self) -> int:
        return int(self.pidfile.read_text())

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def close(self) -> None:
        if self.pidfile.exists() and alive(self.pid()):
            os.kill(self.pid(), signal.SIGKILL)
        if self._reaper.stdin is not None:
            self._reaper.stdin.close()
        self._reaper.wait(30)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def users() -> list[str]:
    # With USER set the script adds --chuid and --user; only root can switch user.
    return ["", "root"] if os.geteuid() == 0 else [""]


def skip_unless_init_script_can_run() -> None:
    if os.geteuid() != 0:
        pytest.skip("the init script makes its run directory with install -o: needs root (CI runs as root)")
    # /sbin is on root's PATH, not always on a plain user's.
    if shutil.which("start-stop-daemon", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin") is None:
        pytest.skip("start-stop-daemon is not installed")


@pytest.fixture(params=users(), ids=lambda user: f"user={user or 'none'}")
def init(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InitScript]:
    skip_unless_init_script_can_run()
    script = InitScript(tmp_path, request.param)
    try:
        yield script
    finally:
        script.close()


def test_init_script_start_reload_restart_stop(init: InitScript) -> None:
    assert init("status").returncode == 3

    result = init("start")
    assert result.returncode == 0, result.stderr
    first = init.pid()
    assert alive(first)
    assert init("status").returncode == 0
    assert init.log_lines()[0] == "check"
    assert init.log_lines()[1] == f"start {first} -c {init.config} --pidfile {init.pidfile} --extra one"

    # Started twice is still one daemon.
    assert init("start").returncode == 0
    assert init.pid() == first
    assert sum(line.startswith("start ") for line in init.log_lines()) == 1

    assert init("reload").returncode == 0
    poll(lambda: "HUP" in init.log_lines(), timeout=20, what="the fake daemon to get SIGHUP")
    assert alive(first)

    assert init("restart").returncode == 0
    second = init.pid()
    assert second != first and alive(second) and not alive(first)
    assert init("status").returncode == 0

    assert init("stop").returncode == 0
    assert not alive(second)
    assert not init.pidfile.exists()
    assert init("status").returncode == 3
    assert init("stop").returncode == 0  # stopping a stopped service is fine
    assert init("reload").returncode == 7


def test_init_script_rotate_and_try_restart(init: InitScript) -> None:
    # Both are no-ops on a stopped daemon, and try-restart leaves it stopped.
    assert init("rotate").returncode == 0
    assert init("try-restart").returncode == 0
    assert init("status").returncode == 3
    assert not any(line.startswith("start ") for line in init.log_lines())

    assert init("start").returncode == 0
    first = init.pid()
    assert init("rotate").returncode == 0  # logrotate's postrotate: USR1, the daemon carries on
    poll(lambda: "USR1" in init.log_lines(), timeout=20, what="the fake daemon to get SIGUSR1")
    assert init.pid() == first and alive(first)
    assert init("try-restart").returncode == 0
    second = init.pid()
    assert second != first and alive(second) and not alive(first)


def test_logrotate_rotates_through_the_init_script() -> None:
    text = (ROOT / "packaging" / "debian" / "logrotate").read_text()
    assert "/var/log/sesshu/*.log {" in text
    # USR1 through the pidfile, by the init script, which sends it only to USER's process.
    assert "/etc/init.d/sesshud rotate" in text
    # sesshud.out is the daemon's stdout: it cannot be reopened, only copied and truncated.
    assert re.search(r"/var/log/sesshu/sesshud\.out \{[^}]*copytruncate", text)


def test_make_deploy_stack_runs_cloudformation_deploy(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fake = tmp_path / "aws"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> {calls}\n")
    fake.chmod(0o755)
    subprocess.run(["make", "--no-print-directory", "deploy-stack", f"AWS={fake}", "STACK=panorama",
                    "STACK_PARAMETERS=VisibilityTimeout=120"], cwd=ROOT, check=True, capture_output=True, timeout=60)
    deploy, describe = calls.read_text().splitlines()
    words = deploy.split()
    assert words[:2] == ["cloudformation", "deploy"]
    assert words[words.index("--stack-name") + 1] == "panorama"
    template = ROOT / words[words.index("--template-file") + 1]
    assert template == ETC / "cloudformation" / "sesshu.yaml"
    # The template makes an IAM role and policy: without this, CloudFormation refuses.
    assert words[words.index("--capabilities") + 1] == "CAPABILITY_IAM"
    assert words[words.index("--parameter-overrides") + 1:] == ["Name=panorama", "VisibilityTimeout=120"]
    assert describe.startswith("cloudformation describe-stacks --stack-name panorama")


def test_init_script_will_not_start_with_a_broken_config(init: InitScript) -> None:
    init.config.write_text("broken\n")
    result = init("start")
    assert result.returncode == 1
    assert "broken on purpose" in result.stderr
    assert init("status").returncode == 3
    assert not any(line.startswith("start ") for line in init.log_lines())


def test_init_script_restart_keeps_the_daemon_when_the_config_is_broken(init: InitScript) -> None:
    assert init("start").returncode == 0
    running = init.pid()
    init.config.write_text("broken\n")
    assert init("restart").returncode == 1
    assert init.pid() == running and alive(running)
    assert init("status").returncode == 0


def test_init_script_kills_a_daemon_that_ignores_term(init: InitScript) -> None:
    init.config.write_text("ignore-term\n")
    assert init("start").returncode == 0
    stubborn = init.pid()
    # STOP_TIMEOUT is 1 s: TERM, then KILL.
    assert init("stop").returncode == 0
    assert not alive(stubborn)
    assert init("status").returncode == 3


def test_init_script_usage() -> None:
    result = subprocess.run(["sh", str(INIT), "frobnicate"], capture_output=True, text=True,
                            env={**os.environ, "SESSHUD_DEFAULTS": "/nonexistent"}, timeout=30, check=False)
    assert result.returncode == 2
    assert "Usage:" in result.stderr


def test_init_script_runs_the_real_daemon(tmp_path: Path, moto: Any, deployment: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """start, status, reload and stop with the real sesshud against the local SQS/SNS server."""
    import yaml

    skip_unless_init_script_can_run()

    from tests.harness.aws import Inbox, aws_env, publish
    from tests.harness.daemon import SESSHUD, write_config

    init = InitScript(tmp_path, "root")
    try:
        config = write_config(tmp_path / "real.yaml", moto, deployment)
        output = tmp_path / "sesshud.out"
        init.defaults.write_text(
            f"DAEMON={SESSHUD}\nCONFIG={config}\nPIDFILE={init.pidfile}\nUSER=root\n"
            f"OUTPUT={output}\nSTOP_TIMEOUT=30\nSTART_TIMEOUT=60\n")
        for key, value in aws_env(moto.url).items():
            if key.startswith("AWS_"):
                monkeypatch.setenv(key, value)
        assert init("start").returncode == 0
        assert init("status").returncode == 0
        publish(moto, deployment, "chaos", "chaos:echo:init")
        assert "chaos:echo:init" in Inbox(moto, deployment.results_queue_url).wait(1)[0]
        doc = yaml.safe_load(config.read_text())
        doc["workers"]["count"] = 3
        config.write_text(yaml.safe_dump(doc))
        assert init("reload").returncode == 0
        poll(lambda: "reloaded: 3 workers" in output.read_text(), 60, what="the reload")
        pid = init.pid()
        assert init("stop").returncode == 0
        assert not alive(pid)
        assert init("status").returncode == 3
        assert "stopped; outcomes: done=1" in output.read_text()
    finally:
        init.close()
