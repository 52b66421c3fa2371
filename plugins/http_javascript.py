"""List the src of every <script> on a page."""

from __future__ import annotations

from bs4 import BeautifulSoup, Tag

from sesshu.httpget import check_http_target, get

__all__ = ["fetch", "script_sources", "validate"]


def validate(target: str) -> None:
    check_http_target(target)


def script_sources(html: bytes, charset: str | None) -> list[str]:
    """The src attributes of <script> tags, in document order, unresolved."""
    # On a repeated attribute browsers keep the first; bs4 would keep the last.
    soup = BeautifulSoup(
        html, "html.parser", from_encoding=charset, on_duplicate_attribute="ignore"
    )
    sources: list[str] = []
    for tag in soup.find_all("script"):
        if isinstance(tag, Tag):
            src = tag.get("src")
            if isinstance(src, str):
                sources.append(src)
    return sources


def fetch(target: str) -> list[str] | None:
    page = get(target)
    if page is None:
        return None
    return script_sources(page.content, page.charset)
