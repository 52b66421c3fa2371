"""The http_stylesheet plugin: parsing, validation and fetching."""

from __future__ import annotations

from sesshu_plugins.http_stylesheet import fetch, stylesheet_links

from sesshu.httpget import USER_AGENT
from tests.harness.site import FixtureSite, Route

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


