"""The bench's own helpers that its fairness rests on: SNS's batch limit in the raw loop, config keys by --check,
and a server that deletes safely from several threads."""

from __future__ import annotations

from pathlib import Path

import yaml

from bench.rawloop import BATCH_BYTES, batches
from bench.sesshud import accepts, write_config


def test_raw_loop_batches_stay_within_sns_limits() -> None:
    assert [len(g) for g in batches(["x" * 100] * 23)] == [10, 10, 3]
    big = ["x" * 200 * 1024] * 4
    assert [len(g) for g in batches(big)] == [1, 1, 1, 1]
    mixed = ["x" * 100 * 1024, "y" * 100 * 1024, "z" * 100 * 1024, "s"]
    groups = list(batches(mixed))
    assert [d for g in groups for d in g] == mixed  # order kept, nothing lost
    assert all(sum(len(d) for d in g) <= BATCH_BYTES for g in groups)
    assert [len(g) for g in groups] == [2, 2]


def test_write_config_merges_bus_keys(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", endpoint="http://127.0.0.1:9", queue="q", topic="t",
                        bus={"output": {"s3_bucket": "b"}, "senders": 3})
    bus = yaml.safe_load(path.read_text())["bus"]
    assert bus["output"] == {"topic": "t", "s3_bucket": "b"}
    assert bus["senders"] == 3 and bus["input"] == {"queue": "q"}


def test_accepts_asks_the_daemon(tmp_path: Path) -> None:
    assert accepts({"output": {"s3_prefix": "bench/"}}, tmp_path)
    assert not accepts({"no_such_key_for_the_bench": 1}, tmp_path)


def test_the_feeder_sends_a_top_up_side_by_side_and_exactly_what_is_missing() -> None:
    """One batch at a time, the feeder fell behind a daemon at full speed and the bench measured the feeder."""
    import threading

    from bench.feeder import Feeder

    together = threading.Barrier(4, timeout=30)  # breaks (and fails the test) unless four sends overlap
    sent: list[list[str]] = []

    class Server:
        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, object]:
            together.wait()
            sent.append([e["MessageBody"] for e in Entries])
            return {"Successful": Entries}

    feeder = Feeder("http://127.0.0.1:9", "q", str, visible=50, total=1000)
    feeder._sqs = Server()
    try:
        feeder._top_up(visible=14)  # 36 missing: 10, 10, 10 and 6, all four in flight at once
    finally:
        feeder.stop()
    assert sorted(len(b) for b in sent) == [6, 10, 10, 10]
    assert sorted(int(m) for b in sent for m in b) == list(range(36))
    assert feeder.sent == 36

    last = Feeder("http://127.0.0.1:9", "q", str, visible=50, total=3, senders=1)
    last._sqs = Server()
    together = threading.Barrier(1)
    sent.clear()
    try:
        last._top_up(visible=0)  # never more than the total
    finally:
        last.stop()
    assert sent == [["0", "1", "2"]] and last.sent == 3


def test_a_miss_past_the_knee_says_how_full_the_cores_were() -> None:
    from bench.io_scaling import _full_note

    def window(rate: float, cores: float, jobs: int = 1000) -> dict[str, object]:
        seconds = jobs / rate
        return {"rate": rate, "jobs": jobs, "cpu": {"moto": cores * seconds / 2, "sesshud master": cores * seconds / 2}}

    kept = {32: [window(220, 1.80), window(210, 1.84)], 128: [window(215, 1.86), window(205, 1.86)]}
    said = _full_note(kept, 32, 128)
    assert "already used 1.82 of" in said
    assert "8.47 ms at 32 workers, 8.86 at 128" in said
    assert "(by process: moto 4.24 -> 4.43, sesshud master 4.24 -> 4.43)" in said


def test_requests_per_job_count_jobs_as_the_proxy_saw_results_published() -> None:
    from bench.requests_per_job import published_results

    entries = {"sns:PublishBatch": 597, "sns:Publish": 3, "sqs:DeleteMessageBatch": 600, "sqs:ReceiveMessage": 600}
    assert published_results(entries) == 600
    assert published_results({}) == 0
