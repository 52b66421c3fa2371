"""The reporter: readiness and the status line, from the facts of a turn, on a fake clock."""

from __future__ import annotations

import socket
from pathlib import Path

from sesshu.daemon.metrics import Metrics
from sesshu.daemon.notify import Notifier
from sesshu.daemon.report import Facts, Reporter, health_of


def facts(now: float = 100.0, **changes: object) -> Facts:
    base: dict[str, object] = {"now": now, "stopping": False, "size": 4, "up": 4, "busy": 1, "in_flight": 2,
                               "finished": 0, "receiving": True, "last_error": ""}
    base.update(changes)
    return Facts(**base)  # type: ignore[arg-type]


def test_health_says_why_it_is_not_ready() -> None:
    assert health_of(facts()).ready
    assert health_of(facts(stopping=True)).why == "stopping"
    assert health_of(facts(up=3)).why == "1 of 4 workers not up"
    assert health_of(facts(receiving=None)).why == "no receive has come back yet"
    assert health_of(facts(receiving=False, last_error="ServiceUnavailable: down")).why == \
        "the last receive failed: ServiceUnavailable: down"


def test_ready_once_and_jobs_counted_over_the_last_minute(tmp_path: Path) -> None:
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.bind(str(tmp_path / "notify"))
    systemd.setblocking(False)
    metrics = Metrics()
    reporter = Reporter(Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")}), metrics)
    reporter.turn(facts(up=2))
    assert not metrics.health.ready and metrics.health.why == "2 of 4 workers not up"
    reporter.turn(facts(101.0, finished=5))
    reporter.turn(facts(102.0, finished=6))
    heard = []
    while True:
        try:
            heard.append(systemd.recv(4096).decode())
        except BlockingIOError:
            break
    assert sum("READY=1" in m for m in heard) == 1 and metrics.health.ready
    assert reporter.status() == "1/4 workers busy, 6 jobs in the last minute"
    reporter.turn(facts(170.0, finished=9, last_error="Throttling: slow down"))
    # Samples older than a minute go, but for the latest of them: 9 outcomes now against 6 at 102 s.
    assert reporter.status() == "1/4 workers busy, 3 jobs in the last minute; last bus error: Throttling: slow down"
