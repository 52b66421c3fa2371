"""What every shipped HTTP plugin shares: which targets it accepts, and None on failure."""

from __future__ import annotations

from types import ModuleType

import pytest
from sesshu_plugins import http_javascript, http_robots, http_stylesheet

from tests.harness.site import FixtureSite, Route, refused_url

PLUGINS = [http_robots, http_javascript, http_stylesheet]


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.__name__.rsplit(".", 1)[1])
@pytest.mark.parametrize("target", [
    "http://example.com", "http://example.com/", "HTTPS://example.com:8443/p?q", "https://[2606:4700::1111]:8443/",
    "http://localhost/",  # a name: what it resolves to is checked at fetch
])
def test_validate_accepts(plugin: ModuleType, target: str) -> None:
    plugin.validate(target)


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.__name__.rsplit(".", 1)[1])
@pytest.mark.parametrize("target", [
    "", "example.com", "http://", "ftp://example.com/", "javascript:alert(1)", "file:///etc/passwd",
    "http://exa mple.com/", "http://example.com/ x", "http://example.com/a b", "\thttp://example.com/",
    "http://example.com:99999/", "http://example.com:abc/",
    # refused literal addresses (sesshu.plugin.addresses)
    "http://169.254.169.254/", "https://[::1]:8443/", "http://10.0.0.1/", "http://2130706433/",
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
def test_fetch_connection_refused_is_none(plugin: ModuleType, loopback_allowed: None) -> None:
    with refused_url() as url:
        assert plugin.fetch(url + "/a/b") is None


# -- in a real worker, as the daemon runs them (sesshu.testing) ------------------------------

NAMES = ["http_robots", "http_javascript", "http_stylesheet"]
LOOPBACK = ["127.0.0.0/8"]  # the workers' address guard refuses loopback unless allowed
PAGE = b'Disallow: /x\n<script src="x.js"></script><link rel=stylesheet href=x.css>'


@pytest.mark.parametrize("name", NAMES)
def test_in_a_worker_a_page_is_done_and_a_busy_site_asks_for_later(site: FixtureSite, name: str) -> None:
    from sesshu.testing import run_plugin

    site.route("/", Route(body=PAGE, headers={"Content-Type": "text/html"}))
    site.route("/robots.txt", Route(body=PAGE, headers={"Content-Type": "text/plain"}))
    done = run_plugin(name, site.url + "/", allow=LOOPBACK)
    assert done.outcome == "done" and done.result == {"http_robots": ["/x"], "http_javascript": ["x.js"],
                                                      "http_stylesheet": ["x.css"]}[name]
    site.route("/", Route(status=429, headers={"Retry-After": "300"}))
    site.route("/robots.txt", Route(status=503, headers={"Retry-After": "300"}))
    busy = run_plugin(name, site.url + "/", allow=LOOPBACK)
    assert (busy.outcome, busy.retry_after) == ("retried", 300) and "answered" in busy.reason
    assert run_plugin(name, "ftp://example.com/").outcome == "rejected"


@pytest.mark.parametrize("name", NAMES)
def test_in_a_worker_the_address_guard_holds_unless_loopback_is_allowed(site: FixtureSite, name: str) -> None:
    from sesshu.testing import run_plugin

    site.route("/", Route(body=PAGE, headers={"Content-Type": "text/html"}))
    site.route("/robots.txt", Route(body=PAGE, headers={"Content-Type": "text/plain"}))
    # This process allows loopback (the site fixture); the worker, with no allow list, does not.
    assert run_plugin(name, f"http://localhost:{site.port}/").outcome == "empty"
    assert site.connections == 0
    assert run_plugin(name, site.url + "/").outcome == "rejected"  # a literal address: at validate
    metadata = run_plugin(name, "http://169.254.169.254/latest/meta-data/")
    assert metadata.outcome == "rejected" and "refused address: 169.254.169.254, link-local" in metadata.reason
