"""The http_javascript plugin: parsing, validation and fetching."""

from __future__ import annotations

from sesshu_plugins.http_javascript import fetch, script_sources

from sesshu.httpget import USER_AGENT
from tests.harness.site import FixtureSite, Route

# --- script_sources -------------------------------------------------------------


def test_sources_in_document_order_as_written() -> None:
    html = b"""<html><head>
      <script src="/js/a.js"></script>
      <script src="https://cdn.example/b.js" async></script>
    </head><body>
      <script src="../c.js?v=1"></script>
      <script src="//cdn.example/d.js"></script>
    </body></html>"""
    assert script_sources(html, "utf-8") == [
        "/js/a.js",
        "https://cdn.example/b.js",
        "../c.js?v=1",
        "//cdn.example/d.js",
    ]


def test_inline_scripts_without_src_are_skipped() -> None:
    html = b'<script>var a = 1;</script><script type="module" src="m.js"></script><script></script>'
    assert script_sources(html, None) == ["m.js"]


def test_empty_and_valueless_src_are_kept() -> None:
    html = b'<script src=""></script><script src></script><script src="x.js"></script>'
    assert script_sources(html, None) == ["", "", "x.js"]


def test_src_whitespace_is_not_stripped() -> None:
    assert script_sources(b'<script src=" a.js "></script>', None) == [" a.js "]


def test_scripts_in_comments_do_not_count() -> None:
    html = b"""<!-- <script src="old.js"></script> -->
    <script src="new.js"></script>
    <!--
    <script src="also-old.js"></script>
    -->"""
    assert script_sources(html, None) == ["new.js"]


def test_script_text_is_not_parsed_as_markup() -> None:
    html = b"""<script>document.write('<scr' + 'ipt src="w.js">');
    var s = "<script src='inner.js'>";</script><script src="real.js"></script>"""
    assert script_sources(html, None) == ["real.js"]


def test_uppercase_tags_and_attributes() -> None:
    html = b'<SCRIPT SRC="UP.JS"></SCRIPT><Script Src=mixed.js></Script>'
    assert script_sources(html, None) == ["UP.JS", "mixed.js"]


def test_entities_are_decoded() -> None:
    html = b'<script src="/a.js?x=1&amp;y=2&#38;z=&quot;3&quot;"></script>'
    assert script_sources(html, None) == ['/a.js?x=1&y=2&z="3"']


def test_duplicate_src_keeps_first_like_browsers() -> None:
    assert script_sources(
        b'<script src="first.js" src="second.js"></script>', None
    ) == ["first.js"]


def test_other_tags_with_src_are_ignored() -> None:
    html = b'<img src="i.png"><iframe src="f.html"></iframe><noscript-x src="n.js"></noscript-x>'
    assert script_sources(html, None) == []


def test_unclosed_and_malformed_markup() -> None:
    html = b'<p><script src="a.js"><div><script src=b.js'
    assert script_sources(html, None) == ["a.js"]


def test_non_utf8_charset_from_header() -> None:
    html = '<script src="/js/привет.js"></script>'.encode("windows-1251")
    assert script_sources(html, "windows-1251") == ["/js/привет.js"]


def test_non_utf8_charset_from_meta_when_header_has_none() -> None:
    html = '<meta charset="shift_jis"><script src="/js/日本語.js"></script>'.encode(
        "shift_jis"
    )
    assert script_sources(html, None) == ["/js/日本語.js"]


def test_empty_and_non_html_input() -> None:
    assert script_sources(b"", None) == []
    assert script_sources(b"\x00\xff\xfe binary", None) == []


# --- validate -------------------------------------------------------------------


# --- fetch ----------------------------------------------------------------------


def test_fetch(site: FixtureSite) -> None:
    html = b'<html><script src="/a.js"></script><script src="b.js"></script></html>'
    site.route("/page", Route(body=html, headers={"Content-Type": "text/html"}))
    assert fetch(site.url + "/page") == ["/a.js", "b.js"]
    assert site.hits == [("/page", USER_AGENT)]


def test_fetch_uses_header_charset(site: FixtureSite) -> None:
    html = '<script src="/é.js"></script>'.encode("latin-1")
    headers = {"Content-Type": "text/html; charset=iso-8859-1"}
    site.route("/", Route(body=html, headers=headers))
    assert fetch(site.url + "/") == ["/é.js"]


def test_fetch_page_without_scripts_is_empty_list(site: FixtureSite) -> None:
    site.route("/", Route(body=b"<html><body>hi</body></html>"))
    assert fetch(site.url + "/") == []


def test_fetch_follows_redirect(site: FixtureSite) -> None:
    site.route("/old", Route(status=302, headers={"Location": "/new"}))
    site.route("/new", Route(body=b'<script src="n.js"></script>'))
    assert fetch(site.url + "/old") == ["n.js"]


