"""``sesshu run PLUGIN TARGET``: a real command, a real worker, its exit codes and its two streams."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness.aws import poll
from tests.harness.daemon import TEST_PLUGINS, pid_alive
from tests.harness.site import FixtureSite, Route


def sesshu_run(*args: str) -> subprocess.CompletedProcess[str]:
    # Its own session: whatever the command leaves running keeps that session id.
    return subprocess.run([sys.executable, "-m", "sesshu.ops.cli", "run", *args, "--plugin-path", str(TEST_PLUGINS)],
                          check=False, capture_output=True, text=True, timeout=120, start_new_session=True,
                          env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")})


def session_members(sid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != b"Z":
                members.append(int(entry))
    return members


def test_done_is_one_json_line_on_stdout_and_the_plugins_talk_goes_to_stderr() -> None:
    result = sesshu_run("chaos", "chaos:talk")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert json.loads(result.stdout) == {"target": "chaos:talk", "plugin": "chaos", "result": {"talked": True}}
    for said in ("chaos says hello on stdout", "chaos says hello on stderr", "a child says hello"):
        assert said in result.stderr


@pytest.mark.parametrize(("target", "code", "said"), [
    ("chaos:none", 0, "empty"),
    ("chaos:invalid", 65, "rejected: invalid target: ValueError"),
    ("chaos:never", 65, "rejected: rejected by the plugin: gone for good"),
    ("chaos:raise", 75, "retried: fetch raised RuntimeError"),
    ("chaos:later:30", 75, "retried: plugin asked to retry in 30 s"),
    ("chaos:segv", 75, "retried: crashed"),
])
def test_exit_codes_say_how_the_job_ended(target: str, code: int, said: str) -> None:
    result = sesshu_run("chaos", target)
    assert result.returncode == code and result.stdout == "", result
    assert said in result.stderr.splitlines()[-1]


def test_an_unknown_plugin_is_one_line_and_65() -> None:
    result = sesshu_run("no_such_plugin", "x")
    assert result.returncode == 65 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "no_such_plugin" in result.stderr


def test_options_and_timeout_reach_the_worker(tmp_path: Path) -> None:
    result = sesshu_run("chaos", "chaos:echo:x", "--option", "depth=3", "--option", "name=red")
    assert json.loads(result.stdout)["result"]["options"] == {"depth": 3, "name": "red"}
    hung = sesshu_run("chaos", "chaos:spin", "--timeout", "1")
    assert hung.returncode == 75 and "timeout" in hung.stderr.splitlines()[-1]


def test_a_config_supplies_the_options(tmp_path: Path) -> None:
    config = tmp_path / "sesshu.yaml"
    config.write_text(yaml.safe_dump({"plugin": [{"name": "chaos", "options": {"from": "config"}}],
                                      "bus": {"input": {"queue": "q"}, "output": {"topic": "t"}}}))
    result = sesshu_run("chaos", "chaos:echo:x", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["result"]["options"] == {"from": "config"}


@pytest.mark.parametrize("target", ["chaos:orphan:{pidfile}", "chaos:grandchild:{pidfile}"])
def test_no_process_outlives_the_command(tmp_path: Path, target: str) -> None:
    pidfile = tmp_path / "left.pid"
    # The plugin writes the pid outside its scratch directory: the config grants that.
    config = tmp_path / "sesshu.yaml"
    config.write_text(yaml.safe_dump({"plugin": ["chaos"], "workers": {"filesystem": {"write": [str(tmp_path)]}},
                                      "bus": {"input": {"queue": "q"}, "output": {"topic": "t"}}}))
    proc = subprocess.Popen([sys.executable, "-m", "sesshu.ops.cli", "run", "chaos", target.format(pidfile=pidfile),
                             "-c", str(config), "--timeout", "2", "--plugin-path", str(TEST_PLUGINS)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    assert proc.wait(timeout=120) in (0, 75)
    left = int(pidfile.read_text())
    # The detached one left the session; the rest of the tree stayed in it. Neither may live on.
    poll(lambda: not pid_alive(left) and not session_members(proc.pid), 30, what="every process of the run gone")


def test_the_address_guard_refuses_loopback_unless_allow_names_it(site: FixtureSite, tmp_path: Path) -> None:
    site.route("/robots.txt", Route(body=b"Disallow: /x\n"))
    target = f"http://localhost:{site.port}/"
    refused = sesshu_run("http_robots", target)
    assert (refused.returncode, refused.stdout) == (0, "") and refused.stderr.endswith("empty\n")
    assert re.search(r"WARNING .*GET refused: localhost is \S+, loopback", refused.stderr), refused.stderr
    assert site.connections == 0
    rejected = sesshu_run("http_robots", site.url + "/")
    assert rejected.returncode == 65 and "refused address: 127.0.0.1, loopback" in rejected.stderr
    done = sesshu_run("http_robots", target, "--allow", "127.0.0.0/8", "--allow", "::1")
    assert done.returncode == 0 and json.loads(done.stdout)["result"] == ["/x"], done.stderr
    config = tmp_path / "sesshu.yaml"
    config.write_text(yaml.safe_dump({"plugin": ["http_robots"], "workers": {"network": {"allow": ["127.0.0.0/8"]}},
                                      "bus": {"input": {"queue": "q"}, "output": {"topic": "t"}}}))
    from_config = sesshu_run("http_robots", site.url + "/", "-c", str(config))
    assert from_config.returncode == 0 and json.loads(from_config.stdout)["result"] == ["/x"], from_config.stderr
    bad = sesshu_run("http_robots", target, "--allow", "localhost")
    assert bad.returncode == 2 and "'localhost' is not an address range" in bad.stderr
