"""Operating sesshud: signals, reload, pidfile, metrics and logs, on a real daemon."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from tests.harness.aws import Deployment, Inbox, MotoServer, free_port, poll, provision, publish
from tests.harness.daemon import Daemon, pid_alive, write_config


def idle_workers(d: Daemon) -> int:
    return d.worker_titles().count("sesshud: worker idle")


def busy_with(d: Daemon, target: str) -> bool:
    return any(t.startswith("sesshud: worker chaos") and target in t for t in d.worker_titles())


def test_ttin_ttou_change_the_worker_count(moto: MotoServer, deployment: Deployment, cfg_path: Path,
                                           daemons: list[Daemon]) -> None:
    d = Daemon(write_config(cfg_path, moto, deployment), moto)
    daemons.append(d.start())
    poll(lambda: idle_workers(d) == 2, 30, what="2 workers")
    d.send_signal(signal.SIGTTIN)
    poll(lambda: len(d.workers()) == 3, 30, what="3 workers after TTIN")
    # Signals of one kind coalesce while pending, so send each after the last took effect.
    for expect, count in (("2", 1), ("1", 1), ("1", 2)):
        d.send_signal(signal.SIGTTOU)
        d.wait_log(rf"SIGTTOU: workers now {expect}", count=count)
    poll(lambda: len(d.workers()) == 1, 30, what="never fewer than 1 worker")
    publish(moto, deployment, "chaos", "chaos:echo:one")
    Inbox(moto, deployment.results_queue_url).wait(1)


def test_hup_reloads_without_killing_a_running_job(moto: MotoServer, deployment: Deployment, cfg_path: Path,
                                                   daemons: list[Daemon]) -> None:
    d = Daemon(write_config(cfg_path, moto, deployment, plugin=["chaos", "http_robots"]), moto)
    daemons.append(d.start())
    poll(lambda: idle_workers(d) == 2, 30, what="2 workers")
    publish(moto, deployment, "chaos", "chaos:sleep:3")
    poll(lambda: busy_with(d, "chaos:sleep:3"), 30, what="the long job to start")
    busy_pid = next(pid for pid, t in d.leftovers() if "chaos:sleep:3" in t)

    # A broken config is refused, and the daemon runs on.
    cfg_path.write_text(cfg_path.read_text().replace("count: 2", "count: 0"))
    d.send_signal(signal.SIGHUP)
    d.wait_log(r"reload refused, keeping the running config: workers.count")
    # So is a config whose plugin cannot load (checked in a probe child).
    doc = yaml.safe_load(cfg_path.read_text())
    doc["workers"]["count"] = 3
    doc["plugin"] = ["chaos", "broken"]
    doc["plugin_path"].append(str(Path(__file__).parent / "broken_plugins"))
    cfg_path.write_text(yaml.safe_dump(doc))
    d.send_signal(signal.SIGHUP)
    d.wait_log(r"reload refused, keeping the running config: plugin broken failed to load")

    # A good one is applied: 3 workers, http_robots disabled; the running job survives.
    doc["plugin"] = ["chaos"]
    cfg_path.write_text(yaml.safe_dump(doc))
    d.send_signal(signal.SIGHUP)
    d.wait_log(r"reloaded: 3 workers, plugins chaos")
    assert pid_alive(busy_pid)
    results = Inbox(moto, deployment.results_queue_url)
    assert json.loads(results.wait(1)[0])["result"] == 3.0
    poll(lambda: idle_workers(d) == 3, 30, what="3 workers of the new config")
    publish(moto, deployment, "http_robots", "http://127.0.0.1:1/")
    d.wait_log(r"rejected: http_robots http://127\.0\.0\.1:1/: plugin 'http_robots' is not an enabled plugin "
               r"\(enabled: chaos\); message \S+ left for the dead-letter queue \(receive 1 of 2\)")
    assert d.proc is not None and d.proc.poll() is None


def test_usr1_reopens_the_log_file(moto: MotoServer, deployment: Deployment, cfg_path: Path, tmp_path: Path,
                                   daemons: list[Daemon]) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    d = Daemon(write_config(cfg_path, moto, deployment, logging={"path": str(logdir), "name": "sesshu"}), moto)
    daemons.append(d.start(wait_ready=False))
    logfile = logdir / "sesshu.log"
    poll(lambda: logfile.exists() and "started" in logfile.read_text(), 60, what="the log file")
    rotated = logdir / "sesshu.log.1"
    os.rename(logfile, rotated)
    d.send_signal(signal.SIGUSR1)
    poll(logfile.exists, 30, what="a new log file after USR1")
    publish(moto, deployment, "chaos", "chaos:echo:after-rotate")
    poll(lambda: "chaos:echo:after-rotate" in logfile.read_text(), 30, what="new lines in the new file")
    assert "chaos:echo:after-rotate" not in rotated.read_text()
    assert f"[{d.pid}]" in logfile.read_text()  # the text format shows the pid


def test_quit_is_a_fast_stop_that_releases_the_message(moto: MotoServer, cfg_path: Path,
                                                       daemons: list[Daemon]) -> None:
    # The daemon's long poll still in flight may take the released message once
    # more (LocalStack, like SQS, answers it as soon as the message is visible),
    # so leave the redrive policy room for the receives the test makes too.
    deployment = provision(moto, f"quit{time.monotonic_ns()}", max_receive=5)
    d = Daemon(write_config(cfg_path, moto, deployment, workers={"timeout": 60}), moto)
    daemons.append(d.start())
    publish(moto, deployment, "chaos", "chaos:hang")
    poll(lambda: busy_with(d, "chaos:hang"), 30, what="the job to start")
    started = time.monotonic()
    assert d.stop(signal.SIGQUIT) == 0
    # A graceful stop would wait for the job, up to its 60 s timeout.
    assert time.monotonic() - started < 30
    poll(lambda: not d.leftovers(), 10, what="no process left behind")
    # Released at once (visibility 0), though the queue's visibility timeout is 30 s.
    sqs = moto.client("sqs")
    got = poll(lambda: sqs.receive_message(QueueUrl=deployment.queue_url, WaitTimeSeconds=1).get("Messages"),
               10, what="the released message")
    assert "chaos:hang" in got[0]["Body"]


def test_term_drains_and_releases_held_messages(moto: MotoServer, deployment: Deployment, cfg_path: Path,
                                                daemons: list[Daemon]) -> None:
    d = Daemon(write_config(cfg_path, moto, deployment, workers={"count": 1, "prefetch": 3}), moto)
    daemons.append(d.start())
    poll(lambda: idle_workers(d) == 1, 30, what="1 worker")
    # Jobs long enough that a loaded machine cannot finish one before the stop.
    for i in range(4):
        publish(moto, deployment, "chaos", f"chaos:sleep:4.{i}")
    poll(lambda: busy_with(d, "chaos:sleep:4."), 30, what="a job to start")
    assert d.stop(signal.SIGTERM) == 0
    log = d.log()
    assert log.count("done: chaos chaos:sleep:4.") == 1
    assert log.count("daemon stopping before it started") + log.count("received while stopping") >= 1
    # Every message is accounted for: one result, the rest visible again right away.
    assert len(Inbox(moto, deployment.results_queue_url).wait(1)) == 1
    sqs = moto.client("sqs")
    seen: set[str] = set()

    def all_back() -> bool:
        for m in sqs.receive_message(QueueUrl=deployment.queue_url, MaxNumberOfMessages=10,
                                     VisibilityTimeout=60).get("Messages", []):
            seen.add(m["MessageId"])
        return len(seen) == 3

    poll(all_back, 20, what="3 released messages")


def test_shutdown_timeout_kills_what_still_runs(moto: MotoServer, deployment: Deployment, cfg_path: Path,
                                                daemons: list[Daemon]) -> None:
    d = Daemon(write_config(cfg_path, moto, deployment, workers={"timeout": 60, "shutdown_timeout": 1}), moto)
    daemons.append(d.start())
    publish(moto, deployment, "chaos", "chaos:hang")
    poll(lambda: busy_with(d, "chaos:hang"), 30, what="the job to start")
    assert d.stop(signal.SIGTERM, timeout=30) == 0
    assert "killed at shutdown; message" in d.log()
    poll(lambda: not d.leftovers(), 10, what="no process left behind")


def test_pidfile(moto: MotoServer, deployment: Deployment, cfg_path: Path, tmp_path: Path,
                 daemons: list[Daemon]) -> None:
    pidfile = tmp_path / "sesshud.pid"
    pidfile.write_text("999999\n")  # stale: no such process; taken over
    write_config(cfg_path, moto, deployment)
    d = Daemon(cfg_path, moto, "--pidfile", str(pidfile))
    daemons.append(d.start())
    poll(lambda: pidfile.exists() and pidfile.read_text().strip() == str(d.pid), 30, what="the pidfile")
    second = Daemon(cfg_path.with_name("second.yaml"), moto, "--pidfile", str(pidfile))
    second.config.write_text(cfg_path.read_text())
    second.start(wait_ready=False)
    assert second.wait() == 1
    assert f"held by running process {d.pid}" in second.log()
    assert d.stop() == 0
    assert not pidfile.exists()


def test_metrics_are_scraped_over_http(moto: MotoServer, deployment: Deployment, cfg_path: Path,
                                       daemons: list[Daemon]) -> None:
    port = free_port()
    # The crashed job must not come back while the counts are read: a second
    # crash would make its count 2.
    d = Daemon(write_config(cfg_path, moto, deployment, metrics={"address": "127.0.0.1", "port": port},
                            workers={"retry": {"delay": 600, "max_delay": 600}}), moto)
    daemons.append(d.start())
    publish(moto, deployment, "chaos", "chaos:echo:m")
    publish(moto, deployment, "chaos", "chaos:segv")
    Inbox(moto, deployment.results_queue_url).wait(1)
    d.wait_log("killed by SIGSEGV")

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    want = [
        'sesshu_jobs_total{outcome="done",plugin="chaos",reason=""} 1.0',
        'sesshu_jobs_total{outcome="retried",plugin="chaos",reason="crashed"} 1.0',
        'sesshu_job_duration_seconds_count{plugin="chaos"} 1.0',
        'sesshu_workers{state="configured"} 2.0',
        'sesshu_worker_restarts_total{reason="crashed"} 1.0',
        'sesshu_bus_requests_total{operation="receive_message"}',
        'sesshu_messages_in_flight 0.0',
    ]
    poll(lambda: all(w in scrape() for w in want), 30, what="the metrics")
    assert 'sesshu_bus_errors_total' in scrape()


def test_json_logs_carry_the_job_fields(moto: MotoServer, deployment: Deployment, cfg_path: Path,
                                        daemons: list[Daemon]) -> None:
    d = Daemon(write_config(cfg_path, moto, deployment, logging={"format": "json", "level": "info"}), moto)
    daemons.append(d.start(wait_ready=False))
    publish(moto, deployment, "chaos", "chaos:echo:json")
    lines = d.wait_log(r'"outcome": "done"')
    doc = json.loads(lines[0])
    assert doc["plugin"] == "chaos" and doc["target"] == "chaos:echo:json"
    assert doc["message_id"] and doc["worker_pid"] and doc["duration"] >= 0 and doc["pid"] == d.pid


def test_a_reload_names_the_restart_only_keys_and_applies_the_rest(moto: MotoServer, deployment: Deployment,
                                                                    cfg_path: Path, daemons: list[Daemon]) -> None:
    d = Daemon(write_config(cfg_path, moto, deployment, plugin=["chaos"]), moto)
    daemons.append(d.start())
    doc = yaml.safe_load(cfg_path.read_text())
    doc["workers"]["count"] = 3
    doc["bus"]["input"]["queue"] = "elsewhere"
    doc["bus"]["output"]["s3_prefix"] = "other/"
    cfg_path.write_text(yaml.safe_dump(doc))
    d.send_signal(signal.SIGHUP)
    # The operator's line, word for word: the Config field names, sorted.
    d.wait_log(r"WARNING sesshu\.daemon\.assemble: reload: changes to queue, s3_prefix take effect only after a "
               r"restart$")
    d.wait_log(r"reloaded: 3 workers, plugins chaos")
    publish(moto, deployment, "chaos", "chaos:echo:one")
    Inbox(moto, deployment.results_queue_url).wait(1)  # served from the running queue


# -- systemd's notify protocol, and the health endpoints -------------------------------------


class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET; what it heard, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.heard: list[str] = []

    def hear(self) -> list[str]:
        with contextlib.suppress(TimeoutError):
            while True:
                self.heard.append(self.sock.recv(4096).decode())
        return self.heard

    def index(self, line: str, after: int = -1) -> int:
        """Where the first message with ``line`` after message ``after`` is, or -1."""
        return next((i for i, m in enumerate(self.hear()) if i > after and line in m.splitlines()), -1)


def test_systemd_hears_ready_status_watchdog_reload_and_stopping(moto: MotoServer, deployment: Deployment,
                                                                  cfg_path: Path, daemons: list[Daemon],
                                                                  tmp_path: Path) -> None:
    systemd = NotifySocket(tmp_path / "notify")
    d = Daemon(write_config(cfg_path, moto, deployment), moto,
               env={"NOTIFY_SOCKET": str(systemd.path), "WATCHDOG_USEC": "1500000"})
    daemons.append(d.start(wait_ready=False))
    poll(lambda: systemd.index("READY=1") >= 0, 60, what="READY=1")
    ready = systemd.heard[systemd.index("READY=1")]
    assert "STATUS=0/2 workers busy, 0 jobs in the last minute" in ready.splitlines()
    assert len(d.workers()) == 2  # every worker up before READY=1
    # Pings every third of the watchdog's 1.5 s, from the loop.
    poll(lambda: sum("WATCHDOG=1" in m.splitlines() for m in systemd.hear()) >= 4, 30, what="4 watchdog pings")
    d.send_signal(signal.SIGHUP)
    poll(lambda: systemd.index("RELOADING=1") >= 0, 30, what="RELOADING=1")
    poll(lambda: systemd.index("READY=1", after=systemd.index("RELOADING=1")) >= 0, 30, what="READY=1 after it")
    publish(moto, deployment, "chaos", "chaos:echo:s")
    Inbox(moto, deployment.results_queue_url).wait(1)
    # The status line follows the work, at most every 5 s.
    poll(lambda: any("jobs in the last minute" in m and "1 jobs" in m for m in systemd.hear()), 30,
         what="a status line counting the job")
    assert d.stop() == 0
    assert systemd.index("STOPPING=1") > systemd.index("READY=1")


def test_healthz_and_readyz_follow_a_bus_outage(moto: MotoServer, deployment: Deployment, cfg_path: Path,
                                                daemons: list[Daemon]) -> None:
    from tests.harness.awsfaults import UNAVAILABLE, AwsFaults

    port = free_port()

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    with AwsFaults(moto.port) as faults:
        bus = {"region": "us-east-1", "endpoint_url": faults.url, "input": {"queue": deployment.queue_url},
               "output": {"topic": deployment.results_topic}}
        d = Daemon(write_config(cfg_path, moto, deployment, bus=bus,
                                metrics={"address": "127.0.0.1", "port": port}), moto)
        daemons.append(d.start())
        assert poll(lambda: get("/readyz") == (200, "ready\n"), 30, what="ready")
        assert get("/healthz") == (200, "ok\n")
        assert get("/metrics")[0] == 200 and get("/nothing")[0] == 404
        faults.fail({"sqs:ReceiveMessage"}, UNAVAILABLE, run=0)
        poll(lambda: get("/readyz")[0] == 503, 60, what="not ready during the outage")
        code, why = get("/readyz")
        assert code == 503 and why.startswith("the last receive failed: ") and why.count("\n") == 1, why
        assert get("/healthz") == (200, "ok\n")  # the loop still turns
        faults.clear()
        poll(lambda: get("/readyz") == (200, "ready\n"), 90, what="ready again after the outage")
        assert d.stop() == 0
