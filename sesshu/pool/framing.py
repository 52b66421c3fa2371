"""Bytes from a worker, read without ever blocking the master.

A worker's frames use multiprocessing's ``Connection`` format: a 4-byte
big-endian signed length, then the body. The master never calls a blocking
``recv_bytes`` on them: a worker that sends a length and then nothing would
freeze the whole loop. Instead, :class:`FrameReader` takes whatever bytes are
ready and hands out complete frames; a frame too large, or started and not
finished by its deadline, is the worker's fault and costs only the worker.

:class:`OutputReader` does the same for a worker's stdout and stderr: whole
lines, a cap per job, and what is past the cap counted, not kept.
"""

from __future__ import annotations

import os

from sesshu.pool.protocol import ProtocolError

HEADER = 4
READ_CHUNK = 256 * 1024
FRAME_STALL = 5.0  # seconds a started frame may take to arrive in full


class FrameReader:
    def __init__(self, max_frame: int, stall: float = FRAME_STALL) -> None:
        self._max = max_frame
        self._stall = stall
        self._buffer = bytearray()
        self.deadline: float | None = None  # when the frame under way must be complete

    def read(self, fd: int, now: float) -> tuple[list[bytes], bool]:
        """Read what is ready from ``fd``: (complete frames, whether the writer hung up).

        Reads at most one frame's worth per call, so one chatty worker cannot
        hold the loop; the selector reports the fd again on the next turn.
        """
        eof = False
        budget = self._max + HEADER
        while budget > 0:
            try:
                chunk = os.read(fd, min(READ_CHUNK, budget))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                eof = True
                break
            if not chunk:
                eof = True
                break
            self._buffer += chunk
            budget -= len(chunk)
        return self._frames(now), eof

    def _frames(self, now: float) -> list[bytes]:
        frames: list[bytes] = []
        buf = self._buffer
        while len(buf) >= HEADER:
            size = int.from_bytes(buf[:HEADER], "big", signed=True)
            if size < 0 or size > self._max:
                raise ProtocolError(f"frame of {size} bytes announced, over the {self._max}-byte limit")
            if len(buf) < HEADER + size:
                break
            frames.append(bytes(buf[HEADER:HEADER + size]))
            del buf[:HEADER + size]
        if not buf:
            self.deadline = None
        elif self.deadline is None:
            self.deadline = now + self._stall
        return frames

    def stalled(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline


def write_frame(fd: int, body: bytes) -> None:
    """Send one frame on a non-blocking fd; a peer that does not read is an OSError."""
    data = memoryview(len(body).to_bytes(HEADER, "big", signed=True) + body)
    while data:
        written = os.write(fd, data)  # BlockingIOError is an OSError: the caller drops the worker
        data = data[written:]


class OutputReader:
    """A worker's stdout and stderr, as lines, capped per job."""

    LINE_MAX = 2048

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._partial = b""
        self.kept = 0  # bytes kept for the current job
        self.dropped = 0  # bytes past the cap, for the current job

    def read(self, fd: int) -> tuple[list[str], bool]:
        """(complete lines, whether the writer hung up); at most one chunk per call."""
        try:
            chunk = os.read(fd, 64 * 1024)
        except (BlockingIOError, InterruptedError):
            return [], False
        except OSError:
            chunk = b""
        if not chunk:
            return self.flush(), True
        room = self._cap - self.kept
        if room <= 0:
            self.dropped += len(chunk)
            return [], False
        if len(chunk) > room:
            self.dropped += len(chunk) - room
            chunk = chunk[:room]
        self.kept += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        if len(self._partial) > self.LINE_MAX:
            lines.append(self._partial)
            self._partial = b""
        return [_text(line) for line in lines], False

    def flush(self) -> list[str]:
        """The unfinished last line, if any; call at the end of a job."""
        rest, self._partial = self._partial, b""
        return [_text(rest)] if rest else []

    def next_job(self) -> int:
        """Start counting afresh; returns how many bytes the last job had dropped."""
        dropped, self.kept, self.dropped = self.dropped, 0, 0
        return dropped


def _text(line: bytes) -> str:
    return line[: OutputReader.LINE_MAX].decode("utf-8", "backslashreplace").rstrip("\r")
