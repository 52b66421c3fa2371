"""What every shipped HTTP plugin shares: which targets it accepts, and None on failure."""

from __future__ import annotations

from types import ModuleType

import pytest
from sesshu_plugins import http_javascript, http_robots, http_stylesheet

from tests.harness.site import FixtureSite, Route, refused_url

PLUGINS = [http_robots, http_javascript, http_stylesheet]


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.__name__.rsplit(".", 1)[1])
@pytest.mark.parametrize("target", [
    "http://example.com", "http://example.com/", "HTTPS://example.com:8443/p?q", "https://[::1]:8443/",
])
def test_validate_accepts(plugin: ModuleType, target: str) -> None:
    plugin.validate(target)


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.__name__.rsplit(".", 1)[1])
@pytest.mark.parametrize("target", [
    "", "example.com", "http://", "ftp://example.com/", "javascript:alert(1)", "file:///etc/passwd",
    "http://exa mple.com/", "http://example.com/ x", "http://example.com/a b", "\thttp://example.com/",
    "http://example.com:99999/", "http://example.com:abc/",
])
def test_validate_rejects(plugin: ModuleType, target: str) -> None:
    with pytest.raises(ValueError):
        plugin.validate(target)


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.__name__.rsplit(".", 1)[1])
@pytest.mark.parametrize("route", [
    Route(status=404, body=b'Disallow: /x\n<script src="x.js"></script><link rel=stylesheet href=x.css>'),
    Route(status=500),
    Route(body=b""),
], ids=["404", "500", "empty"])
def test_fetch_failures_are_none(site: FixtureSite, plugin: ModuleType, route: Route) -> None:
    site.route("/", route)
    site.route("/robots.txt", route)
    assert plugin.fetch(site.url + "/") is None


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.__name__.rsplit(".", 1)[1])
def test_fetch_connection_refused_is_none(plugin: ModuleType) -> None:
    with refused_url() as url:
        assert plugin.fetch(url + "/a/b") is None


# -- in a real worker, as the daemon runs them (sesshu.testing) ------------------------------

NAMES = ["http_robots", "http_javascript", "http_stylesheet"]
PAGE = b'Disallow: /x\n<script src="x.js"></script><link rel=stylesheet href=x.css>'


@pytest.mark.parametrize("name", NAMES)
def test_in_a_worker_a_page_is_done_and_a_busy_site_asks_for_later(site: FixtureSite, name: str) -> None:
    from sesshu.testing import run_plugin

    site.route("/", Route(body=PAGE, headers={"Content-Type": "text/html"}))
    site.route("/robots.txt", Route(body=PAGE, headers={"Content-Type": "text/plain"}))
    done = run_plugin(name, site.url + "/")
    assert done.outcome == "done" and done.result == {"http_robots": ["/x"], "http_javascript": ["x.js"],
                                                      "http_stylesheet": ["x.css"]}[name]
    site.route("/", Route(status=429, headers={"Retry-After": "300"}))
    site.route("/robots.txt", Route(status=503, headers={"Retry-After": "300"}))
    busy = run_plugin(name, site.url + "/")
    assert (busy.outcome, busy.retry_after) == ("retried", 300) and "answered" in busy.reason
    assert run_plugin(name, "ftp://example.com/").outcome == "rejected"
