"""Which network addresses plugins' HTTP may connect to: the outbound address guard's policy.

By default every address that is not on the public internet is refused:
loopback, private (RFC 1918, ``fc00::/7``, and the other special-purpose
ranges ``ipaddress`` knows), link-local (``169.254.0.0/16``, where the
instance metadata service lives, and ``fe80::/10``), carrier-grade NAT
(``100.64.0.0/10``), unspecified, multicast and reserved addresses. An IPv6
address that stands for an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, NAT64's
``64:ff9b::/96``) is judged as that IPv4 address; one that carries IPv4
addresses (6to4, Teredo) is refused when one of them is.

:func:`allow` takes ranges out of the refusal (``workers.network.allow``): a
deployment whose targets are private, or tests on loopback. Only the
standard library is imported here, so the runner can set the policy before
any plugin, or requests, is imported; ``sesshu.httpget`` enforces it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

__all__ = ["allow", "allowed", "literal_address", "network", "refused"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address

_allowed: tuple[IPNetwork, ...] = ()


def network(cidr: str) -> IPNetwork:
    """One range of ``workers.network.allow``: ``10.0.0.0/8``, ``fd00::/8``, or one address; ValueError if not."""
    return ipaddress.ip_network(cidr.strip(), strict=True)


def allow(cidrs: Iterable[str]) -> None:
    """Replace the allowed ranges (none by default); ValueError, and no change, on one that is not a range."""
    global _allowed
    _allowed = tuple(network(c) for c in cidrs)


def allowed() -> tuple[str, ...]:
    """The allowed ranges, as text."""
    return tuple(str(n) for n in _allowed)


def refused(address: str | IPAddress) -> str | None:
    """Why a connection to ``address`` is refused (``"loopback"``, ...), or None when it may be made.

    ``address`` is an IP address as ``getaddrinfo`` gives it (an IPv6 scope,
    ``%eth0``, is ignored); anything else raises ValueError.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    if _is_allowed(ip):
        return None
    inner = _translated(ip)
    if inner is not None:
        # The connection reaches the IPv4 address itself: judge that, and only that.
        return None if _is_allowed(inner) else _kind(inner)
    for inner in _tunnelled(ip):
        why = _kind(inner)
        if why is not None and not _is_allowed(inner):
            return f"{why} ({inner} inside it)"
    return _kind(ip)


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells, if it spells one, in any form ``getaddrinfo`` would read as one.

    Besides the usual forms, ``inet_aton``'s legacy IPv4 spellings count:
    ``2130706433``, ``0x7f.1``, ``127.1``, ``017700000001`` are all 127.0.0.1.
    """
    text = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if not text or any(ch not in "0123456789abcdefxABCDEFX." for ch in text):
        return None  # a host name: what it resolves to is checked when it is connected to
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def _is_allowed(ip: IPAddress) -> bool:
    return any(ip.version == n.version and ip in n for n in _allowed)


def _translated(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped or NAT64 address stands for: what is really connected to."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _tunnelled(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a 6to4 or Teredo address carries (Teredo's server and client)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def _kind(ip: IPAddress) -> str | None:
    """What kind of non-public address ``ip`` is; None for a public one.

    From the table below, not from ``ipaddress``'s ``is_private``, whose
    ranges changed between Python releases (3.11.2 and 3.11.7 disagree on
    6to4, parts of 192.0.0.0/24 and ORCHIDv2): the guard must refuse the same
    addresses whichever interpreter runs it.
    """
    for net, why in _SPECIAL:
        if ip.version == net.version and ip in net:
            return why
    if ip.is_reserved:  # unassigned space (240.0.0.0/4, and IPv6's unallocated blocks)
        return "reserved"
    return None


# The IANA special-purpose address registries' ranges that are not globally
# reachable, most specific first. 6to4 (2002::/16) is judged by the IPv4
# address it carries, and IPv4-mapped and NAT64 addresses are translated first.
_SPECIAL: tuple[tuple[IPNetwork, str], ...] = tuple((ipaddress.ip_network(n), why) for n, why in (
    ("0.0.0.0/32", "unspecified"), ("0.0.0.0/8", "private"), ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "carrier-grade NAT"), ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"), ("192.0.0.0/24", "private"), ("192.0.2.0/24", "private"),
    ("192.168.0.0/16", "private"), ("198.18.0.0/15", "private"), ("198.51.100.0/24", "private"),
    ("203.0.113.0/24", "private"), ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"), ("::1/128", "loopback"), ("64:ff9b:1::/48", "private"), ("100::/64", "private"),
    ("2001::/23", "private"), ("2001:db8::/32", "private"), ("3fff::/20", "private"), ("5f00::/16", "private"),
    ("fc00::/7", "private"), ("fe80::/10", "link-local"), ("fec0::/10", "site-local"), ("ff00::/8", "multicast"),
))
