"""The http_stylesheet plugin: parsing, validation and fetching."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sesshu_plugins.http_stylesheet import fetch, stylesheet_links, validate

from sesshu.httpget import USER_AGENT
from tests.harness.site import FixtureSite, Route, refused_url


@pytest.fixture
def site() -> Iterator[FixtureSite]:
    with FixtureSite() as s:
        yield s


# --- stylesheet_links -----------------------------------------------------------


def test_links_in_document_order_as_written() -> None:
    html = b"""<html><head>
      <link rel="stylesheet" href="/css/a.css">
      <link rel="icon" href="/favicon.ico">
      <link rel="stylesheet" href="https://cdn.example/b.css" media="print">
    </head><body>
      <link rel="stylesheet" href="../c.css?v=2">
    </body></html>"""
    assert stylesheet_links(html, "utf-8") == [
        "/css/a.css",
        "https://cdn.example/b.css",
        "../c.css?v=2",
    ]


@pytest.mark.parametrize(
    "rel",
    [
        "stylesheet",
        "StyleSheet",
        "STYLESHEET",
        "alternate stylesheet",
        " stylesheet  preload ",
        "a\tstylesheet\nb",
    ],
)
def test_rel_token_matches(rel: str) -> None:
    html = f'<link rel="{rel}" href="s.css">'.encode()
    assert stylesheet_links(html, None) == ["s.css"]


@pytest.mark.parametrize(
    "rel",
    ["stylesheets", "preload", "style sheet", "alternate", "", "stylesheet-x", "icon"],
)
def test_rel_token_does_not_match(rel: str) -> None:
    html = f'<link rel="{rel}" href="s.css">'.encode()
    assert stylesheet_links(html, None) == []


def test_missing_rel_is_skipped() -> None:
    assert stylesheet_links(b'<link href="s.css"><link rel href="t.css">', None) == []


def test_missing_href_is_skipped_but_empty_href_is_kept() -> None:
    html = b'<link rel="stylesheet"><link rel="stylesheet" href=""><link rel="stylesheet" href>'
    assert stylesheet_links(html, None) == ["", ""]


def test_only_link_tags_count() -> None:
    html = b'<a rel="stylesheet" href="a.css">x</a><style>@import "i.css";</style><area rel="stylesheet" href="r.css">'
    assert stylesheet_links(html, None) == []


def test_links_in_comments_do_not_count() -> None:
    html = b'<!-- <link rel="stylesheet" href="old.css"> --><link rel="stylesheet" href="new.css">'
    assert stylesheet_links(html, None) == ["new.css"]


def test_uppercase_tags_and_attributes() -> None:
    html = b'<LINK REL="STYLESHEET" HREF="UP.CSS"><Link Rel=Stylesheet Href=mixed.css>'
    assert stylesheet_links(html, None) == ["UP.CSS", "mixed.css"]


def test_entities_are_decoded() -> None:
    html = b'<link rel="stylesheet" href="/s.css?a=1&amp;b=2&#x26;c">'
    assert stylesheet_links(html, None) == ["/s.css?a=1&b=2&c"]


def test_self_closing_and_unquoted() -> None:
    html = b"<link rel=stylesheet href=/a.css /><link rel='stylesheet' href='b.css'/>"
    assert stylesheet_links(html, None) == ["/a.css", "b.css"]


def test_duplicate_href_keeps_first_like_browsers() -> None:
    html = b'<link rel="stylesheet" href="first.css" href="second.css">'
    assert stylesheet_links(html, None) == ["first.css"]


def test_non_utf8_charset_from_header() -> None:
    html = '<link rel="stylesheet" href="/css/стиль.css">'.encode("koi8-r")
    assert stylesheet_links(html, "koi8-r") == ["/css/стиль.css"]


def test_non_utf8_charset_from_meta_when_header_has_none() -> None:
    html = '<meta charset="euc-jp"><link rel="stylesheet" href="/css/日本.css">'.encode(
        "euc-jp"
    )
    assert stylesheet_links(html, None) == ["/css/日本.css"]


def test_empty_input() -> None:
    assert stylesheet_links(b"", None) == []


# --- validate -------------------------------------------------------------------


@pytest.mark.parametrize("target", ["http://example.com/", "https://[::1]:8443/"])
def test_validate_accepts(target: str) -> None:
    validate(target)


@pytest.mark.parametrize(
    "target",
    [
        "",
        "example.com",
        "http://",
        "ftp://example.com/",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "http://example.com/a b",
        "http://example.com/\r\n",
    ],
)
def test_validate_rejects(target: str) -> None:
    with pytest.raises(ValueError):
        validate(target)


# --- fetch ----------------------------------------------------------------------


def test_fetch(site: FixtureSite) -> None:
    html = b'<link rel="stylesheet" href="/a.css"><link rel="alternate stylesheet" href="b.css">'
    site.route(
        "/page", Route(body=html, headers={"Content-Type": "text/html; charset=utf-8"})
    )
    assert fetch(site.url + "/page") == ["/a.css", "b.css"]
    assert site.hits == [("/page", USER_AGENT)]


def test_fetch_uses_header_charset(site: FixtureSite) -> None:
    html = '<link rel="stylesheet" href="/ü.css">'.encode("cp1252")
    site.route(
        "/",
        Route(body=html, headers={"Content-Type": "text/html; charset=windows-1252"}),
    )
    assert fetch(site.url + "/") == ["/ü.css"]


def test_fetch_page_without_stylesheets_is_empty_list(site: FixtureSite) -> None:
    site.route("/", Route(body=b'<link rel="icon" href="/f.ico">'))
    assert fetch(site.url + "/") == []


def test_fetch_follows_redirect(site: FixtureSite) -> None:
    site.route("/old", Route(status=308, headers={"Location": "/new"}))
    site.route("/new", Route(body=b'<link rel="stylesheet" href="n.css">'))
    assert fetch(site.url + "/old") == ["n.css"]


@pytest.mark.parametrize(
    "route",
    [
        Route(status=404, body=b'<link rel="stylesheet" href="x.css">'),
        Route(status=500),
        Route(body=b""),
    ],
)
def test_fetch_failures_are_none(site: FixtureSite, route: Route) -> None:
    site.route("/", route)
    assert fetch(site.url + "/") is None


def test_fetch_connection_refused_is_none() -> None:
    with refused_url() as url:
        assert fetch(url + "/") is None
