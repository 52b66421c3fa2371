"""The http_robots plugin: parsing, validation and fetching."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sesshu_plugins import http_robots
from sesshu_plugins.http_robots import fetch, parse_robots, robots_url, validate

from sesshu.httpget import USER_AGENT
from tests.harness.site import FixtureSite, Route, refused_url


@pytest.fixture
def site() -> Iterator[FixtureSite]:
    with FixtureSite() as s:
        yield s


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


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_parse_line_endings(newline: str) -> None:
    text = newline.join(["User-agent: *", "Disallow: /a", "Allow: /b", ""])
    assert parse_robots(text) == ["/a", "/b"]


def test_parse_mixed_line_endings() -> None:
    assert parse_robots("Disallow: /a\r\nDisallow: /b\rDisallow: /c\n") == [
        "/a",
        "/b",
        "/c",
    ]


def test_parse_only_line_breaks_split_lines() -> None:
    # Form feed and NEL are not line breaks in robots.txt.
    assert parse_robots("Disallow: /a\x0cb\x85c\n") == ["/a\x0cb\x85c"]


def test_parse_bom() -> None:
    assert parse_robots("\ufeffDisallow: /a\nAllow: /b") == ["/a", "/b"]


def test_parse_ignores_other_directives_and_garbage() -> None:
    text = (
        "User-agent: *\n"
        "Sitemap: https://example.com/sitemap.xml\n"
        "Crawl-delay: 10\n"
        "Host: example.com\n"
        "Noindex: /n\n"
        "Disallow /no-colon\n"
        "Disallowed: /typo\n"
        "X-Disallow: /prefixed\n"
        "<html><body>not robots</body></html>\n"
        ":\n"
        "\n"
        "Disallow: /kept"
    )
    assert parse_robots(text) == ["/kept"]


def test_parse_values_kept_as_written() -> None:
    text = "Disallow: /*.php$\nAllow: /a:b/c?d=e\nDisallow: *\nDisallow: /%E2%82%AC/é\n"
    assert parse_robots(text) == ["/*.php$", "/a:b/c?d=e", "*", "/%E2%82%AC/é"]


def test_parse_empty_text() -> None:
    assert parse_robots("") == []
    assert parse_robots("\n\r\n") == []


# --- robots_url -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("http://example.com", "http://example.com/robots.txt"),
        ("https://example.com/a/b?q=1#f", "https://example.com/robots.txt"),
        ("HTTP://example.com:8080/x", "http://example.com:8080/robots.txt"),
        ("http://user:pw@example.com:81/", "http://example.com:81/robots.txt"),
        ("http://[::1]:8443/deep/", "http://[::1]:8443/robots.txt"),
    ],
)
def test_robots_url(target: str, expected: str) -> None:
    assert robots_url(target) == expected


# --- validate -------------------------------------------------------------------


@pytest.mark.parametrize(
    "target", ["http://example.com", "https://example.com:8443/x?y"]
)
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
        "http://exa mple.com/",
        "http://example.com/ x",
    ],
)
def test_validate_rejects(target: str) -> None:
    with pytest.raises(ValueError):
        validate(target)


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


@pytest.mark.parametrize(
    "route",
    [Route(status=404, body=b"Disallow: /x\n"), Route(status=500), Route(body=b"")],
)
def test_fetch_failures_are_none(site: FixtureSite, route: Route) -> None:
    site.route("/robots.txt", route)
    assert fetch(site.url) is None


def test_fetch_missing_is_none(site: FixtureSite) -> None:
    assert fetch(site.url) is None


def test_fetch_connection_refused_is_none() -> None:
    with refused_url() as url:
        assert fetch(url + "/a/b") is None


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
