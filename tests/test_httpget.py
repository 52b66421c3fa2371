"""sesshu.httpget against a real loopback site."""

from __future__ import annotations

import gzip
import logging
import os
import time
from collections.abc import Iterator

import pytest

from sesshu import httpget
from sesshu.httpget import USER_AGENT, Page, check_http_target, get
from sesshu.plugin import addresses
from tests.harness.site import FixtureSite, Route, refused_url


@pytest.fixture
def site() -> Iterator[FixtureSite]:
    with FixtureSite() as s:
        yield s


@pytest.fixture(autouse=True)
def loopback_allowed() -> Iterator[None]:
    """The fixture sites are on loopback, which the address guard refuses unless allowed."""
    addresses.allow(["127.0.0.0/8", "::1/128"])
    yield
    addresses.allow([])


# --- Page.text -------------------------------------------------------------


def _page(content: bytes, charset: str | None = None) -> Page:
    return Page(url="http://x/", content=content, charset=charset, truncated=False)


def test_text_defaults_to_utf8() -> None:
    assert _page("héllo".encode()).text() == "héllo"


def test_text_uses_charset() -> None:
    assert _page("héllo".encode("latin-1"), "iso-8859-1").text() == "héllo"


def test_text_replaces_invalid_bytes() -> None:
    assert _page(b"a\xffb").text() == "a\ufffdb"


def test_text_strips_utf8_bom() -> None:
    assert _page(b"\xef\xbb\xbfhi").text() == "hi"
    assert _page(b"\xef\xbb\xbfhi", "utf-8").text() == "hi"


def test_text_bom_beats_declared_charset() -> None:
    assert _page(b"\xef\xbb\xbfh\xc3\xa9", "iso-8859-1").text() == "hé"
    assert _page("\ufeffhé".encode("utf-16-le"), "utf-8").text() == "hé"


def test_text_unknown_charset_falls_back_to_utf8() -> None:
    assert _page("é".encode(), "no-such-codec").text() == "é"


# --- check_http_target ------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "http://example.com",
        "https://example.com/path?q=1#frag",
        "HTTPS://Example.COM:8443/",
        "http://127.0.0.1:8080",
        "http://[::1]/",
        "http://user:pw@example.com/",
        "http://bücher.example/",
    ],
)
def test_check_http_target_accepts(target: str) -> None:
    check_http_target(target)


@pytest.mark.parametrize(
    "target",
    [
        "",
        "example.com",
        "//example.com/",
        "http://",
        "http:///path",
        "http:example.com",
        "http://:80/",
        "http://user@/",
        "ftp://example.com/",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "data:text/html,hi",
        "mailto:a@example.com",
        "http://exa mple.com/",
        " http://example.com/",
        "http://example.com/ ",
        "http://example.com/a b",
        "http://example.com/\n",
        "http://example.com/\tx",
        "http://example.com/\x00",
        "http://example.com/\x7f",
        "http://example.com/\u2028",
        "http://example.com:99999/",
        "http://example.com:port/",
        "http://[::1/",
    ],
)
def test_check_http_target_rejects(target: str) -> None:
    with pytest.raises(ValueError):
        check_http_target(target)


# --- get --------------------------------------------------------------------


def test_get_returns_page(site: FixtureSite) -> None:
    site.route("/", Route(body=b"hello", headers={"Content-Type": "text/plain"}))
    page = get(site.url + "/")
    assert page == Page(
        url=site.url + "/", content=b"hello", charset=None, truncated=False
    )


def test_get_sends_exact_user_agent(site: FixtureSite) -> None:
    site.route("/ua", Route(body=b"x"))
    assert get(site.url + "/ua") is not None
    assert site.hits == [("/ua", "Panorama/sesshu")]
    assert USER_AGENT == "Panorama/sesshu"


@pytest.mark.parametrize(
    ("content_type", "charset"),
    [
        ("text/html; charset=ISO-8859-1", "iso-8859-1"),
        ('text/html; charset="utf-8"', "utf-8"),
        ("text/html;CHARSET = windows-1251 ; foo=bar", "windows-1251"),
        ("text/html; foo=bar", None),
        ("text/html; charset=", None),
        ("text/html; charset=no-such-codec", None),
        ("text/html", None),
    ],
)
def test_get_charset_from_content_type(
    site: FixtureSite, content_type: str, charset: str | None
) -> None:
    site.route("/", Route(body=b"x", headers={"Content-Type": content_type}))
    page = get(site.url + "/")
    assert page is not None
    assert page.charset == charset


def test_get_charset_ignores_meta_tag(site: FixtureSite) -> None:
    site.route(
        "/",
        Route(body=b'<meta charset="koi8-r">', headers={"Content-Type": "text/html"}),
    )
    page = get(site.url + "/")
    assert page is not None
    assert page.charset is None


@pytest.mark.parametrize("status", [201, 204, 301, 304, 403, 404, 500, 503])
def test_get_non_200_is_none(site: FixtureSite, status: int) -> None:
    site.route("/", Route(status=status, body=b"body"))
    assert get(site.url + "/") is None


def test_get_unknown_path_is_none(site: FixtureSite) -> None:
    assert get(site.url + "/missing") is None
    assert site.hits == [("/missing", USER_AGENT)]


def test_get_empty_body_is_none(site: FixtureSite) -> None:
    site.route("/", Route(body=b""))
    assert get(site.url + "/") is None


def test_get_connection_refused_is_none() -> None:
    with refused_url() as url:
        assert get(url + "/", connect_timeout=1.0) is None


@pytest.mark.parametrize(
    "url",
    [
        "",
        "not a url",
        "http://",
        "http://[::1",
        "ftp://127.0.0.1/",
        "http://example.com:99999/",
    ],
)
def test_get_bad_url_is_none(url: str) -> None:
    assert get(url) is None


def test_get_truncates_at_max_bytes(site: FixtureSite) -> None:
    body = bytes(range(256)) * 1000
    site.route("/big", Route(body=body))
    page = get(site.url + "/big", max_bytes=1000)
    assert page is not None
    assert page.content == body[:1000]
    assert page.truncated


def test_get_body_of_exactly_max_bytes_is_not_truncated(site: FixtureSite) -> None:
    site.route("/", Route(body=b"x" * 1000))
    page = get(site.url + "/", max_bytes=1000)
    assert page is not None
    assert page.content == b"x" * 1000
    assert not page.truncated


def test_get_caps_decompressed_size(site: FixtureSite) -> None:
    bomb = gzip.compress(b"\0" * (4 << 20))
    site.route("/gz", Route(body=bomb, headers={"Content-Encoding": "gzip"}))
    page = get(site.url + "/gz", max_bytes=4096)
    assert page is not None
    assert page.content == b"\0" * 4096
    assert page.truncated


def test_get_follows_redirects(site: FixtureSite) -> None:
    site.route("/a", Route(status=301, headers={"Location": "/b"}))
    site.route("/b", Route(status=302, headers={"Location": site.url + "/c?x=1"}))
    site.route("/c", Route(body=b"done"))
    page = get(site.url + "/a")
    assert page is not None
    assert page.url == site.url + "/c?x=1"
    assert page.content == b"done"
    assert [path for path, _ in site.hits] == ["/a", "/b", "/c?x=1"]
    assert {agent for _, agent in site.hits} == {USER_AGENT}


def test_get_follows_redirect_to_another_origin(site: FixtureSite) -> None:
    with FixtureSite({"/there": Route(body=b"other")}) as other:
        site.route("/", Route(status=307, headers={"Location": other.url + "/there"}))
        page = get(site.url + "/")
        assert page is not None
        assert page.url == other.url + "/there"
        assert other.hits == [("/there", USER_AGENT)]


def _chain(site: FixtureSite, hops: int) -> None:
    for i in range(hops):
        site.route(f"/{i}", Route(status=302, headers={"Location": f"/{i + 1}"}))
    site.route(f"/{hops}", Route(body=b"end"))


def test_get_allows_exactly_max_redirects(site: FixtureSite) -> None:
    _chain(site, 3)
    page = get(site.url + "/0", max_redirects=3)
    assert page is not None
    assert page.content == b"end"


def test_get_too_many_redirects_is_none(site: FixtureSite) -> None:
    _chain(site, 4)
    assert get(site.url + "/0", max_redirects=3) is None
    assert len(site.hits) == 4


def test_get_zero_redirects_allowed(site: FixtureSite) -> None:
    _chain(site, 1)
    assert get(site.url + "/0", max_redirects=0) is None


def test_get_redirect_loop_is_none(site: FixtureSite) -> None:
    site.route("/loop", Route(status=302, headers={"Location": "/loop"}))
    assert get(site.url + "/loop") is None
    assert len(site.hits) == 6  # the first request plus five redirects


def test_get_redirect_to_other_scheme_is_none(site: FixtureSite) -> None:
    site.route("/", Route(status=302, headers={"Location": "file:///etc/passwd"}))
    assert get(site.url + "/") is None


def test_get_redirect_without_location_is_none(site: FixtureSite) -> None:
    site.route("/", Route(status=302, body=b"nowhere"))
    assert get(site.url + "/") is None


def test_get_does_not_read_redirect_bodies(site: FixtureSite) -> None:
    # Reading this redirect body would take 50 seconds.
    site.route(
        "/r", Route(status=302, headers={"Location": "/t"}, body=b"x" * 1000, drip=0.05)
    )
    site.route("/t", Route(body=b"target"))
    started = time.monotonic()
    page = get(site.url + "/r", connect_timeout=1.0, read_timeout=1.0)
    assert page is not None
    assert page.content == b"target"
    assert time.monotonic() - started < 25  # half the 50 s the body would take: generous for a loaded host


def test_get_redirect_to_utf8_location(site: FixtureSite) -> None:
    # http.server sends header values as latin-1, so this puts UTF-8 bytes
    # on the wire, as real servers do.
    location = "/caf\u00e9".encode().decode("latin-1")
    site.route("/", Route(status=302, headers={"Location": location}))
    site.route("/caf%C3%A9", Route(body=b"accent"))
    page = get(site.url + "/")
    assert page is not None
    assert page.url == site.url + "/caf%C3%A9"
    assert page.content == b"accent"


def test_get_slow_response_is_none(site: FixtureSite) -> None:
    site.route("/slow", Route(body=b"late", delay=30.0))
    started = time.monotonic()
    assert get(site.url + "/slow", connect_timeout=0.5, read_timeout=0.2) is None
    assert time.monotonic() - started < 15  # half the 30 s the answer would take: generous for a loaded host


def test_get_slow_drip_hits_deadline(site: FixtureSite) -> None:
    # Each byte arrives well within read_timeout, so only the overall
    # deadline (0.2 + 3 * 0.2 seconds) stops the 20-second body.
    site.route("/drip", Route(body=b"x" * 400, drip=0.05))
    started = time.monotonic()
    assert get(site.url + "/drip", connect_timeout=0.2, read_timeout=0.2) is None
    assert time.monotonic() - started < 10  # half the 20 s the body would take: generous for a loaded host


def test_get_logs_failures_at_debug_without_body(
    site: FixtureSite, caplog: pytest.LogCaptureFixture
) -> None:
    site.route("/", Route(status=500, body=b"SECRET-BODY"))
    with caplog.at_level(logging.DEBUG, logger="sesshu.httpget"):
        assert get(site.url + "/") is None
    records = [r for r in caplog.records if r.name == "sesshu.httpget"]
    assert records
    assert all(r.levelno == logging.DEBUG for r in records)
    assert "SECRET-BODY" not in caplog.text


def test_get_reuses_one_session(site: FixtureSite) -> None:
    site.route("/", Route(body=b"x"))
    assert get(site.url + "/") is not None
    first = httpget._session
    assert get(site.url + "/") is not None
    assert first is not None
    assert httpget._session is first


def test_forked_child_gets_its_own_session(site: FixtureSite) -> None:
    site.route("/", Route(body=b"x"))
    assert get(site.url + "/") is not None
    assert httpget._session is not None
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        ok = httpget._session is None and get(site.url + "/") is not None
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(site.hits) == 2


# -- Retry-After: a site asking to be asked again later -------------------------------------


@pytest.mark.parametrize(("status", "header", "seconds"), [(429, "120", 120), (503, "7", 7), (503, "0", 0)])
def test_429_or_503_with_retry_after_raises_retry_later(site: FixtureSite, status: int, header: str,
                                                         seconds: int) -> None:
    from sesshu.plugin import RetryLater

    site.route("/", Route(status=status, body=b"busy", headers={"Retry-After": header}))
    with pytest.raises(RetryLater) as raised:
        get(site.url + "/")
    assert raised.value.seconds == seconds and str(status) in raised.value.reason


@pytest.mark.parametrize(("status", "header"), [(429, None), (503, "soon"), (500, "60"), (404, "60"),
                                                (503, "x" * 100)])
def test_without_a_usable_retry_after_it_is_none_as_before(site: FixtureSite, status: int, header: str | None) -> None:
    site.route("/", Route(status=status, body=b"no", headers={"Retry-After": header} if header else {}))
    assert get(site.url + "/") is None


def test_retry_after_reads_seconds_and_http_dates() -> None:
    from sesshu.httpget import retry_after

    now = 1_700_000_000.0
    assert retry_after("90", now) == 90.0
    assert retry_after(" 5 ", now) == 5.0
    assert retry_after("Tue, 14 Nov 2023 22:15:00 GMT", now) == 100.0  # 100 s after ``now``
    assert retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now) == 0.0  # already past
    for unusable in (None, "", "-5", "1.5", "soon", "Tue, 14 Nov 2023 22:15:20", "٣", "9" * 65):
        assert retry_after(unusable, now) is None, unusable


# -- the outbound address guard --------------------------------------------------------------


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sesshu.httpget" and r.levelno >= logging.WARNING]


def test_loopback_is_refused_unless_allowed_and_never_connected_to(
        site: FixtureSite, caplog: pytest.LogCaptureFixture) -> None:
    site.route("/", Route(body=b"secret"))
    addresses.allow([])
    with caplog.at_level(logging.DEBUG, logger="sesshu.httpget"):
        assert get(site.url + "/") is None
    assert site.connections == 0 and site.hits == []
    assert _refusals(caplog) == ["GET refused: 127.0.0.1, loopback (not in workers.network.allow); "
                                 "no connection made"]
    addresses.allow(["127.0.0.1/32"])
    page = get(site.url + "/")
    assert page is not None and page.content == b"secret"


def test_a_name_that_resolves_to_loopback_is_refused(site: FixtureSite, caplog: pytest.LogCaptureFixture) -> None:
    site.route("/", Route(body=b"secret"))
    addresses.allow([])
    with caplog.at_level(logging.WARNING, logger="sesshu.httpget"):
        assert get(f"http://localhost:{site.port}/") is None
    assert site.connections == 0
    (line,) = _refusals(caplog)
    assert line.startswith("GET refused: localhost is ") and "loopback" in line
    addresses.allow(["127.0.0.0/8", "::1/128"])
    assert get(f"http://localhost:{site.port}/") is not None


def test_a_redirect_to_a_refused_address_is_refused_before_it_connects(
        site: FixtureSite, caplog: pytest.LogCaptureFixture) -> None:
    addresses.allow(["127.0.0.1/32"])
    with FixtureSite({"/inside": Route(body=b"secret")}, host="127.0.0.2") as inside:
        site.route("/", Route(status=302, headers={"Location": inside.url + "/inside"}))
        with caplog.at_level(logging.WARNING, logger="sesshu.httpget"):
            assert get(site.url + "/") is None
        assert site.hits == [("/", USER_AGENT)]
        assert inside.connections == 0
        assert _refusals(caplog) == ["GET refused: 127.0.0.2, loopback (not in workers.network.allow); "
                                     "no connection made"]
        addresses.allow(["127.0.0.0/8"])  # the same hop, allowed: the site is really there
        page = get(site.url + "/")
        assert page is not None and page.content == b"secret"


def test_every_hop_of_a_chain_is_checked(site: FixtureSite) -> None:
    addresses.allow(["127.0.0.1/32"])
    with FixtureSite({"/": Route(body=b"secret")}, host="127.0.0.3") as inside:
        site.route("/0", Route(status=301, headers={"Location": "/1"}))
        site.route("/1", Route(status=307, headers={"Location": f"http://0x7f.3:{inside.port}/"}))
        assert get(site.url + "/0") is None
        assert [path for path, _ in site.hits] == ["/0", "/1"]
        assert inside.connections == 0


def test_proxies_from_the_environment_are_not_used(site: FixtureSite, monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy would connect for us, to addresses the guard never sees.
    site.route("/", Route(body=b"direct"))
    with FixtureSite({}) as proxy:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy.url)
        page = get(site.url + "/")
        assert page is not None and page.content == b"direct"
        assert proxy.connections == 0


@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1:8080/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[fe80::1%25eth0]/",
    "https://10.0.0.1/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://2852039166/",
    "http://0xa9.0xfe.0xa9.0xfe/",
    "http://127.1/",
    "http://017700000001/",
    "http://user:pw@192.168.1.1:81/x",
])
def test_check_http_target_rejects_refused_literal_addresses(target: str) -> None:
    addresses.allow([])
    with pytest.raises(ValueError, match="refused address"):
        check_http_target(target)


def test_check_http_target_takes_allowed_addresses_and_host_names() -> None:
    addresses.allow(["127.0.0.0/8", "169.254.169.254/32"])
    for target in ("http://127.1/", "http://169.254.169.254/", "http://localhost/", "http://93.184.215.14/"):
        check_http_target(target)
    with pytest.raises(ValueError, match=r"refused address: 10\.0\.0\.1, private"):
        check_http_target("http://10.0.0.1/")
