"""End to end: a real sesshud subprocess, a real moto SQS/SNS server, real plugins."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness.aws import Deployment, Inbox, MotoServer, drain, poll, provision, publish, queue_depth
from tests.harness.daemon import Daemon, pid_alive, shared_dir, write_config
from tests.harness.site import FixtureSite, Route


def send_raw(moto: MotoServer, dep: Deployment, body: str) -> str:
    return str(moto.client("sqs").send_message(QueueUrl=dep.queue_url, MessageBody=body)["MessageId"])


def docs(bodies: list[str]) -> dict[str, Any]:
    return {json.loads(b)["target"]: json.loads(b) for b in bodies}


def test_outcomes_done_empty_rejected(moto: MotoServer, deployment: Deployment, cfg_path: Path,
                                      daemons: list[Daemon]) -> None:
    d = Daemon(write_config(cfg_path, moto, deployment), moto)
    daemons.append(d.start())
    results = Inbox(moto, deployment.results_queue_url)
    publish(moto, deployment, "chaos", "chaos:echo:hello")
    publish(moto, deployment, "chaos", "chaos:none")
    publish(moto, deployment, "chaos", "chaos:modules")
    got = docs(results.wait(2))
    assert got["chaos:echo:hello"]["plugin"] == "chaos"
    assert set(got["chaos:echo:hello"]) == {"target", "plugin", "message_id", "result"}
    assert got["chaos:echo:hello"]["result"]["echo"] == "hello"
    # Children never import boto3.
    assert got["chaos:modules"]["result"] == {"boto3": False, "botocore": False}
    d.wait_log(r"empty: chaos chaos:none: no data .* message \S+ deleted")
    assert len(d.wait_log(r"INFO sesshu\.jobs\.outcomes: done: ", count=2)) == 2
    assert d.stop() == 0
    assert "outcomes: done=2, empty=1, rejected=0, retried=0" in d.log()
    # Nothing left in the input queue: done and empty messages were deleted.
    assert drain(moto, deployment.queue_url) == []


def test_raw_delivery(moto: MotoServer, cfg_path: Path, daemons: list[Daemon]) -> None:
    dep = provision(moto, f"raw{time.monotonic_ns()}", raw=True)
    d = Daemon(write_config(cfg_path, moto, dep), moto)
    daemons.append(d.start())
    publish(moto, dep, "chaos", "chaos:echo:raw")
    send_raw(moto, dep, json.dumps({"plugin": "chaos", "target": "chaos:echo:direct"}))
    got = docs(Inbox(moto, dep.results_queue_url).wait(2))
    assert got["chaos:echo:raw"]["result"]["echo"] == "raw"
    assert got["chaos:echo:direct"]["result"]["echo"] == "direct"


BAD_BODIES = [
    "not json at all",
    "[1, 2, 3]",
    '"just a string"',
    "{}",
    json.dumps({"plugin": "chaos"}),
    json.dumps({"target": "chaos:echo:x"}),
    json.dumps({"plugin": "os", "target": "chaos:echo:x"}),
    json.dumps({"plugin": "../chaos", "target": "chaos:echo:x"}),
    json.dumps({"plugin": "not_enabled", "target": "x"}),
    json.dumps({"plugin": 3, "target": "chaos:echo:x"}),
    json.dumps({"plugin": "chaos", "target": ""}),
    json.dumps({"plugin": "chaos", "target": ["a"]}),
    json.dumps({"plugin": "chaos", "target": "x" * 5000}),
    json.dumps({"Type": "Notification", "Message": "not json"}),
    json.dumps({"Type": "Notification", "Message": json.dumps({"plugin": "os", "target": "x"})}),
    json.dumps({"plugin": "chaos", "target": "chaos:invalid"}),  # validate() raises
    json.dumps({"plugin": "http_robots", "target": "ftp://example.com/"}),  # shipped validate()
]


def test_bad_messages_are_rejected_into_the_dlq(moto: MotoServer, deployment: Deployment, cfg_path: Path,
                                                daemons: list[Daemon]) -> None:
    d = Daemon(write_config(cfg_path, moto, deployment), moto)
    daemons.append(d.start())
    ids = {send_raw(moto, deployment, body): body for body in BAD_BODIES}
    dlq = Inbox(moto, deployment.dlq_url)
    got = dlq.wait(len(BAD_BODIES), timeout=90)
    assert sorted(got) == sorted(BAD_BODIES)
    log = d.log()
    for mid in ids:
        assert "rejected: " in log and f"message {mid} left for the dead-letter queue" in log
    # Never a whole body in the log at INFO: the 5000-character target does not appear.
    assert "x" * 3000 not in log
    assert d.proc is not None and d.proc.poll() is None  # bad input never crashes the supervisor
    assert not Inbox(moto, deployment.results_queue_url).bodies()


def test_rejections_name_the_job_and_count_messages_apart_from_receives(
        moto: MotoServer, deployment: Deployment, cfg_path: Path, daemons: list[Daemon]) -> None:
    d = Daemon(write_config(cfg_path, moto, deployment), moto)
    daemons.append(d.start())
    publish(moto, deployment, "no_such_plugin", "https://user:hunter2@example.com/a")
    send_raw(moto, deployment, "{broken")
    dead = Inbox(moto, deployment.dlq_url)
    dead.wait(2, timeout=60)  # max_receive is 2: each came twice
    d.wait_log(r"rejected: no_such_plugin https://\*\*\*@example\.com/a: plugin 'no_such_plugin' is not an "
               r"enabled plugin \(enabled: chaos, http_robots, http_javascript, http_stylesheet\); message \S+ "
               r"left for the dead-letter queue \(receive 2 of 2\)")
    d.wait_log(r"rejected: request: body is not valid JSON; message \S+ left for the dead-letter queue "
               r"\(receive 2 of 2\)")
    assert d.stop() == 0
    assert "outcomes: done=0, empty=0, rejected=2, retried=0; receives: rejected=4;" in d.log()
    assert "hunter2" not in d.log()


def test_malformed_message_reaches_dlq_without_waiting_out_its_visibility(moto: MotoServer, cfg_path: Path,
                                                                          daemons: list[Daemon]) -> None:
    dep = provision(moto, f"dlq{time.monotonic_ns()}", visibility=30, max_receive=2)
    d = Daemon(write_config(cfg_path, moto, dep, workers={"polling": {"interval": 20}}), moto)
    daemons.append(d.start())
    sent = time.monotonic()
    send_raw(moto, dep, "{broken")
    Inbox(moto, dep.dlq_url).wait(1, timeout=60)
    # Released at once, its second receive dead-letters it; held for its
    # visibility timeout, it could not reach the DLQ in less than 30 s.
    assert time.monotonic() - sent < 25


CRASHES = ["chaos:segv", "chaos:exit", "chaos:hang", "chaos:spin", "chaos:raise", "chaos:unserialisable"]


def test_crashes_lose_nothing_and_leave_no_orphans(moto: MotoServer, cfg_path: Path, tmp_path: Path,
                                                   daemons: list[Daemon]) -> None:
    dep = provision(moto, f"crash{time.monotonic_ns()}", visibility=30, max_receive=2)
    d = Daemon(write_config(cfg_path, moto, dep, workers={"count": 3, "timeout": 2}), moto)
    daemons.append(d.start())
    poll(lambda: len(d.workers()) == 3, 30, what="3 workers")
    pidfile = shared_dir(cfg_path) / "grandchild.pid"
    targets = [*CRASHES, f"chaos:grandchild:{pidfile}"]
    for t in targets:
        publish(moto, dep, "chaos", t)
    publish(moto, dep, "chaos", "chaos:echo:survivor")
    # Every crashing message is retried, then dead-lettered by the redrive policy: none is lost.
    dead = Inbox(moto, dep.dlq_url).wait(len(targets), timeout=120)
    assert sorted(json.loads(json.loads(b)["Message"])["target"] for b in dead) == sorted(targets)
    results = docs(Inbox(moto, dep.results_queue_url).wait(1))
    assert results["chaos:echo:survivor"]["result"]["echo"] == "survivor"
    log = d.log()
    assert "killed by SIGSEGV" in log
    assert "exited with status 7" in log
    assert "timed out after 2 s on chaos:hang" in log
    assert "timed out after 2 s on chaos:spin" in log
    assert "fetch raised RuntimeError" in log
    assert "result is not JSON-serialisable" in log
    # The grandchild a plugin left behind died with its worker's process group.
    grandchild = int(pidfile.read_text())
    poll(lambda: not pid_alive(grandchild), 10, what="the grandchild to die")
    # The pool is back at full strength and still works.
    poll(lambda: len(d.workers()) == 3, 30, what="pool back at 3 workers")
    publish(moto, dep, "chaos", "chaos:echo:after")
    assert "chaos:echo:after" in docs(Inbox(moto, dep.results_queue_url).wait(1))
    assert d.stop() == 0
    poll(lambda: not d.leftovers(), 10, what="no process left behind")


def test_sigterm_lets_the_running_job_finish(moto: MotoServer, deployment: Deployment, cfg_path: Path,
                                             daemons: list[Daemon]) -> None:
    d = Daemon(write_config(cfg_path, moto, deployment), moto)
    daemons.append(d.start())
    publish(moto, deployment, "chaos", "chaos:sleep:1.5")
    poll(lambda: any("worker chaos chaos:sleep" in t for _, t in d.leftovers()), 30,
         what="the job to start")
    assert d.stop(signal.SIGTERM) == 0
    assert "done: chaos chaos:sleep:1.5" in d.log()
    got = Inbox(moto, deployment.results_queue_url).wait(1)
    assert json.loads(got[0])["result"] == 1.5
    poll(lambda: not d.leftovers(), 10, what="no process left behind")


def test_sigint_exits_cleanly_when_idle(moto: MotoServer, deployment: Deployment, cfg_path: Path,
                                        daemons: list[Daemon]) -> None:
    d = Daemon(write_config(cfg_path, moto, deployment, workers={"polling": {"interval": 20}}), moto)
    daemons.append(d.start())
    poll(lambda: len(d.workers()) == 2, 30, what="2 workers")
    assert d.stop(signal.SIGINT) == 0
    poll(lambda: not d.leftovers(), 10, what="no process left behind")


def test_process_titles(moto: MotoServer, deployment: Deployment, cfg_path: Path,
                        daemons: list[Daemon]) -> None:
    d = Daemon(write_config(cfg_path, moto, deployment), moto)
    daemons.append(d.start())
    poll(lambda: [t for _, t in d.leftovers()].count("sesshud: worker idle") == 2, 30, what="2 idle workers")
    assert dict(d.leftovers())[d.pid] == f"sesshud: master -c {cfg_path}"
    publish(moto, deployment, "chaos", "chaos:sleep:30")
    poll(lambda: "sesshud: worker chaos chaos:sleep:30" in dict(d.leftovers()).values(), 30,
         what="a busy worker title")


def test_shipped_plugins_against_a_fixture_site(moto: MotoServer, deployment: Deployment, cfg_path: Path,
                                                daemons: list[Daemon]) -> None:
    html = (b'<html><head><link rel="stylesheet" href="/a.css"><script src="/app.js"></script>'
            b'<link rel="icon" href="/f.ico"></head><body><script>inline()</script></body></html>')
    routes = {
        "/robots.txt": Route(body=b"User-agent: *\nDisallow: /private # no\nAllow: /public\n"),
        "/page": Route(body=html, headers={"Content-Type": "text/html; charset=utf-8"}),
    }
    with FixtureSite(routes) as site:
        d = Daemon(write_config(cfg_path, moto, deployment), moto)
        daemons.append(d.start())
        publish(moto, deployment, "http_robots", f"{site.url}/page")
        publish(moto, deployment, "http_javascript", f"{site.url}/page")
        publish(moto, deployment, "http_stylesheet", f"{site.url}/page")
        publish(moto, deployment, "http_robots", f"{site.url.replace('127.0.0.1', '127.0.0.1:1')}")
        got = {(doc["plugin"]): doc for doc in map(json.loads, Inbox(moto, deployment.results_queue_url).wait(3))}
        assert got["http_robots"]["result"] == ["/private", "/public"]
        assert got["http_javascript"]["result"] == ["/app.js"]
        assert got["http_stylesheet"]["result"] == ["/a.css"]
        assert {ua for _, ua in site.hits} == {"Panorama/sesshu"}


def test_entry_point_plugin(moto: MotoServer, deployment: Deployment, cfg_path: Path, tmp_path: Path,
                            daemons: list[Daemon]) -> None:
    site = tmp_path / "site"
    (site / "ep_demo-1.0.dist-info").mkdir(parents=True)
    (site / "ep_demo-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-demo\nVersion: 1.0\n")
    (site / "ep_demo-1.0.dist-info" / "entry_points.txt").write_text("[sesshu.plugins]\nep_echo = ep_demo_mod\n")
    (site / "ep_demo_mod.py").write_text(
        "def validate(target):\n    pass\n\ndef fetch(target):\n    return {'ep': target}\n")
    d = Daemon(write_config(cfg_path, moto, deployment, plugin=["ep_echo"]), moto,
               env={"PYTHONPATH": str(site)})
    daemons.append(d.start())
    publish(moto, deployment, "ep_echo", "anything")
    got = json.loads(Inbox(moto, deployment.results_queue_url).wait(1)[0])
    assert got == {"target": "anything", "plugin": "ep_echo", "message_id": got["message_id"],
                   "result": {"ep": "anything"}}


@pytest.mark.parametrize("mutate, key", [
    (lambda p: p.unlink(), "cannot read config file"),
    (lambda p: p.write_text("plugin: [chaos\n"), "not valid YAML"),
    (lambda p: _edit(p, workers={"count": 0}), "workers.count: min value is 1"),
    (lambda p: _edit(p, workers={"polling": {"interval": 99}}), "workers.polling.interval: max value is 20"),
    (lambda p: _edit(p, plugin=["chaos", "nope"]), "plugin[1]: 'nope' is not installed"),
    (lambda p: _edit(p, plugin=["broken"]), "plugin[0]: 'broken' failed to load: ImportError"),
    (lambda p: _edit(p, plugin=["chaos", "incomplete"]), "plugin[1]: 'incomplete' failed to load: TypeError"),
    (lambda p: _edit(p, bus={"input": {"queue": "q"}}), "bus.output: required field"),
])
def test_bad_config_exits_with_one_line(moto: MotoServer, deployment: Deployment, cfg_path: Path,
                                        mutate: Any, key: str) -> None:
    write_config(cfg_path, moto, deployment,
                 plugin_path=[str(Path(__file__).parent / "plugins"), str(Path(__file__).parent / "broken_plugins")])
    mutate(cfg_path)
    for extra in ([], ["--check"]):
        d = Daemon(cfg_path, moto, *extra)
        d.start(wait_ready=False)
        assert d.wait() == 1
        lines = d.log().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sesshud: config error: "), d.log()
        assert key in lines[0]
        d.log_path.unlink()


def test_missing_queue_is_a_config_error(moto: MotoServer, deployment: Deployment, cfg_path: Path) -> None:
    write_config(cfg_path, moto, deployment)
    _edit(cfg_path, bus={"region": "us-east-1", "endpoint_url": moto.url, "input": {"queue": "no-such-queue"},
                         "output": {"topic": deployment.results_topic}})
    d = Daemon(cfg_path, moto).start(wait_ready=False)
    assert d.wait() == 1
    assert "config error: bus.input.queue: no queue 'no-such-queue'" in d.log()


def test_unreachable_bus_exits_tempfail(moto: MotoServer, deployment: Deployment, cfg_path: Path) -> None:
    write_config(cfg_path, moto, deployment)
    _edit(cfg_path, bus={"region": "us-east-1", "endpoint_url": "http://127.0.0.1:1",
                         "input": {"queue": "q"}, "output": {"topic": deployment.results_topic}})
    d = Daemon(cfg_path, moto).start(wait_ready=False)
    assert d.wait(120) == 75  # EX_TEMPFAIL: a service manager may restart it
    assert "cannot reach the bus at start-up" in d.log()


def test_check_and_version(moto: MotoServer, deployment: Deployment, cfg_path: Path) -> None:
    write_config(cfg_path, moto, deployment)
    d = Daemon(cfg_path, moto, "--check").start(wait_ready=False)
    assert d.wait() == 0
    assert "OK" in d.log()
    v = Daemon(cfg_path, moto, "--version").start(wait_ready=False)
    assert v.wait() == 0
    assert v.log().strip().endswith("sesshud 0.1.0")


def _edit(path: Path, **changes: Any) -> None:
    import yaml

    doc = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict) and key != "bus":
            doc[key].update(value)
        else:
            doc[key] = value
    path.write_text(yaml.safe_dump(doc))


def test_several_senders_and_receivers_lose_and_repeat_nothing(moto: MotoServer, deployment: Deployment,
                                                              cfg_path: Path, daemons: list[Daemon]) -> None:
    """Many calls in flight at once, of every kind: each message is published once, then deleted."""
    bus = {"region": "us-east-1", "endpoint_url": moto.url, "senders": 4, "receivers": 3,
           "input": {"queue": deployment.queue_url}, "output": {"topic": deployment.results_topic}}
    d = Daemon(write_config(cfg_path, moto, deployment, bus=bus, workers={"count": 8, "prefetch": 20}), moto)
    daemons.append(d.start())
    targets = [f"chaos:echo:{i}" for i in range(150)] + [f"chaos:none:{i}" for i in range(30)]
    publish(moto, deployment, "chaos", *targets)
    results = Inbox(moto, deployment.results_queue_url)
    results.wait(150, timeout=120)
    d.wait_log(r"sesshu\.jobs\.outcomes: (done|empty): ", count=180, timeout=60)
    assert d.stop() == 0
    assert "outcomes: done=150, empty=30, rejected=0, retried=0" in d.log()
    assert sorted(json.loads(b)["target"] for b in results.bodies()) == sorted(targets[:150])  # each once
    # Nothing left, visible or in flight: a message that came back is a repeat in waiting.
    assert queue_depth(moto, deployment.queue_url) == 0
    assert queue_depth(moto, deployment.results_queue_url) == 0


# -- the plugin API: RetryLater and Reject, through the real daemon ------------------------


def test_a_plugins_retry_later_sets_when_its_message_comes_back(moto: MotoServer, cfg_path: Path,
                                                               daemons: list[Daemon]) -> None:
    dep = provision(moto, f"later{time.monotonic_ns()}", visibility=30, max_receive=6)
    d = Daemon(write_config(cfg_path, moto, dep), moto)  # the daemon's own backoff: 1 s, then 2 s
    daemons.append(d.start())
    publish(moto, dep, "chaos", "chaos:later:600")
    publish(moto, dep, "chaos", "chaos:later:2")
    publish(moto, dep, "chaos", "chaos:raise")  # the control, on the daemon's backoff
    d.wait_log(r"retried: chaos chaos:later:600: plugin asked to retry in 600 s: the site is busy; message \S+ "
               r"will be retried \(receive 1 of 6\)")
    # A short RetryLater comes back; the control comes back three times on the daemon's
    # backoff (over 4 s); meanwhile the one that asked for ten minutes stays away.
    d.wait_log(r"retried: chaos chaos:later:2: .*\(receive 2 of 6\)", timeout=60)
    d.wait_log(r"retried: chaos chaos:raise: .*\(receive 4 of 6\)", timeout=60)
    assert len(re.findall(r"retried: chaos chaos:later:600: ", d.log())) == 1
    assert queue_depth(moto, dep.queue_url) >= 1  # still there, out of sight
    assert d.stop() == 0
    assert "receives: retried=" in d.log()
