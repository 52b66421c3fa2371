"""sesshu.daemon.logs: text lines that cannot be forged, JSON lines that cannot break."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sesshu.daemon import logs

FORGED = "https://x/\r\n2099-01-01 00:00:00,000 [1] INFO sesshu.jobs.outcomes: done: forged"
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
    return logging.LogRecord("sesshu.jobs.outcomes", logging.WARNING, __file__, 1, msg, args or None, exc_info)


@pytest.mark.parametrize("text", HOSTILE)
def test_text_lines_escape_the_message(text: str) -> None:
    line = logs.TextFormatter(logs.TEXT_FORMAT).format(record("rejected: %s: %s", "chaos", text))
    assert "\n" not in line and "\r" not in line
    assert line.isprintable()
    line.encode("utf-8")
    assert " WARNING sesshu.jobs.outcomes: rejected: chaos: " in line


def test_text_lines_keep_printable_messages_as_they_are() -> None:
    line = logs.TextFormatter(logs.TEXT_FORMAT).format(record("done: %s", "https://例え.jp/ x"))
    assert line.endswith("WARNING sesshu.jobs.outcomes: done: https://例え.jp/ x")


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
    log = logging.getLogger("sesshu.jobs.outcomes")
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
    assert sum(" WARNING sesshu.jobs.outcomes: rejected: " in ln for ln in lines) == len(HOSTILE)
    assert sum(" ERROR sesshu.jobs.outcomes: crashed on \\ud800" in ln for ln in lines) == 1
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


# -- a log file that cannot be written -------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs of our own, to fill up: a real ENOSPC from the kernel."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "sesshu-test", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(directory: Path) -> Path:
    """Write until the filesystem is full; the file that filled it."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"x" * 4096)
        except OSError:
            pass
    return filler


def test_a_full_disk_is_said_once_on_stderr_and_once_when_it_passes(
        small_tmpfs: Path, root: logging.Logger, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs.LogFile, "RETRY_EVERY", 0.0)  # each record tries again: the worst case for stderr
    handler = logs.setup(str(small_tmpfs), "sesshu", "info", "text")
    log = logging.getLogger("sesshu.test")
    log.info("before")
    filler = fill(small_tmpfs)
    for i in range(200):
        log.info("while full %d %s", i, "y" * 200)  # more than the page the kernel may still take
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "cannot write the log file" in err[0] and "No space left on device" in err[0], err
    filler.unlink()
    log.info("after")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "is written again" in err[0], err
    text = (small_tmpfs / "sesshu.log").read_text()
    assert "before" in text and text.rstrip().endswith("after")
    assert handler in root.handlers


def test_a_removed_log_directory_is_said_once_and_usr1_writes_the_file_again(
        tmp_path: Path, root: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    handler = logs.setup(str(directory), "sesshu", "info", "text")
    log = logging.getLogger("sesshu.test")
    log.info("before")
    (directory / "sesshu.log").unlink()
    directory.rmdir()
    logs.reopen(handler)  # USR1 (logrotate) while the directory is gone
    for i in range(50):
        log.info("while gone %d", i)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "cannot write the log file" in err[0], err
    directory.mkdir()
    logs.reopen(handler)  # the next USR1, once it is back
    log.info("after")
    assert len(capsys.readouterr().err.splitlines()) == 1
    assert (directory / "sesshu.log").read_text().rstrip().endswith("after")
