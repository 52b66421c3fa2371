"""Shared HTTP GET for plugins, bounded in size, time and redirects.

Plugins run in forked children that must stay light, so this module
imports only the standard library and requests (plus the urllib3 that
requests already loads), the plugin API with its address policy, and
``sesshu.httpguard`` and ``sesshu.text``.

A site that answers 429 or 503 with a ``Retry-After`` header is asking to be
asked again later: :func:`get` raises :class:`sesshu.plugin.RetryLater` with
that delay, so the job is retried then and not before.

The outbound address guard: every connection goes through
:class:`sesshu.httpguard.GuardedSession`, which checks each address against
:mod:`sesshu.plugin.addresses` before it connects, so no packet goes to a
refused address (loopback, private, link-local with the metadata service,
...), whether the target names it, a host name resolves to it, or a redirect
leads there. :func:`check_http_target` rejects a refused literal address
before any fetch.
"""

from __future__ import annotations

import codecs
import email.utils
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
from requests.utils import requote_uri
from urllib3.exceptions import HTTPError as Urllib3Error

from sesshu.httpguard import GuardedSession, refused_in
from sesshu.plugin import RetryLater, addresses
from sesshu.text import loggable

__all__ = ["USER_AGENT", "Page", "check_http_target", "get"]

USER_AGENT = "Panorama/sesshu"

_log = logging.getLogger(__name__)

# Upper bound on one socket read; also how far past max_bytes we may read.
_CHUNK = 16 * 1024

# BOM sniffing wins over a declared charset, as it does in browsers.
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


@dataclass(frozen=True)
class Page:
    """A fetched page: final URL, (possibly truncated) body and charset."""

    url: str
    content: bytes
    charset: str | None
    truncated: bool

    def text(self) -> str:
        """The body decoded leniently, without a leading BOM."""
        codec = self.charset or "utf-8"
        for bom, bom_codec in _BOMS:
            if self.content.startswith(bom):
                codec = bom_codec
                break
        try:
            decoded = self.content.decode(codec, errors="replace")
        except LookupError:
            decoded = self.content.decode("utf-8", errors="replace")
        return decoded.removeprefix("\ufeff")


def check_http_target(target: str) -> None:
    """Raise ValueError unless target is an absolute http(s) URL with a host that is not a refused address."""
    if any(ch.isspace() or not ch.isprintable() for ch in target):
        raise ValueError(
            f"target contains whitespace or control characters: {target!r}"
        )
    parts = urlsplit(target)  # raises ValueError on e.g. an unclosed "[" in the host
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {target!r}")
    if not parts.hostname:
        raise ValueError(f"URL has no host: {target!r}")
    _ = parts.port  # raises ValueError on a non-numeric or out-of-range port
    literal = addresses.literal_address(parts.hostname)
    why = addresses.refused(literal) if literal is not None else None
    if why is not None:
        # A legacy spelling (2852039166, 0x7f.1) is named with the address it spells.
        named = f"{parts.hostname} is {literal}" if _legacy(parts.hostname) else parts.hostname
        raise ValueError(f"refused address: {named}, {why} (not in workers.network.allow)")


def _legacy(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return True
    return False


_session: requests.Session | None = None
_session_lock = threading.Lock()


def _forget_session_after_fork() -> None:
    # A child must not share pooled sockets with its parent, and the lock
    # may have been held by a parent thread that does not exist here.
    global _session, _session_lock
    _session = None
    _session_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_session_after_fork)


class _ManualRedirectSession(GuardedSession):
    """A guarded Session that leaves every redirect to get().

    requests reads a redirect's whole body, with no size or time limit,
    even when told not to follow it; reporting no target prevents that.
    """

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        return None


def _shared_session() -> requests.Session:
    global _session
    with _session_lock:
        if _session is None:
            session = _ManualRedirectSession()
            session.headers["User-Agent"] = USER_AGENT
            _session = session
        return _session


def _charset(content_type: str | None) -> str | None:
    """The charset parameter of a Content-Type header, if Python knows it."""
    if not content_type:
        return None
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() != "charset":
            continue
        label = value.strip().strip("\"'").strip().lower()
        if not label:
            return None
        try:
            codecs.lookup(label)
        except LookupError:
            return None
        return label
    return None


class _DeadlineExceeded(Exception):
    pass


_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def _redirect_target(resp: requests.Response) -> str | None:
    if resp.status_code not in _REDIRECT_STATUSES:
        return None
    location = resp.headers.get("Location")
    if location is None:
        return None
    try:
        # http.client decodes header bytes as latin-1, but servers that put
        # non-ASCII in Location nearly always mean UTF-8.
        return location.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return location


def _open(
    session: requests.Session,
    url: str,
    timeout: tuple[float, float],
    max_redirects: int,
    deadline: float,
) -> requests.Response | None:
    """GET url, following redirects ourselves; None if there are too many.

    Following them here, rather than in requests, leaves redirect bodies
    unread and keeps the per-call max_redirects off the shared session,
    where concurrent callers would race on it.
    """
    for _ in range(max_redirects + 1):
        if time.monotonic() > deadline:
            raise _DeadlineExceeded
        resp = session.get(url, timeout=timeout, stream=True, allow_redirects=False)
        location = _redirect_target(resp)
        if location is None:
            return resp
        resp.close()
        url = requote_uri(urljoin(resp.url, location))
    _log.debug("GET gave up after %d redirects, at %s", max_redirects, url)
    return None


def _read1_chunks(resp: requests.Response, limit: int) -> Iterator[bytes]:
    # iter_content() blocks until a whole chunk has arrived, so a server
    # sending a byte at a time could outlast any deadline checked between
    # chunks; read1() returns whatever a single socket read produced.
    remaining = limit
    while remaining > 0:
        chunk = resp.raw.read1(min(_CHUNK, remaining), decode_content=True)
        if not chunk:
            return
        remaining -= len(chunk)
        yield chunk


def _read_body(
    resp: requests.Response, max_bytes: int, deadline: float
) -> tuple[bytes, bool]:
    """Up to max_bytes of the body, and whether there was more."""
    body = bytearray()
    # One byte beyond the cap tells a truncated body from one that fits exactly.
    for chunk in _read1_chunks(resp, max_bytes + 1):
        if time.monotonic() > deadline:
            raise _DeadlineExceeded
        body += chunk
    truncated = len(body) > max_bytes
    return bytes(body[:max_bytes]), truncated


def get(
    url: str,
    *,
    connect_timeout: float = 5.0,
    read_timeout: float = 10.0,
    max_bytes: int = 1 << 20,
    max_redirects: int = 5,
) -> Page | None:
    """Fetch url; None on any failure, a non-200 status or an empty body.

    A 429 or 503 with a usable ``Retry-After`` raises :class:`~sesshu.plugin.RetryLater` instead.

    Each socket read may wait read_timeout, and the whole call gives up
    once connect_timeout + 3 * read_timeout has passed while reading.
    """
    deadline = time.monotonic() + connect_timeout + read_timeout * 3
    try:
        resp = _open(
            _shared_session(),
            url,
            (connect_timeout, read_timeout),
            max_redirects,
            deadline,
        )
        if resp is None:
            return None
        with resp:
            if resp.status_code != 200:
                _log.debug("GET %s: status %d", resp.url, resp.status_code)
                wait = retry_after(resp.headers.get("Retry-After")) if resp.status_code in (429, 503) else None
                if wait is not None:
                    raise RetryLater(wait, f"{urlsplit(resp.url).hostname} answered {resp.status_code}")
                return None
            content, truncated = _read_body(resp, max_bytes, deadline)
    except _DeadlineExceeded:
        _log.debug("GET %s: exceeded the overall read deadline", url)
        return None
    except (requests.RequestException, Urllib3Error, OSError, ValueError) as exc:
        refusal = refused_in(exc)
        if refusal is not None:
            host = loggable(refusal.host, 200)
            named = host if host == refusal.address else f"{host} is {refusal.address}"
            _log.warning("GET refused: %s, %s (not in workers.network.allow); no connection made",
                         named, refusal.why)
        else:
            _log.debug("GET %s failed: %s: %s", url, type(exc).__name__, exc)
        return None
    if not content:
        _log.debug("GET %s: empty body", resp.url)
        return None
    return Page(
        url=resp.url,
        content=content,
        charset=_charset(resp.headers.get("Content-Type")),
        truncated=truncated,
    )


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None if unusable."""
    if not value or len(value) > 64:
        return None
    value = value.strip()
    if value.isdigit() and value.isascii():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None  # an HTTP date is always GMT; one without a zone is not one
    # A calendar date, so the wall clock is the right one here.
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
