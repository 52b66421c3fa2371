"""sesshu.jobs.outcomes: one line per outcome, with every untrusted field masked, escaped and bounded."""

from __future__ import annotations

import json
import logging

import pytest

from sesshu.daemon.logs import JsonFormatter
from sesshu.jobs.outcomes import DETAIL_CHARS, Outcomes


def outcome_record(caplog: pytest.LogCaptureFixture, outcome: str, plugin: str | None, target: str | None,
                   **kw: object) -> logging.LogRecord:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sesshu"):
        Outcomes().record(outcome, "m-1", plugin, target, **kw)  # type: ignore[arg-type]
    (rec,) = caplog.records
    return rec


@pytest.mark.parametrize("target, expected", [
    ("https://user:password@example.com/x", "https://***@example.com/x"),
    ("http://token@example.com:8080/", "http://***@example.com:8080/"),
    ("https://user:p@ssw0rd@example.com/", "https://***@example.com/"),
    ("https://example.com/?mail=a@b.c", "https://example.com/?mail=a@b.c"),
    ("chaos:echo:x", "chaos:echo:x"),
    ("a\r\n2099-01-01 00:00:00,000 [1] INFO x", "a\\r\\n2099-01-01 00:00:00,000 [1] INFO x"),
    ("\u202egnp.exe", "\\u202egnp.exe"),
])
def test_targets_are_masked_and_escaped(caplog: pytest.LogCaptureFixture, target: str, expected: str) -> None:
    rec = outcome_record(caplog, "done", "chaos", target, duration=0.5)
    assert rec.getMessage() == f"done: chaos {expected}: result published in 0.500 s; message m-1 deleted"
    assert rec.sesshu["target"] == expected  # type: ignore[attr-defined]


def test_the_error_detail_never_repeats_a_password(caplog: pytest.LogCaptureFixture) -> None:
    target = "https://user:hunter2@example.com/"
    detail = f"validate raised ValueError: bad target {target!r}\nsecond line"
    rec = outcome_record(caplog, "rejected", "chaos", target, reason="invalid", detail=detail)
    text = rec.getMessage()
    assert "hunter2" not in text and "user:" not in text
    assert text.isprintable()
    assert text.endswith("second line; message m-1 left for the dead-letter queue")


def test_plugin_names_and_long_details_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    rec = outcome_record(caplog, "retried", "p\n" * 500, "t", reason="crash", detail="d\x00" * 5000)
    text = rec.getMessage()
    assert text.isprintable()
    assert len(text) < 200 + DETAIL_CHARS + 100
    assert len(rec.sesshu["plugin"]) <= 200  # type: ignore[attr-defined]


def test_a_request_without_plugin_or_target(caplog: pytest.LogCaptureFixture) -> None:
    rec = outcome_record(caplog, "rejected", None, None, reason="invalid", detail="body is not valid JSON")
    assert rec.getMessage() == "rejected: request: body is not valid JSON; message m-1 left for the dead-letter queue"


def test_json_line_of_an_outcome_with_a_lone_surrogate(caplog: pytest.LogCaptureFixture) -> None:
    rec = outcome_record(caplog, "rejected", "chaos", "x\ud800", reason="invalid", detail="y\udfff")
    line = JsonFormatter().format(rec)
    assert line.isascii()
    doc = json.loads(line)
    assert doc["target"] == "x\\ud800" and doc["outcome"] == "rejected"


def test_counts() -> None:
    o = Outcomes()
    o.record("done", "m", "chaos", "t")
    o.record("rejected", "m", None, None, reason="invalid", detail="x")
    assert (o.total("done"), o.total("rejected"), o.reasons["rejected:invalid"]) == (1, 1, 1)
