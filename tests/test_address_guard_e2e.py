"""End to end: the outbound address guard (issue #23) in a real sesshud, with hostile targets.

Each test runs a real daemon against the session's SQS/SNS server, and sites
on loopback addresses that count every connection they accept, so "never
connected to" is observed, not assumed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.harness.aws import Deployment, Inbox, MotoServer, drain, poll, publish
from tests.harness.daemon import Daemon, write_config
from tests.harness.site import FixtureSite, Route

HTML = (b'<html><head><link rel="stylesheet" href="/a.css"><script src="/app.js"></script></head>'
        b"<body></body></html>")
ROUTES = {"/robots.txt": Route(body=b"User-agent: *\nDisallow: /private\n"),
          "/page": Route(body=HTML, headers={"Content-Type": "text/html; charset=utf-8"})}
SHIPPED = ("http_robots", "http_javascript", "http_stylesheet")
METADATA = ["http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "http://2852039166/latest/meta-data/", "http://[::ffff:169.254.169.254]/"]


def dead_targets(moto: MotoServer, dep: Deployment, n: int) -> list[str]:
    return sorted(json.loads(json.loads(b)["Message"])["target"] for b in Inbox(moto, dep.dlq_url).wait(n, 90))


def guarded(daemon: Daemon, address: str) -> list[str]:
    return re.findall(rf"GET refused: .*{re.escape(address)}, loopback .*", daemon.log())


def test_only_the_allowed_range_is_reached_whatever_the_target_or_redirect_says(
        moto: MotoServer, deployment: Deployment, cfg_path: Path, daemons: list[Daemon]) -> None:
    # Allowed: 127.0.0.1 alone. Refused: 127.0.0.2, where a second site listens, and the metadata address.
    with FixtureSite(ROUTES) as site, FixtureSite(ROUTES, host="127.0.0.2") as inside:
        site.route("/away", Route(status=302, headers={"Location": f"{inside.url}/page"}))
        d = Daemon(write_config(cfg_path, moto, deployment, workers={"network": {"allow": ["127.0.0.1/32"]}}),
                   moto)
        daemons.append(d.start())
        master = d.pid
        # The shipped plugins, unchanged, on the allowed site.
        for plugin in SHIPPED:
            publish(moto, deployment, plugin, f"{site.url}/page")
        results = Inbox(moto, deployment.results_queue_url)
        got = {doc["plugin"]: doc["result"] for doc in map(json.loads, results.wait(3))}
        assert got == {"http_robots": ["/private"], "http_javascript": ["/app.js"],
                       "http_stylesheet": ["/a.css"]}
        # Refused literal addresses: rejected at validate, so into the dead-letter queue at once.
        rejected = [*METADATA, f"{inside.url}/page"]
        publish(moto, deployment, "http_robots", *rejected)
        assert dead_targets(moto, deployment, len(rejected)) == sorted(rejected)
        for target in METADATA:
            d.wait_log(rf"rejected: http_robots {re.escape(target)}: invalid target: ValueError: refused address: "
                       r".*169\.254\.169\.254, link-local .*left for the dead-letter queue")
        # A redirect from the allowed site to the refused one: no data, one line naming the address.
        publish(moto, deployment, "http_javascript", f"{site.url}/away")
        d.wait_log(rf"empty: http_javascript {re.escape(site.url)}/away: no data")
        # The worker's line travels apart from its result: wait for it too, then count.
        d.wait_log(r"GET refused: 127\.0\.0\.2, loopback")
        assert len(guarded(d, "127.0.0.2")) == 1, d.log()
        assert inside.connections == 0 and inside.hits == []
        # Nothing lost, nothing left, and the master is the one that started.
        publish(moto, deployment, "chaos", "chaos:echo:after")
        assert "chaos:echo:after" in {json.loads(b)["target"] for b in results.wait(4)}
        assert d.pid == master and d.proc is not None and d.proc.poll() is None
        assert d.stop() == 0
        assert "outcomes: done=4, empty=1, rejected=4, retried=0" in d.log()
        assert len(guarded(d, "127.0.0.2")) == 1  # still one, with every worker's output in
        assert drain(moto, deployment.queue_url) == []


def test_a_name_that_resolves_to_loopback_gets_no_connection_when_loopback_is_not_allowed(
        moto: MotoServer, deployment: Deployment, cfg_path: Path, daemons: list[Daemon]) -> None:
    with FixtureSite(ROUTES) as site:
        d = Daemon(write_config(cfg_path, moto, deployment, workers={"network": {"allow": []}}), moto)
        daemons.append(d.start())
        master = d.pid
        target = f"http://localhost:{site.port}/page"
        publish(moto, deployment, "http_stylesheet", target)
        d.wait_log(rf"empty: http_stylesheet {re.escape(target)}: no data .* deleted")
        d.wait_log(r"GET refused: localhost is ")  # the worker's line travels apart from its result
        lines = re.findall(r"GET refused: localhost is \S+, loopback .*", d.log())
        assert len(lines) == 1 and re.search(r"is (127\.0\.0\.1|::1), loopback", lines[0]), d.log()
        assert site.connections == 0 and site.hits == []
        # The literal address is rejected before any fetch.
        publish(moto, deployment, "http_robots", f"{site.url}/page")
        assert dead_targets(moto, deployment, 1) == [f"{site.url}/page"]
        assert site.connections == 0
        publish(moto, deployment, "chaos", "chaos:echo:after")
        Inbox(moto, deployment.results_queue_url).wait(1)
        poll(lambda: len(d.workers()) == 2, 30, what="both workers still there")
        assert d.pid == master and d.stop() == 0
        assert "outcomes: done=1, empty=1, rejected=1, retried=0" in d.log()
        assert len(re.findall(r"GET refused: ", d.log())) == 1  # still one, with every worker's output in
        assert drain(moto, deployment.queue_url) == []
