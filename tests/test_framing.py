"""Frames and output read without blocking: partial, oversized, stalled, many at once."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sesshu.pool.framing import FrameReader, OutputReader, write_frame
from sesshu.pool.protocol import ProtocolError


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def header(n: int) -> bytes:
    return n.to_bytes(4, "big", signed=True)


def test_frames_round_trip_and_several_arrive_at_once(pair: tuple[socket.socket, socket.socket]) -> None:
    reader_end, writer_end = pair
    write_frame(writer_end.fileno(), b"one")
    write_frame(writer_end.fileno(), b"two")
    frames, eof = FrameReader(100).read(reader_end.fileno(), 0.0)
    assert (frames, eof) == ([b"one", b"two"], False)


def test_a_partial_frame_waits_then_stalls_at_its_deadline(pair: tuple[socket.socket, socket.socket]) -> None:
    reader_end, writer_end = pair
    reader = FrameReader(100, stall=5.0)
    writer_end.send(header(10) + b"abc")
    assert reader.read(reader_end.fileno(), 100.0) == ([], False)
    assert reader.deadline == 105.0
    assert not reader.stalled(104.9)
    assert reader.stalled(105.0)
    writer_end.send(b"defghij")
    assert reader.read(reader_end.fileno(), 104.0) == ([b"abcdefghij"], False)
    assert reader.deadline is None and not reader.stalled(1e9)


def test_a_lone_length_prefix_never_blocks_the_reader(pair: tuple[socket.socket, socket.socket]) -> None:
    reader_end, writer_end = pair
    writer_end.send(header(50)[:2])
    reader = FrameReader(100)
    assert reader.read(reader_end.fileno(), 0.0) == ([], False)  # returns at once, nothing complete
    assert reader.deadline is not None


@pytest.mark.parametrize("size", [101, -1, -2**31, 2**31 - 1])
def test_an_announced_size_over_the_limit_is_a_protocol_error(pair: tuple[socket.socket, socket.socket],
                                                              size: int) -> None:
    reader_end, writer_end = pair
    writer_end.send(header(size))
    with pytest.raises(ProtocolError):
        FrameReader(100).read(reader_end.fileno(), 0.0)


def test_hang_up_is_reported(pair: tuple[socket.socket, socket.socket]) -> None:
    reader_end, writer_end = pair
    write_frame(writer_end.fileno(), b"last")
    writer_end.close()
    assert FrameReader(100).read(reader_end.fileno(), 0.0) == ([b"last"], True)


def test_one_call_reads_at_most_one_frame_worth(pair: tuple[socket.socket, socket.socket]) -> None:
    reader_end, writer_end = pair
    for _ in range(50):
        write_frame(writer_end.fileno(), b"x" * 90)
    frames, _ = FrameReader(100).read(reader_end.fileno(), 0.0)
    assert 1 <= len(frames) <= 2  # the loop's next turn takes the rest


def test_a_writer_that_cannot_take_more_is_an_oserror() -> None:
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        with pytest.raises(OSError):
            for _ in range(1000):
                write_frame(w, b"x" * 65536)  # nobody reads: the pipe fills
    finally:
        os.close(r)
        os.close(w)


@given(st.lists(st.binary(max_size=64), max_size=8), st.binary(max_size=64))
@settings(max_examples=200, deadline=None)
def test_any_byte_stream_gives_frames_or_a_protocol_error(frames: list[bytes], junk: bytes) -> None:
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        stream = b"".join(header(len(f)) + f for f in frames) + junk
        b.sendall(stream)
        b.close()
        reader = FrameReader(64)
        got: list[bytes] = []
        try:
            for _ in range(len(stream) + 2):
                out, eof = reader.read(a.fileno(), 0.0)
                got += out
                if eof:
                    break
        except ProtocolError:
            return
        assert got[: len(frames)] == frames
    finally:
        a.close()


def test_output_is_split_in_lines_and_capped_per_job(pair: tuple[socket.socket, socket.socket]) -> None:
    reader_end, writer_end = pair
    out = OutputReader(cap=20)
    writer_end.send(b"first line\nsecond ")
    assert out.read(reader_end.fileno()) == (["first line"], False)
    writer_end.send(b"half\n" + b"y" * 100)
    lines, _ = out.read(reader_end.fileno())
    assert lines == []  # the cap (20 bytes) is spent mid-line
    assert out.flush() == ["second ha"]  # up to the cap, no further
    assert out.next_job() > 0  # what was dropped is counted for the log
    writer_end.send(b"next job\n")
    assert out.read(reader_end.fileno()) == (["next job"], False)
