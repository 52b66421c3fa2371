"""HTTP connections that reach only the addresses the outbound address guard allows.

:class:`GuardedSession` is a requests Session whose every connection, http
or https, is made by :func:`_connect_checked`: the host is resolved here, and
each address is checked against :mod:`sesshu.plugin.addresses` before it is
connected to. So a target that names a refused address, a host name that
resolves to one (``localhost``, DNS rebinding), and every redirect hop that
leads to one get no packet; the failure carries :class:`AddressRefused`.
TLS still sends and verifies the host name: only the socket changes.

Proxies from the environment are ignored, because a proxy would connect on
our behalf to addresses the guard never sees. Like ``sesshu.httpget``, this
imports only the standard library, requests and its urllib3.
"""

from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING, Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family, create_connection

from sesshu.plugin import addresses

if TYPE_CHECKING:
    from requests.sessions import _Settings

__all__ = ["AddressRefused", "GuardedSession", "refused_in"]


class AddressRefused(NewConnectionError):
    """No connection was made: every address of the host is one the guard refuses."""

    def __init__(self, conn: HTTPConnection, host: str, address: str, why: str) -> None:
        super().__init__(conn, f"{host}: refused address {address}, {why}")
        self.host = host
        self.address = address
        self.why = why


def _connect_checked(conn: HTTPConnection) -> socket.socket:
    """A socket connected to an allowed address of conn's host, or AddressRefused.

    urllib3's own _new_conn, except that the name is resolved here and each
    address is checked before it is connected to, so a name that resolves to
    a refused address (``localhost``, DNS rebinding) never gets a packet.
    """
    host = conn._dns_host
    try:
        infos = socket.getaddrinfo(host, conn.port, allowed_gai_family(), socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise NameResolutionError(conn.host, conn, e) from e
    refusal: tuple[str, str] | None = None
    error: OSError | None = None
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        why = addresses.refused(address)
        if why is not None:
            refusal = refusal or (address, why)
            continue
        try:
            sock = create_connection((address, conn.port), conn.timeout, source_address=conn.source_address,
                                     socket_options=conn.socket_options)
        except TimeoutError as e:
            raise ConnectTimeoutError(conn, f"Connection to {conn.host} timed out. "
                                      f"(connect timeout={conn.timeout})") from e
        except OSError as e:
            error = e
            continue
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        return sock
    if error is None and refusal is not None:
        raise AddressRefused(conn, conn.host, *refusal)
    raise NewConnectionError(conn, f"Failed to establish a new connection: {error or 'no address'}") from error


class _CheckedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _connect_checked(self)


class _CheckedHTTPSConnection(HTTPSConnection):
    # Only the socket changes: TLS still sends and verifies the host name.
    def _new_conn(self) -> socket.socket:
        return _connect_checked(self)


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class _CheckedAdapter(HTTPAdapter):
    """An adapter whose every connection goes through _connect_checked."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _CheckedHTTPPool, "https": _CheckedHTTPSPool}


class GuardedSession(requests.Session):
    """A Session that connects only to allowed addresses, and through no proxy."""

    def __init__(self) -> None:
        super().__init__()
        for scheme in ("http://", "https://"):
            self.mount(scheme, _CheckedAdapter())

    def merge_environment_settings(self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> _Settings:
        # The environment may still name a CA bundle; it may not name a proxy.
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        settings["proxies"] = {}
        return settings


def refused_in(exc: BaseException) -> AddressRefused | None:
    """The AddressRefused under what requests raised (a ConnectionError around a MaxRetryError), if any."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(seen) < 16:
        item = todo.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        if isinstance(item, AddressRefused):
            return item
        seen.append(item)
        todo.extend([item.__cause__, item.__context__, getattr(item, "reason", None), *item.args])
    return None
