"""The http_robots plugin: parsing, validation and fetching."""

from __future__ import annotations

import pytest
from sesshu_plugins import http_robots
from sesshu_plugins.http_robots import fetch, parse_robots

from sesshu.httpget import USER_AGENT
from tests.harness.site import FixtureSite, Route

# --- parse_robots -------------------------------------------------------------


def test_parse_basic_in_file_order() -> None:
    text = "User-agent: *\nDisallow: /private\nAllow: /private/ok\nDisallow: /tmp/\n"
    assert parse_robots(text) == ["/private", "/private/ok", "/tmp/"]


def test_parse_directive_names_are_case_insensitive() -> None:
    text = "DISALLOW: /a\nallow: /b\nDisAllow: /c\naLLoW: /d\n"
    assert parse_robots(text) == ["/a", "/b", "/c", "/d"]


def test_parse_whitespace_around_name_colon_and_value() -> None:
    text = "  DISALLOW : /x\n\tAllow\t:\t/y \t\nDisallow:/z\n"
    assert parse_robots(text) == ["/x", "/y", "/z"]


def test_parse_strips_comments() -> None:
    text = (
        "# header comment\nDisallow: /a # why\nAllow: /b#tight\n# Disallow: /hidden\n"
    )
    assert parse_robots(text) == ["/a", "/b"]


def test_parse_empty_values_are_kept_in_order() -> None:
    text = "Disallow: /a\nDisallow:\nAllow:   \nDisallow: # nothing\nAllow: /b\n"
    assert parse_robots(text) == ["/a", "", "", "", "/b"]


# --- fetch ----------------------------------------------------------------------


def test_fetch_at_origin_despite_path_and_port(site: FixtureSite) -> None:
    site.route(
        "/robots.txt", Route(body=b"User-agent: *\nDisallow: /admin\nAllow: /\n")
    )
    target = site.url + "/some/page.html?q=1#frag"
    assert fetch(target) == ["/admin", "/"]
    assert site.hits == [("/robots.txt", USER_AGENT)]


def test_fetch_drops_userinfo(site: FixtureSite) -> None:
    site.route("/robots.txt", Route(body=b"Disallow: /x\n"))
    target = site.url.replace("http://", "http://user:secret@") + "/p"
    assert fetch(target) == ["/x"]
    assert site.hits == [("/robots.txt", USER_AGENT)]


def test_fetch_decodes_crlf_and_bom(site: FixtureSite) -> None:
    body = b"\xef\xbb\xbfUser-agent: *\r\nDisallow: /caf\xc3\xa9\r\n"
    site.route("/robots.txt", Route(body=body, headers={"Content-Type": "text/plain"}))
    assert fetch(site.url) == ["/café"]


def test_fetch_uses_declared_charset(site: FixtureSite) -> None:
    body = "Disallow: /café\n".encode("latin-1")
    headers = {"Content-Type": "text/plain; charset=ISO-8859-1"}
    site.route("/robots.txt", Route(body=body, headers=headers))
    assert fetch(site.url) == ["/café"]


def test_fetch_no_rules_is_empty_list(site: FixtureSite) -> None:
    site.route("/robots.txt", Route(body=b"User-agent: *\nCrawl-delay: 5\n"))
    assert fetch(site.url) == []


def test_fetch_follows_redirect(site: FixtureSite) -> None:
    site.route(
        "/robots.txt", Route(status=301, headers={"Location": "/real-robots.txt"})
    )
    site.route("/real-robots.txt", Route(body=b"Disallow: /r\n"))
    assert fetch(site.url + "/x") == ["/r"]


def test_fetch_missing_is_none(site: FixtureSite) -> None:
    assert fetch(site.url) is None


def test_fetch_truncated_body_still_parsed(
    site: FixtureSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_get = http_robots.get
    monkeypatch.setattr(http_robots, "get", lambda url: real_get(url, max_bytes=40))
    body = b"Disallow: /first\n" + b"Disallow: /filler\n" * 1000
    site.route("/robots.txt", Route(body=body))
    result = fetch(site.url)
    assert result is not None
    assert result[0] == "/first"
    assert len(result) <= 3


def test_fetch_slow_server_is_none(
    site: FixtureSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_get = http_robots.get
    monkeypatch.setattr(
        http_robots,
        "get",
        lambda url: real_get(url, connect_timeout=0.5, read_timeout=0.2),
    )
    site.route("/robots.txt", Route(body=b"Disallow: /x\n", delay=5.0))
    assert fetch(site.url) is None
