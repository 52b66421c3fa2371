"""systemd's notify protocol, against a real datagram socket, on a fake clock."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from sesshu.daemon.notify import STALL, STATUS_EVERY, Health, Notifier
from tests.harness.clock import FakeClock


@pytest.fixture
def systemd(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    return sock


def heard(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.active and notifier.watchdog_every is None
    notifier.ready("x")
    notifier.turn(lambda: "y")  # nothing to send to, and no error


def test_ready_reloading_stopping_and_status(systemd: socket.socket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": systemd.getsockname()})
    notifier.ready("2/4 workers busy")
    notifier.reloading()
    notifier.stopping()
    assert heard(systemd) == ["READY=1\nSTATUS=2/4 workers busy", "RELOADING=1\nSTATUS=reloading the config",
                              "STOPPING=1\nSTATUS=stopping"]


def test_an_abstract_socket_is_named_with_an_at_sign() -> None:
    name = f"sesshu-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    Notifier({"NOTIFY_SOCKET": "@" + name}).ready("up")
    assert heard(sock) == ["READY=1\nSTATUS=up"]


def test_watchdog_pings_every_third_of_its_timeout_and_status_only_when_it_changed(systemd: socket.socket) -> None:
    clock = FakeClock()
    notifier = Notifier({"NOTIFY_SOCKET": systemd.getsockname(), "WATCHDOG_USEC": "3000000"}, clock)
    assert notifier.watchdog_every == 1.0
    status = ["idle"]
    notifier.turn(lambda: status[0])
    assert heard(systemd) == ["WATCHDOG=1\nSTATUS=idle"]
    clock.now += 0.5
    notifier.turn(lambda: status[0])
    assert heard(systemd) == []  # neither is due
    clock.now += 0.5
    notifier.turn(lambda: status[0])
    assert heard(systemd) == ["WATCHDOG=1"]
    status[0] = "busy"
    clock.now = 100.0 + STATUS_EVERY
    notifier.turn(lambda: status[0])
    assert heard(systemd) == ["WATCHDOG=1\nSTATUS=busy"]


@pytest.mark.parametrize("environ", [{"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "soon"},
                                     {"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}])
def test_a_watchdog_that_is_not_ours_is_not_pinged(systemd: socket.socket, environ: dict[str, str]) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": systemd.getsockname(), **environ}, FakeClock())
    assert notifier.watchdog_every is None
    notifier.turn(lambda: "s")
    assert heard(systemd) == ["STATUS=s"]


def test_a_socket_that_went_away_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    for _ in range(3):
        notifier.ready("x")
    assert caplog.text.count("cannot notify systemd") == 1


def test_health_is_live_while_the_loop_turns() -> None:
    health = Health(100.0, True, "")
    assert health.live(100.0 + STALL - 0.1) and not health.live(100.0 + STALL)
