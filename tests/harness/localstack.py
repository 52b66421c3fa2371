"""LocalStack's SQS, SNS and S3, on loopback, as a second server beside moto.

moto accepts requests that SQS and SNS refuse (a PublishBatch over 256 KiB,
a DeleteMessageBatch of 20 entries), so a second implementation runs the
end-to-end suites too: ``make test-localstack``. LocalStack lives in its own
virtualenv (``.venv-localstack``, made by the Makefile from
``tests/localstack-requirements.txt``), so its pins never touch Sesshu's; it
runs in host mode, without docker.

Every setting below keeps it on 127.0.0.1 and inside ``workdir``:

* ``GATEWAY_SERVER=hypercorn``: the default gateway binds 0.0.0.0 whatever
  ``GATEWAY_LISTEN`` says;
* ``DNS_ADDRESS=0``: no DNS server on 0.0.0.0:53;
* ``SQS_ENDPOINT_STRATEGY=path``: queue URLs on 127.0.0.1, not on a
  ``*.localhost.localstack.cloud`` name that needs that DNS server;
* ``OVERRIDE_IN_DOCKER=0`` and ``FILESYSTEM_ROOT``: on this kind of machine
  LocalStack believes it runs in a container and writes /var/lib/localstack;
* ``SKIP_SSL_CERT_DOWNLOAD=1`` and ``DISABLE_EVENTS=1``: no call to the
  internet (certificate, analytics);
* ``XDG_CACHE_HOME``, ``CONFIG_DIR`` and ``TMPDIR``: nothing written to ``~``
  or to a /tmp directory another instance may share.

``tests/test_bus_server.py`` proves the loopback rule on the running server.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

from tests.harness.aws import BusServer, aws_env, poll

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".venv-localstack" / "bin" / "python"
SERVICES = ("sqs", "sns", "s3")


def localstack_python() -> Path:
    """The LocalStack virtualenv's interpreter (``SESSHU_LOCALSTACK_PYTHON`` overrides it)."""
    return Path(os.environ.get("SESSHU_LOCALSTACK_PYTHON") or VENV_PYTHON)


class LocalStackServer(BusServer):
    """``python -m localstack.runtime.main`` in a subprocess on a free 127.0.0.1 port."""

    name = "localstack"

    def __init__(self, workdir: Path, python: Path | None = None) -> None:
        super().__init__(workdir / "localstack.log")
        self.workdir = workdir
        self.python = python or localstack_python()

    def environment(self) -> dict[str, str]:
        dirs = {name: self.workdir / name for name in ("fs", "cache", "config", "tmp")}
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        env = aws_env()
        env.update({
            "GATEWAY_SERVER": "hypercorn",
            "GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
            "LOCALSTACK_HOST": f"127.0.0.1:{self.port}",
            "DNS_ADDRESS": "0",
            "SQS_ENDPOINT_STRATEGY": "path",
            "SERVICES": ",".join(SERVICES),
            "SKIP_INFRA_DOWNLOADS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DISABLE_EVENTS": "1",
            "OVERRIDE_IN_DOCKER": "0",
            "FILESYSTEM_ROOT": str(dirs["fs"]),
            "XDG_CACHE_HOME": str(dirs["cache"]),
            "CONFIG_DIR": str(dirs["config"]),
            "TMPDIR": str(dirs["tmp"]),
        })
        return env

    def start(self) -> LocalStackServer:
        if not self.python.exists():
            raise RuntimeError(f"no LocalStack at {self.python}: run `make test-localstack` (it installs it)")
        assert self._log_path is not None
        with open(self._log_path, "ab") as log:
            self._proc = subprocess.Popen([str(self.python), "-m", "localstack.runtime.main"], cwd=self.workdir,
                                          stdout=log, stderr=subprocess.STDOUT, env=self.environment())
        poll(self._up, timeout=120, interval=0.2, what="LocalStack to answer")
        # Each service's provider loads on its first request: pay for that here,
        # not inside the first test's deadlines.
        self.client("sqs").list_queues()
        self.client("sns").list_topics()
        self.client("s3").list_buckets()
        return self

    def version(self) -> str:
        with urllib.request.urlopen(f"{self.url}/_localstack/health", timeout=5) as reply:
            return str(json.loads(reply.read()).get("version", "unknown"))

    def _up(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise RuntimeError(f"LocalStack exited with {self._proc.returncode}; see {self._log_path}")
        try:
            with urllib.request.urlopen(f"{self.url}/_localstack/health", timeout=2) as reply:
                services = json.loads(reply.read()).get("services", {})
        except (OSError, ValueError):
            return False
        return all(services.get(s) in ("available", "running") for s in SERVICES)
