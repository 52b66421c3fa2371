"""The shipped alert rules and dashboard name only metrics a running sesshud exports, and promtool accepts the rules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.harness.aws import Deployment, Inbox, MotoServer, free_port, publish
from tests.harness.daemon import Daemon, write_config

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "etc" / "prometheus" / "sesshu-alerts.yml"
DASHBOARD = ROOT / "etc" / "grafana" / "sesshu-dashboard.json"
METRIC = re.compile(r"\bsesshu_[a-z_]+\b")


def rule_exprs() -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in doc["panels"] for t in panel["targets"]]


def named(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in METRIC.findall(e)}


def test_the_files_name_metrics_at_all() -> None:
    assert len(rule_exprs()) >= 8 and len(dashboard_exprs()) >= 9
    assert {"sesshu_jobs_total", "sesshu_workers", "sesshu_bus_errors_total"} <= named(rule_exprs())
    assert {"sesshu_jobs_total", "sesshu_job_duration_seconds_bucket"} <= named(dashboard_exprs())


def test_every_metric_they_name_is_exported_by_a_running_daemon(moto: MotoServer, deployment: Deployment,
                                                                 cfg_path: Path, daemons: list[Daemon]) -> None:
    port = free_port()
    d = Daemon(write_config(cfg_path, moto, deployment, metrics={"address": "127.0.0.1", "port": port}), moto)
    daemons.append(d.start())
    publish(moto, deployment, "chaos", "chaos:echo:dash")
    Inbox(moto, deployment.results_queue_url).wait(1)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        page = reply.read().decode()
    # Every family says its type even before a labelled child exists; a histogram's samples add suffixes.
    families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", page, re.MULTILINE))
    exported = set(families) | {f"{name}{suffix}" for name, kind in families.items() if kind == "histogram"
                                for suffix in ("_bucket", "_count", "_sum")}
    missing = (named(rule_exprs()) | named(dashboard_exprs())) - exported
    assert not missing, f"named but not exported: {sorted(missing)}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool here (tests/host-packages installs "
                    "Debian's prometheus as root)")
def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
