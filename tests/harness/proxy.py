"""A TCP proxy on loopback whose behaviour can be switched while it runs.

It sits between ``sesshud`` and the SQS/SNS server, to play network faults
with real sockets:

* ``pass``: forward bytes both ways;
* ``refuse``: the listening socket is closed, so connects are refused, and
  every open connection is reset (the server went away);
* ``reset``: connects are accepted and reset at once, and so are the
  connections already open;
* ``hang``: connects are accepted and whatever arrives is read and dropped,
  with never an answer (a half-open path); connections already open freeze
  the same way, mid-request or mid-response.

Leaving ``hang`` resets the frozen connections: their HTTP exchange was
broken in the middle, and the clients gave up on them anyway. :meth:`cut`
resets every current connection, whatever the mode.

One thread accepts; each connection gets one thread that shuttles both
directions with ``select``. Connections beyond ``max_connections`` are reset
at once, so the thread count stays bounded. Every thread is a daemon thread
and wakes at least every ``TICK`` seconds to notice a mode change or stop.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from types import TracebackType
from typing import Self

__all__ = ["MODES", "TcpProxy"]

MODES = ("pass", "refuse", "reset", "hang")
TICK = 0.05
CHUNK = 64 * 1024
APPLY_TIMEOUT = 5.0


def _reset(sock: socket.socket | None) -> None:
    """Close ``sock`` with an RST rather than a FIN (SO_LINGER with a zero timeout)."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Link:
    """One client connection, and its upstream connection while it forwards."""

    def __init__(self, client: socket.socket, frozen: bool) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.frozen = frozen  # reading and dropping, answering nothing
        self.cut = False  # asked to reset


class TcpProxy:
    """``with TcpProxy(upstream_port) as proxy: ... proxy.url ... proxy.mode = "hang"``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", *,
                 max_connections: int = 64) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.max_connections = max_connections
        self.port = 0
        self.accepted = 0  # connections accepted, in any mode
        self.refused = 0  # connections reset because of the mode or the limit
        self._mode = "pass"
        self._applied = "pass"  # the mode the accept thread has put in place
        self._cond = threading.Condition()
        self._links: set[_Link] = set()
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._acceptor: threading.Thread | None = None
        self._workers: set[threading.Thread] = set()

    # -- public API -----------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        """Switch modes; returns once the new mode is in force for new and open connections."""
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r} (modes: {', '.join(MODES)})")
        with self._cond:
            previous, self._mode = self._mode, mode
            for link in self._links:
                if mode in ("refuse", "reset") or (previous == "hang" and mode != "hang"):
                    link.cut = True
                elif mode == "hang":
                    link.frozen = True
            if not self._cond.wait_for(lambda: self._applied == mode and not self._pending_cuts(),
                                       APPLY_TIMEOUT):
                raise RuntimeError(f"proxy did not switch to {mode!r} within {APPLY_TIMEOUT} s")

    def cut(self) -> None:
        """Reset every current connection; new ones are served per the mode."""
        with self._cond:
            for link in self._links:
                link.cut = True
            if not self._cond.wait_for(lambda: not self._pending_cuts(), APPLY_TIMEOUT):
                raise RuntimeError(f"proxy connections not cut within {APPLY_TIMEOUT} s")

    def connections(self) -> int:
        with self._cond:
            return len(self._links)

    def start(self) -> Self:
        self._listener = self._listen(0)
        self.port = int(self._listener.getsockname()[1])
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"proxy-{self.port}-accept",
                                          daemon=True)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(APPLY_TIMEOUT)
        with self._cond:
            workers = list(self._workers)
        for thread in workers:
            thread.join(APPLY_TIMEOUT)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- accepting ------------------------------------------------------------

    def _pending_cuts(self) -> bool:
        return any(link.cut for link in self._links)

    def _listen(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        return sock

    def _accept_loop(self) -> None:
        try:
            while not self._stopping.is_set():
                self._apply_mode()
                if self._listener is None:
                    self._stopping.wait(TICK)
                    continue
                ready, _, _ = select.select([self._listener], [], [], TICK)
                if ready:
                    self._accept()
        finally:
            if self._listener is not None:
                self._listener.close()
                self._listener = None

    def _apply_mode(self) -> None:
        mode = self._mode
        if mode == "refuse" and self._listener is not None:
            # Closing drops the backlog too: those clients see a reset.
            self._listener.close()
            self._listener = None
        elif mode != "refuse" and self._listener is None:
            # The same port again; SO_REUSEADDR lets it rebind past TIME_WAIT.
            try:
                self._listener = self._listen(self.port)
            except OSError:
                return  # taken meanwhile? try again next tick; the setter times out
        if self._applied != mode:
            with self._cond:
                self._applied = mode
                self._cond.notify_all()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        self.accepted += 1
        with self._cond:
            crowded = len(self._links) >= self.max_connections
            if self._mode == "reset" or crowded:
                self.refused += 1
                _reset(client)
                return
            link = _Link(client, frozen=self._mode == "hang")
            self._links.add(link)
            thread = threading.Thread(target=self._serve, args=(link,), daemon=True,
                                      name=f"proxy-{self.port}-link")
            self._workers.add(thread)
        thread.start()

    # -- one connection -------------------------------------------------------

    def _serve(self, link: _Link) -> None:
        try:
            if not link.frozen:
                try:
                    link.upstream = socket.create_connection(self.upstream, timeout=APPLY_TIMEOUT)
                except OSError:
                    link.cut = True
            self._shuttle(link)
        finally:
            if link.cut or link.frozen:
                _reset(link.client)
            else:
                link.client.close()
            if link.upstream is not None:
                link.upstream.close()
            with self._cond:
                self._links.discard(link)
                self._workers.discard(threading.current_thread())
                self._cond.notify_all()

    def _shuttle(self, link: _Link) -> None:
        """Move bytes until either side closes, the link is cut, or the proxy stops."""
        peers = {link.client: link.upstream}
        if link.upstream is not None:
            peers[link.upstream] = link.client
        for sock in peers:
            # select() says when to read; the timeout bounds a send to a peer that stopped reading.
            sock.settimeout(APPLY_TIMEOUT)
        while not (link.cut or self._stopping.is_set()):
            ready, _, _ = select.select(list(peers), [], [], TICK)
            for sock in ready:
                try:
                    data = sock.recv(CHUNK)
                except OSError:
                    return
                if not data:
                    return  # one side closed: close both
                if link.frozen or link.cut:
                    continue  # swallowed: the other side never hears of it
                other = peers[sock]
                if other is None:
                    continue
                try:
                    other.sendall(data)
                except OSError:
                    return
