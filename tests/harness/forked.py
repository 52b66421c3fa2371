"""Run a test's body in a forked child: for what a process cannot undo (Landlock, seccomp)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any


def in_child(body: Callable[[], Any]) -> Any:
    """Run ``body`` in a forked child and return what it returned (JSON), or raise what it raised."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            out = {"ok": body()}
        except BaseException as exc:  # noqa: BLE001 - carried back to the test
            out = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    got = json.loads(data)
    if "error" in got:
        raise AssertionError(got["error"])
    return got["ok"]
