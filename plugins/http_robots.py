"""List the Allow/Disallow paths in a site's robots.txt."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from sesshu.httpget import check_http_target, get

__all__ = ["fetch", "parse_robots", "robots_url", "validate"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_RULES = frozenset({"allow", "disallow"})


def validate(target: str) -> None:
    check_http_target(target)


def robots_url(target: str) -> str:
    """The robots.txt URL at target's origin, port kept, userinfo dropped."""
    parts = urlsplit(target)
    host_port = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme.lower(), host_port, "/robots.txt", "", ""))


def parse_robots(text: str) -> list[str]:
    """Every Allow/Disallow value in file order; "" for an empty rule."""
    paths: list[str] = []
    # Split on line breaks only: str.splitlines() would also split on
    # characters such as \x85 and \x0c that may appear inside a path.
    for line in _LINE_BREAK.split(text.removeprefix("\ufeff")):
        name, colon, value = line.partition("#")[0].partition(":")
        if colon and name.strip().lower() in _RULES:
            paths.append(value.strip())
    return paths


def fetch(target: str) -> list[str] | None:
    page = get(robots_url(target))
    if page is None:
        return None
    return parse_robots(page.text())
