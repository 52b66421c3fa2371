"""etc/nftables/sesshu-workers.nft: valid, and it really keeps the worker account off loopback.

The rules are loaded only inside a network namespace this test makes, so the
host's firewall is never touched. `make test` installs nft (tests/host-packages).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[1] / "etc" / "nftables" / "sesshu-workers.nft"
NFT = shutil.which("nft") or "/usr/sbin/nft"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="nft and network namespaces need root (CI runs as root)"),
]


def rules_for(account: str, tmp_path: Path, broken: bool = False) -> Path:
    text = RULES.read_text().replace('define worker = "sesshu-worker"', f'define worker = "{account}"')
    if broken:
        text = text.replace("reject with tcp reset", "reject with nonsense")
    path = tmp_path / "rules.nft"
    path.write_text(text)
    return path


def test_the_rules_parse(tmp_path: Path) -> None:
    assert os.path.exists(NFT), "nft is missing: make test installs it (tests/host-packages)"
    done = subprocess.run([NFT, "-c", "-f", str(rules_for("nobody", tmp_path))], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_broken_copy_is_refused(tmp_path: Path) -> None:
    done = subprocess.run([NFT, "-c", "-f", str(rules_for("nobody", tmp_path, broken=True))],
                          capture_output=True, text=True)
    assert done.returncode != 0


def test_the_worker_account_cannot_reach_loopback_but_others_can(tmp_path: Path) -> None:
    rules = rules_for("nobody", tmp_path)
    probe = textwrap.dedent(f"""
        import os, socket, subprocess, sys
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["{NFT}", "-f", "{rules}"], check=True)
        server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen()
        port = server.getsockname()[1]

        def attempt(uid):
            pid = os.fork()
            if pid == 0:
                os.setgid(65534 if uid else 0); os.setuid(uid)
                s = socket.socket(); s.settimeout(3)
                try:
                    s.connect(("127.0.0.1", port)); os._exit(0)
                except OSError:
                    os._exit(1)
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

        print("root", attempt(0), "nobody", attempt(65534))
    """)
    done = subprocess.run(["unshare", "--net", sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["root", "0", "nobody", "1"]
