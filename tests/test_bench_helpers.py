"""The bench's own helpers that its fairness rests on: SNS's batch limit in the raw loop, config keys by --check."""

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
