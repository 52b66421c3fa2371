"""The supervisor in-process: real forkserver children, the in-memory bus, the chaos plugin.

``Supervisor.run()`` installs signal handlers, so these tests drive the loop
themselves: ``pool.maintain()``, then ``tick()`` until a condition holds.
Also the sender's batch logic (``busio.send_batch``) against a fake bus.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from sesshu.bus.api import BusError, Message, QueueInfo, Visibility
from sesshu.bus.memory import MemoryBus
from sesshu.bus.payloads import pointer_body
from sesshu.config.model import Config, from_mapping
from sesshu.daemon.assemble import MAX_RESULT_BYTES, plugin_specs, pool_settings
from sesshu.daemon.supervisor import Supervisor
from sesshu.pool.pool import Pool
from sesshu.pool.spawn import forkserver_context

TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"
DEADLINE = 20.0  # generous: only a broken supervisor ever waits this long


@dataclass
class RecordingBus(MemoryBus):
    """A MemoryBus that remembers what it was asked to receive and release, and when."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.asked: list[int] = []  # max_messages of each receive
        self.releases: list[Visibility] = []
        self.release_times: dict[str, list[float]] = {}  # message id: monotonic times, before the call
        self.receive_times: dict[str, list[float]] = {}  # message id: monotonic times, after the call
        self.on_receive: Callable[[int], None] | None = None

    def receive(self, max_messages: int, wait_seconds: int) -> list[Message]:
        self.asked.append(max_messages)
        if self.on_receive is not None:
            self.on_receive(max_messages)
        got = super().receive(max_messages, wait_seconds)
        now = time.monotonic()
        for m in got:
            self.receive_times.setdefault(m.message_id, []).append(now)
        return got

    def change_visibility(self, entries: list[Visibility]) -> dict[str, str]:
        now = time.monotonic()
        for v in entries:
            self.release_times.setdefault(v.receipt_handle.split("#")[0], []).append(now)
        self.releases.extend(entries)
        return super().change_visibility(entries)

    def released(self, message_id: str) -> list[int]:
        """The visibility timeouts set on one message, in order."""
        return [v.seconds for v in self.releases if v.receipt_handle.split("#")[0] == message_id]


def request(target: str, plugin: str = "chaos") -> str:
    return json.dumps({"plugin": plugin, "target": target})


def make_config(plugin: list[Any] | None = None, **workers: Any) -> Config:
    settings: dict[str, Any] = {"count": 2, "timeout": 2, "polling": {"interval": 1},
                                "retry": {"delay": 1, "max_delay": 4}, "shutdown_timeout": 10}
    settings.update(workers)
    return from_mapping({
        "plugin": plugin or ["chaos"],
        "plugin_path": [str(TEST_PLUGINS)],
        "workers": settings,
        "bus": {"input": {"queue": "memory-requests"}, "output": {"topic": "memory-results"}},
    })


class Rig:
    """One supervisor, its pool of real children and its bus, driven tick by tick."""

    def __init__(self, bus: MemoryBus, config: Config, queue_info: QueueInfo | None = None) -> None:
        self.bus = bus
        self.config = config
        specs = plugin_specs(config)
        assert specs[0][1] == "file"  # the chaos plugin, from plugin_path
        self.pool = Pool(forkserver_context(), pool_settings(config, specs), time.monotonic)
        self.sup = Supervisor(config, bus, self.pool, queue_info=queue_info)
        self.closed = False
        self.pool.maintain()

    def tick_until(self, condition: Callable[[], Any], what: str, timeout: float = DEADLINE,
                   check: Callable[[], None] | None = None) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := condition()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout} s waiting for {what} (held "
                                   f"{len(self.sup.held)}, busy {self.pool.busy_count()}, "
                                   f"polling {self.sup.intake.busy})")
            self.sup.tick()
            if check is not None:
                check()
        return value

    def full_strength(self) -> bool:
        return len(self.pool.idle()) == self.pool.size and len(self.pool.children) == self.pool.size

    def stop(self, graceful: bool = True) -> None:
        self.sup.begin_stop(graceful)
        try:
            self.tick_until(self.sup.finished, "the supervisor to finish")
        finally:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.sup.close()
        # The lanes may still be inside a bus call; the wake-up pipe must
        # outlive them, or a late wake() would write into a recycled fd.
        if self.sup.intake.join(5.0) and self.sup.sender.join(5.0):
            self.sup.signals.close()


@pytest.fixture
def rigs() -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(bus: MemoryBus, config: Config | None = None, queue_info: QueueInfo | None = None) -> Rig:
        rig = Rig(bus, config or make_config(), queue_info)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        if not rig.closed:
            try:
                rig.stop(graceful=False)
            finally:
                rig.close()


def document(raw: str) -> dict[str, Any]:
    doc = json.loads(raw)
    assert isinstance(doc, dict)
    return doc


# -- outcomes ----------------------------------------------------------------


def test_done_is_published_then_deleted(rigs: Callable[..., Rig]) -> None:
    bus = RecordingBus()
    rig = rigs(bus, make_config(plugin=[{"name": "chaos", "options": {"colour": "blue"}}]))
    bus.send(request("chaos:echo:hello"))
    rig.tick_until(lambda: rig.sup.outcomes.total("done") == 1, "the job to be done")
    assert bus.depth() == 0
    assert len(bus.published) == 1
    raw = bus.published[0]
    result = {"echo": "hello", "pid": document(raw)["result"]["pid"], "options": {"colour": "blue"}}
    # The exact document, key order and compact result bytes included.
    assert raw == ('{"target":"chaos:echo:hello","plugin":"chaos","message_id":"m-1","result":'
                   + json.dumps(result, separators=(",", ":")) + "}")
    assert result["pid"] in {c.pid for c in rig.pool.children}
    assert bus.releases == []
    rig.stop()
    assert rig.sup.outcomes.counts == {("chaos", "done"): 1}


def test_empty_is_deleted_without_publishing(rigs: Callable[..., Rig]) -> None:
    bus = RecordingBus()
    rig = rigs(bus)
    bus.send(request("chaos:none"))
    rig.tick_until(lambda: rig.sup.outcomes.total("empty") == 1, "the empty outcome")
    assert bus.depth() == 0
    assert bus.published == []
    assert bus.releases == []
    rig.stop()
    assert rig.sup.outcomes.counts == {("chaos", "empty"): 1}


def test_rejected_messages_reach_the_dead_letter_queue(rigs: Callable[..., Rig]) -> None:
    bus = RecordingBus(max_receive_count=2)
    rig = rigs(bus, queue_info=bus.queue_info())
    bodies = [request("chaos:invalid"), "this is not JSON", request("x", plugin="os")]
    ids = [bus.send(b) for b in bodies]
    rig.tick_until(lambda: len(bus.dead) == 3, "three messages in the DLQ")
    assert sorted(bus.dead) == sorted(bodies)
    assert bus.depth() == 0
    assert bus.published == []
    for mid in ids:  # released at once each time: the redrive needs the fewest receives
        assert bus.released(mid) == [0, 0]
    rig.stop()
    assert rig.sup.outcomes.total("rejected") == 6
    assert rig.sup.outcomes.reasons == {"rejected:invalid": 6}
    assert rig.sup.outcomes.counts == {("chaos", "rejected"): 2, ("-", "rejected"): 4}


def test_rejected_without_a_dead_letter_queue_backs_off(rigs: Callable[..., Rig]) -> None:
    bus = RecordingBus()
    rig = rigs(bus, make_config(retry={"delay": 1, "max_delay": 4}))
    mid = bus.send(request("chaos:invalid"))
    rig.tick_until(lambda: bus.released(mid), "the rejected message to be released")
    assert bus.released(mid) == [1]  # not 0: no hot loop through the children
    assert rig.sup.outcomes.total("rejected") == 1
    # It comes back only after its delay, and the next delay doubles.
    rig.tick_until(lambda: len(bus.released(mid)) == 2, "the second rejection")
    first_release, second_receive = bus.release_times[mid][0], bus.receive_times[mid][1]
    assert second_receive - first_release >= 0.99
    assert bus.released(mid) == [1, 2]
    assert rig.sup.outcomes.total("rejected") == 2
    assert bus.dead == [] and bus.depth() == 1
    rig.stop()


def test_rejected_without_a_dead_letter_queue_never_released_at_once(rigs: Callable[..., Rig]) -> None:
    bus = RecordingBus()
    rig = rigs(bus, make_config(retry={"delay": 0.5, "max_delay": 4}))
    mid = bus.send(request("chaos:invalid"))
    rig.tick_until(lambda: bus.released(mid), "the rejected message to be released")
    assert bus.released(mid)[0] >= 1


def test_crashing_jobs_are_retried_and_the_pool_recovers(rigs: Callable[..., Rig],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sesshu")
    bus = RecordingBus()
    # A long retry delay keeps the crashing messages away for the rest of the test.
    rig = rigs(bus, make_config(retry={"delay": 60, "max_delay": 60}))
    rig.tick_until(rig.full_strength, "two idle workers")
    first_pids = {c.pid for c in rig.pool.children}
    exit_id = bus.send(request("chaos:exit"))
    segv_id = bus.send(request("chaos:segv"))
    rig.tick_until(lambda: rig.sup.outcomes.total("retried") == 2, "two retried outcomes")
    rig.tick_until(lambda: len(bus.releases) == 2, "the two messages to be released")
    assert rig.sup.outcomes.reasons == {"retried:crashed": 2}
    assert rig.pool.restarts.counts == {"crashed": 2}
    assert bus.released(exit_id) == [60] and bus.released(segv_id) == [60]
    text = caplog.text
    assert "exited with status 7; message " + exit_id + " will be retried" in text
    assert "killed by SIGSEGV; message " + segv_id + " will be retried" in text
    rig.tick_until(rig.full_strength, "the pool back at full strength")
    assert not first_pids & {c.pid for c in rig.pool.children}
    # The new children work.
    bus.send(request("chaos:echo:after"))
    rig.tick_until(lambda: rig.sup.outcomes.total("done") == 1, "a job on the new children")
    rig.stop()
    assert rig.sup.outcomes.counts == {("chaos", "retried"): 2, ("chaos", "done"): 1}


@pytest.mark.parametrize("action", ["hang", "spin"])
def test_late_jobs_are_killed_retried_and_replaced(action: str, rigs: Callable[..., Rig],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sesshu")
    bus = RecordingBus()
    config = make_config(plugin=[{"name": "chaos", "timeout": 0.3}], retry={"delay": 60, "max_delay": 60})
    rig = rigs(bus, config)
    rig.tick_until(rig.full_strength, "two idle workers")
    first_pids = {c.pid for c in rig.pool.children}
    mid = bus.send(request(f"chaos:{action}"))
    rig.tick_until(lambda: rig.sup.outcomes.total("retried") == 1, "the timeout")
    assert rig.sup.outcomes.reasons == {"retried:timeout": 1}
    assert f"plugin chaos timed out after 0.3 s on chaos:{action}; message {mid} will be retried" in caplog.text
    # "spin" ignores SIGTERM: only the SIGKILL after the grace ends it.
    rig.tick_until(lambda: rig.full_strength() and len(first_pids & {c.pid for c in rig.pool.children}) == 1,
                   "the late child to be replaced")
    assert rig.pool.restarts.counts == {"timeout": 1}
    rig.stop()


def test_held_messages_never_exceed_idle_children_plus_prefetch(rigs: Callable[..., Rig]) -> None:
    bus = RecordingBus()
    rig = rigs(bus, make_config(count=2, prefetch=1))
    capacity = rig.config.worker_count + rig.config.prefetch
    holding: list[int] = []  # messages held (or asked for) at each receive
    bus.on_receive = lambda n: holding.append(len(rig.sup.held) + n)

    def invariant() -> None:
        assert len(rig.sup.held) <= len(rig.pool.idle()) + rig.config.prefetch

    for i in range(12):
        bus.send(request(f"chaos:sleep:0.0{i % 5}"))
    rig.tick_until(lambda: rig.sup.outcomes.total("done") == 12, "twelve jobs done", check=invariant)
    assert bus.asked and max(bus.asked) <= capacity
    assert max(holding) <= capacity
    assert len(bus.published) == 12 and bus.depth() == 0
    rig.stop()


def test_begin_stop_releases_held_messages_and_stops_receiving(rigs: Callable[..., Rig]) -> None:
    bus = RecordingBus()
    rig = rigs(bus, make_config(count=2, prefetch=2))
    rig.tick_until(rig.full_strength, "two idle workers")
    ids = [bus.send(request("chaos:sleep:1.5")) for _ in range(4)]
    # How many are held depends on how the receives fell; at least one is.
    rig.tick_until(lambda: rig.sup.held and rig.pool.busy_count() == 2 and not rig.sup.intake.busy,
                   "two running jobs and a held message")
    held = {t.message.message_id for t in rig.sup.held}
    receives = len(bus.asked)
    rig.stop()
    assert len(bus.asked) == receives  # no receive after begin_stop
    for mid in held:
        assert bus.released(mid) == [0]
    assert {document(d)["target"] for d in bus.published} == {"chaos:sleep:1.5"}
    assert len(bus.published) == 2  # the running jobs finished: a graceful stop
    for mid in set(ids) - held:
        assert bus.released(mid) == []
    assert rig.sup.outcomes.counts == {("chaos", "done"): 2, ("chaos", "retried"): len(held)}
    assert rig.sup.outcomes.reasons == {"retried:shutdown": len(held)}
    assert not rig.sup.held and not rig.pool.children
    # The released messages are visible again at once; they had been received once.
    back = {m.message_id: m.receive_count for m in bus.receive(10, 0)}
    assert held <= set(back) and {back[mid] for mid in held} == {2}


def test_outcome_counts_of_a_mixed_batch(rigs: Callable[..., Rig]) -> None:
    bus = RecordingBus(max_receive_count=2)
    rig = rigs(bus, make_config(retry={"delay": 60, "max_delay": 60}), queue_info=bus.queue_info())
    for body in (request("chaos:echo:a"), request("chaos:echo:b"), request("chaos:none"),
                 request("chaos:invalid"), "{garbage", request("x", plugin="nope"),
                 request("chaos:raise"), request("chaos:unserialisable")):
        bus.send(body)
    outcomes = rig.sup.outcomes
    rig.tick_until(lambda: (outcomes.total("done"), outcomes.total("empty"), len(bus.dead),
                            outcomes.total("retried")) == (2, 1, 3, 2), "every outcome")
    rig.stop()
    assert outcomes.counts == {("chaos", "done"): 2, ("chaos", "empty"): 1, ("chaos", "rejected"): 2,
                               ("-", "rejected"): 4, ("chaos", "retried"): 2}
    assert outcomes.reasons == {"rejected:invalid": 6, "retried:fetch_error": 1,
                                "retried:unserialisable": 1}
    assert sorted(document(d)["result"]["echo"] for d in bus.published) == ["a", "b"]
    assert bus.depth() == 2  # the two retried messages wait out their delay


def test_a_result_document_over_the_topic_limit_is_retried(rigs: Callable[..., Rig]) -> None:
    bus = RecordingBus()
    rig = rigs(bus, make_config(retry={"delay": 60, "max_delay": 60}))
    # The plugin's result fits the child's limit; wrapped with target and plugin it is too big for SNS.
    mid = bus.send(request(f"chaos:big:{MAX_RESULT_BYTES - 10}"))
    rig.tick_until(lambda: bus.released(mid), "the message to be released")
    assert bus.released(mid) == [60]
    assert rig.sup.outcomes.reasons == {"retried:too_large": 1}
    assert bus.published == []
    rig.stop()


FORGER = '''
import gc
import sys
import time
from multiprocessing.connection import Connection


def validate(target):
    pass


def fetch(target):
    # Untrusted plugin code can reach its child's pipe and forge a frame.
    job = sys._getframe(1).f_locals["job"]
    for obj in gc.get_objects():
        if isinstance(obj, Connection) and not obj.closed:
            obj.send_bytes(b'{"op": "result", "job": %d, "status": "done", "error": ""}\\n\\xff' % job.job_id)
    time.sleep(60)
'''


def test_a_forged_result_frame_costs_only_the_child(rigs: Callable[..., Rig], tmp_path: Path) -> None:
    (tmp_path / "forger.py").write_text(FORGER)
    config = from_mapping({
        "plugin": ["forger"], "plugin_path": [str(tmp_path)],
        "workers": {"count": 1, "timeout": 5, "polling": {"interval": 1}, "retry": {"delay": 60}},
        "bus": {"input": {"queue": "memory-requests"}, "output": {"topic": "memory-results"}},
    })
    bus = RecordingBus()
    rig = rigs(bus, config)
    bus.send(request("anything", plugin="forger"))
    rig.tick_until(lambda: rig.sup.outcomes.total("retried") == 1, "the forged result to be refused")
    assert bus.published == []
    rig.stop()


def test_assigning_to_a_child_that_died_while_idle_gives_the_job_back(rigs: Callable[..., Rig]) -> None:
    """The OOM killer or an operator may kill an idle worker between the wait and the dispatch."""
    from sesshu.pool.protocol import Job

    bus = RecordingBus()
    rig = rigs(bus, make_config())
    rig.tick_until(rig.full_strength, "two idle workers")
    victim = rig.pool.idle()[0]
    os.kill(victim.pid, signal.SIGKILL)
    victim.process.join(10)  # dead, but the supervisor has not noticed yet
    assert rig.pool.assign(victim, Job(1, "chaos", "chaos:echo:x"), "m-1", 5) is False
    assert victim.running is None
    # The loop then reaps it and the pool recovers; a real job still runs.
    mid = bus.send(request("chaos:echo:after"))
    rig.tick_until(lambda: bus.published and bus.depth() == 0, "the next job to be published and deleted")
    assert document(bus.published[0])["result"]["echo"] == "after"
    assert mid
    rig.tick_until(rig.full_strength, "the pool back at full strength")
    rig.stop()


def test_watchdog_replaces_a_stalled_poller(rigs: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """A receive that outlives all its timeouts (a half-open socket) must not stop the daemon."""
    import threading

    import sesshu.bus.intake as intake_module

    monkeypatch.setattr(intake_module, "STALL_SLACK", 0.5)
    caplog.set_level(logging.ERROR, logger="sesshu")
    stuck = threading.Event()
    release = threading.Event()
    bus = RecordingBus()

    def hang_first(max_messages: int) -> None:
        if not stuck.is_set():
            stuck.set()
            release.wait(30)  # the first receive hangs, as on a half-open connection

    bus.on_receive = hang_first
    rig = rigs(bus, make_config())
    rig.tick_until(stuck.is_set, "the first receive to hang")
    (first,) = [lane for lane in rig.sup.intake.lanes.lanes if lane.busy]  # the queue is not deep: one receive
    bus.send(request("chaos:echo:through"))
    rig.tick_until(lambda: bus.published, "a result through a new poller")
    assert first not in rig.sup.intake.lanes.lanes and first in rig.sup.intake.abandoned
    assert "polling has stalled" in caplog.text
    release.set()  # the abandoned receive still completes, and is handled as usual
    rig.tick_until(lambda: not first.busy, "the late completion to be handled")
    rig.stop()


def test_workers_that_keep_dying_are_respawned_with_backoff(rigs: Callable[..., Rig],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sesshu")
    rig = rigs(RecordingBus(), make_config(plugin=["doomed"]))
    seen: set[int] = set()

    def watch() -> None:
        seen.update(c.slot_pid for c in rig.pool.children)

    window = time.monotonic() + 4.0
    rig.tick_until(lambda: time.monotonic() > window, "a 4 s window", timeout=10, check=watch)
    # Each worker lives 0.3 s: without backoff, two workers would start about 26 times in 4 s.
    # The backoff (0.1 s, doubling) allows about 6.
    assert 3 <= len(seen) <= 10, seen
    assert "workers keep dying at start-up; next start in" in caplog.text
    rig.stop()


def test_while_publishes_are_throttled_no_message_is_held_beyond_the_idle_slots(rigs: Callable[..., Rig]) -> None:
    class Throttled(RecordingBus):
        refusals = 6

        def publish(self, entries: list[Any]) -> dict[str, str]:
            if self.refusals > 0:
                self.refusals -= 1
                raise BusError("publish: Rate exceeded", "Throttling")
            return super().publish(entries)

    bus = Throttled()
    rig = rigs(bus, make_config(count=2, prefetch=5))
    asks: list[tuple[bool, int, int]] = []  # (backing off, room asked for, idle slots less held messages)
    poll = rig.sup.intake.poll

    def watched_poll(room: int, held: int, full: int) -> None:
        asks.append((rig.sup.sender.backing_off(), room, len(rig.pool.idle()) - held))
        poll(room, held, full)

    rig.sup.intake.poll = watched_poll  # type: ignore[method-assign]
    for i in range(20):
        bus.send(request(f"chaos:echo:{i}"))
    rig.tick_until(lambda: rig.sup.outcomes.total("done") == 20, "twenty jobs done")
    assert bus.refusals == 0
    throttled = [(room, idle) for backing_off, room, idle in asks if backing_off]
    assert throttled and all(room <= idle for room, idle in throttled), throttled  # no prefetch meanwhile
    assert any(room > idle for backing_off, room, idle in asks if not backing_off)  # prefetch otherwise
    assert sorted(document(d)["target"] for d in bus.published) == sorted(f"chaos:echo:{i}" for i in range(20))
    assert rig.sup.outcomes.total("retried") == 0  # no job was done twice for the bus's sake
    rig.stop()


class FlakyS3Bus(RecordingBus):
    """S3 throttles every read of a stored request."""

    def get_object(self, bucket: str, key: str, max_bytes: int) -> str:
        raise BusError("get_object: slow down", "SlowDown")


def test_requests_stored_in_s3_are_read_in_the_lane_and_what_cannot_be_read_is_settled(
        rigs: Callable[..., Rig]) -> None:
    """Read: processed. Missing: rejected. S3 failing for now: retried (payload_error), for redelivery."""
    bus = RecordingBus()
    config = replace(make_config(), input_s3_buckets=("requests",))
    rig = rigs(bus, config)
    bus.objects[("requests", "k")] = request("chaos:echo:stored")
    size = {"ExtendedPayloadSize": "50"}
    bus.send(pointer_body("requests", "k"), size)
    bus.send(pointer_body("requests", "gone"), size)
    rig.tick_until(lambda: rig.sup.outcomes.total("done") == 1 and rig.sup.outcomes.reasons, "both outcomes")
    assert set(rig.sup.outcomes.reasons) == {"rejected:invalid"} and rig.sup.outcomes.total("done") == 1
    assert json.loads(bus.published[0])["target"] == "chaos:echo:stored"

    flaky = FlakyS3Bus()
    rig = rigs(flaky, config)
    flaky.send(pointer_body("requests", "k"), size)
    rig.tick_until(lambda: sum(rig.sup.outcomes.counts.values()) == 1, "an outcome")
    assert set(rig.sup.outcomes.reasons) == {"retried:payload_error"}


def test_a_released_fifo_message_takes_the_held_rest_of_its_group_with_it(rigs: Callable[..., Rig]) -> None:
    """a1 fails and is released: a2, received with it and held behind it, must not overtake it."""
    bus = RecordingBus()
    # Both are queued before the first receive, which asks for two even before the worker is
    # up (prefetch 2), so it takes both: one that took a1 alone would leave a2 on the queue,
    # which delivers nothing more of the group while a1 is out.
    first = bus.send(request("chaos:raise"), group_id="a")
    second = bus.send(request("chaos:echo:a2"), group_id="a")
    rig = rigs(bus, make_config(count=1, prefetch=2))  # one worker: a2 waits, held, while a1 runs
    rig.tick_until(lambda: rig.sup.outcomes.reasons["retried:group_order"] >= 1, "a2 released behind a1")
    assert rig.sup.outcomes.reasons["retried:fetch_error"] >= 1
    assert first != second


def test_a_sighup_reloads_only_while_the_daemon_is_not_stopping(rigs: Callable[..., Rig],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload started while stopping would propose a probe slot to a pool that is being emptied."""
    rig = rigs(MemoryBus())
    reloads: list[int] = []
    monkeypatch.setattr(rig.sup.reloader, "reload", lambda: reloads.append(1))
    rig.sup.handle_hup()
    assert reloads == [1]
    rig.sup.begin_stop(graceful=True)
    rig.sup.handle_hup()
    assert reloads == [1]
