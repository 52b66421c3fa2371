"""sesshu.logs: text lines that cannot be forged, JSON lines that cannot break."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sesshu import logs

FORGED = "https://x/\r\n2099-01-01 00:00:00,000 [1] INFO sesshu.outcome: done: forged"
HOSTILE = [FORGED, "\x1b[2J\x1b[31mred", "a\x85b", "a\u2028b", "a\u2029b", "\u202egnp.exe", "\x00",
           "lone \ud800 surrogate", "\udcff", "tab\there"]


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root logger, put back as it was after the test."""
    logger = logging.getLogger()
    handlers, level = list(logger.handlers), logger.level
    yield logger
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    for h in handlers:
        logger.addHandler(h)
    logger.setLevel(level)


def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            import sys
            exc_info = sys.exc_info()
    return logging.LogRecord("sesshu.outcome", logging.WARNING, __file__, 1, msg, args or None, exc_info)


@pytest.mark.parametrize("text", HOSTILE)
def test_text_lines_escape_the_message(text: str) -> None:
    line = logs.TextFormatter(logs.TEXT_FORMAT).format(record("rejected: %s: %s", "chaos", text))
    assert "\n" not in line and "\r" not in line
    assert line.isprintable()
    line.encode("utf-8")
    assert " WARNING sesshu.outcome: rejected: chaos: " in line


def test_text_lines_keep_printable_messages_as_they_are() -> None:
    line = logs.TextFormatter(logs.TEXT_FORMAT).format(record("done: %s", "https://例え.jp/ x"))
    assert line.endswith("WARNING sesshu.outcome: done: https://例え.jp/ x")


def test_a_traceback_keeps_its_lines_after_an_escaped_message() -> None:
    text = logs.TextFormatter(logs.TEXT_FORMAT).format(record("crashed on %s", FORGED, exc=True))
    first, *rest = text.splitlines()
    assert "\\r\\n2099-01-01" in first
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: boom"
    assert not any(line.startswith("2099") for line in rest)


def test_the_formatter_does_not_change_the_record() -> None:
    rec = record("x %s", "a\nb")
    logs.TextFormatter(logs.TEXT_FORMAT).format(rec)
    assert rec.getMessage() == "x a\nb"


def lines_written(tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    handler = logs.setup(str(tmp_path), "t", "debug", fmt)
    log = logging.getLogger("sesshu.outcome")
    for text in HOSTILE:
        log.warning("rejected: %s", text, extra={"sesshu": {"target": text, "plugin": text}})
    try:
        raise RuntimeError("fail on \ud800 and \n2099-01-01 forged")
    except RuntimeError:
        log.exception("crashed on %s", "\ud800")
    handler.flush()
    assert "Logging error" not in capsys.readouterr().err
    return (tmp_path / "t.log").read_text(encoding="utf-8").splitlines()


def test_text_file_survives_every_hostile_string(tmp_path: Path, root: logging.Logger,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    lines = lines_written(tmp_path, "text", capsys)
    assert sum(" WARNING sesshu.outcome: rejected: " in ln for ln in lines) == len(HOSTILE)
    assert sum(" ERROR sesshu.outcome: crashed on \\ud800" in ln for ln in lines) == 1
    assert not any(ln.startswith("2099") for ln in lines[:len(HOSTILE) + 1])


def test_json_file_survives_every_hostile_string(tmp_path: Path, root: logging.Logger,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    lines = lines_written(tmp_path, "json", capsys)
    docs = [json.loads(ln) for ln in lines]  # one JSON document a line, every one of them
    assert len(docs) == len(HOSTILE) + 1
    assert [d["target"] for d in docs[:-1]] == HOSTILE  # escaped in the file, exact once decoded
    assert "RuntimeError" in docs[-1]["exception"]


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_fuzz_a_text_line_is_one_printable_line(text: str) -> None:
    line = logs.TextFormatter(logs.TEXT_FORMAT).format(record("%s", text))
    assert line.isprintable()
    line.encode("utf-8")
