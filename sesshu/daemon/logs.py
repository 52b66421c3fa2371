"""Logging for the daemon: text or JSON lines, to a file or stderr, reopenable.

``logging.path`` + ``logging.name`` give the file ``path/name.log``; without
a path, logs go to stderr (the journal under systemd). SIGUSR1 reopens the
file, so logrotate can move it away. A log file that cannot be written (a
full disk, a removed directory, an I/O error) never stops the daemon: stderr
gets one line when writing fails and one when it works again
(:class:`LogFile`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
import time
from typing import Any

from sesshu.text import escape

TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT`` lines whose message cannot start a line of its own.

    A message may quote a target, a plugin name, an error or plugin output.
    Its control, bidi and separator characters (and lone surrogates, which
    would not even encode) are escaped, so every line the log holds was
    started by us. A traceback appended after the message keeps its real
    line breaks.
    """

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if message.isprintable():
            return super().format(record)
        safe = logging.makeLogRecord(record.__dict__)
        safe.msg, safe.args = escape(message), None
        return super().format(safe)


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with the job fields a record carries."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        fields = getattr(record, "sesshu", None)
        if isinstance(fields, dict):
            doc.update({k: v for k, v in fields.items() if v is not None})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        # ensure_ascii (the default) writes any character, a lone surrogate
        # included, as an escape: a JSON line can be neither forged nor broken.
        return json.dumps(doc, default=str)


class LogFile(logging.FileHandler):
    """The log file, which says so once on stderr when it cannot be written, and once when it can again.

    A failed write drops the open file; each later record tries to open it
    again, at most once every :attr:`RETRY_EVERY` seconds, and a USR1
    (:meth:`reopen`) tries at once. The records that arrive meanwhile are
    lost: jobs go on, and stderr says for how long the log had a gap.
    """

    RETRY_EVERY = 1.0  # seconds between two attempts to open a file that failed

    def __init__(self, filename: str) -> None:
        # backslashreplace: a lone surrogate in a traceback must not lose the record.
        super().__init__(filename, encoding="utf-8", errors="backslashreplace")
        self.failing_since: float | None = None  # monotonic, while the file cannot be written
        self._retry_at = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:  # noqa: BLE001 - logging's own contract: a bad record must not raise
            self.handleError(record)
            return
        try:
            if self.stream is None:
                if time.monotonic() < self._retry_at:
                    return
                self.stream = self._open()
            self.stream.write(line)
            self.stream.flush()
        except OSError as exc:
            self._failed(exc)
            return
        if self.failing_since is not None:
            gap = time.monotonic() - self.failing_since
            self.failing_since = None
            _to_stderr(f"sesshud: the log file {self.baseFilename} is written again (records of the "
                       f"last {gap:.0f} s are missing from it)")

    def reopen(self) -> None:
        """Close the file and open it again by its name, at once (logrotate waits for it to exist)."""
        self.acquire()
        try:
            if self.stream is not None:
                try:
                    self.stream.close()
                except OSError:
                    pass
            self.stream = None  # type: ignore[assignment]
            try:
                self.stream = self._open()
            except OSError as exc:
                self._failed(exc)
        finally:
            self.release()

    def _failed(self, exc: OSError) -> None:
        stream, self.stream = self.stream, None  # type: ignore[assignment]
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass  # the data it held is what could not be written
        self._retry_at = time.monotonic() + self.RETRY_EVERY
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            _to_stderr(f"sesshud: cannot write the log file {self.baseFilename}: {exc.strerror or exc}; "
                       "jobs go on, and it is written again as soon as it can be")


def _to_stderr(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # no stderr either: nothing more can be said


def log_file(path: str | None, name: str) -> str | None:
    return os.path.join(path, f"{name}.log") if path else None


def check(path: str | None, name: str) -> None:
    """Fail as ``setup`` would, but as a :class:`ConfigError` naming the key, and leave no file behind.

    ``--check`` runs this, and so does a start before anything else, so that
    a log directory that is missing or is a file ends in one line and exit 1,
    not in a traceback that a service manager restarts.
    """
    from sesshu.config.schema import ConfigError

    filename = log_file(path, name)
    if path is None or filename is None:
        return
    try:
        if not os.path.isdir(path):
            problem = "is not a directory" if os.path.lexists(path) else "no such directory"
            raise ConfigError(f"logging.path: {path}: {problem}")
        try:
            # O_NONBLOCK: a FIFO without a reader fails here instead of blocking.
            fd = os.open(filename, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
            os.close(fd)
        except FileNotFoundError:
            # Made and removed again: --check run as root must not leave a
            # root-owned log file the daemon's own user cannot write.
            fd = os.open(filename, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
            os.close(fd)
            os.unlink(filename)
    except OSError as exc:
        key = "logging.name" if exc.errno == errno.ENAMETOOLONG else "logging.path"
        raise ConfigError(f"{key}: cannot open {filename} for writing: {exc.strerror or exc}") from None
    except ValueError:  # a NUL byte in the path
        raise ConfigError("logging.path: the path holds a NUL byte") from None


def setup(path: str | None, name: str, level: str, fmt: str) -> logging.Handler:
    """Install the one root handler; returns it so USR1 can reopen it."""
    filename = log_file(path, name)
    handler: logging.Handler = LogFile(filename) if filename is not None else logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    # botocore at DEBUG would log request bodies and signed headers.
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
    return handler


def reopen(handler: logging.Handler) -> None:
    """USR1: close the log file and open it again by its name (logrotate moved it away)."""
    if isinstance(handler, LogFile):
        handler.reopen()
