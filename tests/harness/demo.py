"""``make demo``: sesshud end to end on a local SQS/SNS server, with sample jobs.

It starts moto's server and a small fixture web site on 127.0.0.1, creates
the queue, DLQ, topics and subscriptions, starts ``sesshud``, submits sample
jobs (and one malformed message), prints each result as it arrives, then
shuts everything down. Nothing leaves the machine.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.harness.aws import MotoServer, aws_env, drain, provision
from tests.harness.daemon import SESSHUD
from tests.harness.site import FixtureSite, Route

WORKDIR = Path(".demo")

PAGE = b"""<!doctype html><html><head>
<title>Demo shop</title>
<link rel="stylesheet" href="/css/site.css">
<link rel="alternate stylesheet" href="/css/contrast.css" title="High contrast">
<link rel="icon" href="/favicon.ico">
<script src="/js/vendor.js"></script>
<script src="https://cdn.example.net/analytics.js" async></script>
</head><body><h1>Hello</h1><script>console.log("inline")</script></body></html>
"""
ROBOTS = b"""# demo robots.txt
User-agent: *
Disallow: /cart
Disallow: /checkout   # never crawl checkout
Allow: /products
Sitemap: /sitemap.xml
"""


def main() -> int:
    WORKDIR.mkdir(exist_ok=True)
    routes = {"/": Route(body=PAGE, headers={"Content-Type": "text/html; charset=utf-8"}),
              "/robots.txt": Route(body=ROBOTS, headers={"Content-Type": "text/plain"})}
    with MotoServer(log_path=WORKDIR / "moto.log") as server, FixtureSite(routes) as site:
        print(f"== local SQS/SNS server (moto) at {server.url}; fixture site at {site.url}")
        dep = provision(server, "demo")
        print(f"== queue {dep.queue_url}\n   DLQ   {dep.dlq_url}\n   results topic {dep.results_topic}")
        config = WORKDIR / "sesshu.yaml"
        config.write_text(yaml.safe_dump({
            "plugin": ["http_robots", "http_javascript", "http_stylesheet"],
            # The fixture site is on loopback, which the workers' address guard refuses unless allowed.
            "workers": {"count": 2, "timeout": 10, "polling": {"interval": 5},
                        "network": {"allow": ["127.0.0.0/8"]}},
            "bus": {"region": "us-east-1", "endpoint_url": server.url,
                    "input": {"queue": "demo-requests"}, "output": {"topic": dep.results_topic}},
        }))
        print(f"== starting: {SESSHUD.name} -c {config}")
        daemon = subprocess.Popen([str(SESSHUD), "-c", str(config)], env=aws_env(server.url))
        try:
            return _run(server, dep, site.url, daemon)
        finally:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(60)
            print(f"== sesshud exited with status {daemon.returncode}")


def _run(server: MotoServer, dep, site_url: str, daemon: subprocess.Popen[bytes]) -> int:  # type: ignore[no-untyped-def]
    sns, sqs = server.client("sns"), server.client("sqs")
    jobs = [("http_robots", f"{site_url}/"), ("http_javascript", f"{site_url}/"),
            ("http_stylesheet", f"{site_url}/"), ("http_robots", "http://127.0.0.1:1/")]
    for plugin, target in jobs:
        sns.publish(TopicArn=dep.requests_topic, Message=json.dumps({"plugin": plugin, "target": target}))
        print(f"== submitted {plugin} {target}")
    sqs.send_message(QueueUrl=dep.queue_url, MessageBody='{"plugin": "no_such_plugin", "target": "x"}')
    print("== submitted a request for a plugin that does not exist (it must be rejected)")
    metadata = "http://169.254.169.254/latest/meta-data/"
    sns.publish(TopicArn=dep.requests_topic, Message=json.dumps({"plugin": "http_robots", "target": metadata}))
    print(f"== submitted http_robots {metadata} (the address guard must reject it)")
    # Three results expected; the unreachable target yields no data ("empty").
    results: list[dict[str, object]] = []
    deadline = time.monotonic() + 60
    while len(results) < 3 and time.monotonic() < deadline and daemon.poll() is None:
        for m in drain(server, dep.results_queue_url, wait=1):
            doc = json.loads(m["Body"])
            results.append(doc)
            print(f"== RESULT {json.dumps(doc)}")
    dead: list[dict[str, object]] = []
    while len(dead) < 2 and time.monotonic() < deadline:
        dead += drain(server, dep.dlq_url, wait=1)
    print(f"== dead-letter queue holds {len(dead)} message(s): {[m['Body'] for m in dead]}")
    ok = len(results) == 3 and len(dead) == 2
    print("== demo OK" if ok else "== demo FAILED: not every expected result arrived")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
