"""List the href of every <link rel="stylesheet"> on a page."""

from __future__ import annotations

from bs4 import BeautifulSoup, Tag

from sesshu.httpget import check_http_target, get

__all__ = ["fetch", "stylesheet_links", "validate"]


def validate(target: str) -> None:
    check_http_target(target)


def _is_stylesheet(rel: object) -> bool:
    # html.parser hands rel over as a list of tokens; accept a plain string too.
    if isinstance(rel, str):
        tokens = rel.split()
    elif isinstance(rel, list):
        tokens = [token for token in rel if isinstance(token, str)]
    else:
        return False
    return any(token.lower() == "stylesheet" for token in tokens)


def stylesheet_links(html: bytes, charset: str | None) -> list[str]:
    """The href of <link> tags whose rel includes stylesheet, in document order."""
    # On a repeated attribute browsers keep the first; bs4 would keep the last.
    soup = BeautifulSoup(
        html, "html.parser", from_encoding=charset, on_duplicate_attribute="ignore"
    )
    links: list[str] = []
    for tag in soup.find_all("link"):
        if isinstance(tag, Tag) and _is_stylesheet(tag.get("rel")):
            href = tag.get("href")
            if isinstance(href, str):
                links.append(href)
    return links


def fetch(target: str) -> list[str] | None:
    page = get(target)
    if page is None:
        return None
    return stylesheet_links(page.content, page.charset)
