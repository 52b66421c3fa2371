"""A test plugin that misbehaves on request: the target says how.

``chaos:echo:X`` returns X, ``chaos:none`` returns None, ``chaos:segv``
segfaults, ``chaos:exit`` leaves with os._exit, ``chaos:hang`` sleeps for
ever, ``chaos:spin`` burns CPU ignoring SIGTERM, ``chaos:raise`` raises,
``chaos:unserialisable`` returns an object JSON cannot encode,
``chaos:grandchild:PIDFILE`` leaves a sleeping grandchild (its pid written to
PIDFILE) and hangs, ``chaos:invalid`` fails validate(), ``chaos:sleep:S``
sleeps S seconds then returns S, ``chaos:big:N`` returns N bytes of text
(``chaos:big:N:S`` after S seconds),
``chaos:modules`` reports whether boto3 is imported in the child, ``chaos:frozen``
how many objects it inherited frozen out of the GC's reach. With the plugin
API (``sesshu.plugin``): ``chaos:later:S`` raises RetryLater(S), ``chaos:never``
raises Reject, ``chaos:refuse`` raises Reject from validate(); ``chaos:talk``
prints on stdout and stderr, from Python and from a process it starts, then
returns; ``chaos:orphan:PIDFILE`` leaves a detached sleeper (its own session,
its pid in PIDFILE) and returns; ``chaos:behind`` leaves one too, through a
process started where Python's audit hooks do not look (multiprocessing's
``spawnv_passfds``), which it reaps, and returns the sleeper's pid.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import subprocess
import sys
import time
from typing import Any

OPTIONS: dict[str, Any] = {}


def configure(options: dict[str, Any]) -> None:
    OPTIONS.update(options)


def validate(target: str) -> None:
    if target == "chaos:refuse":
        from sesshu.plugin import Reject

        raise Reject("refused in validate")
    if not target.startswith("chaos:") or target == "chaos:invalid":
        raise ValueError(f"not a chaos target: {target[:40]}")


def fetch(target: str) -> Any:
    _, action, *rest = target.split(":", 2)
    arg = rest[0] if rest else ""
    if action == "echo":
        return {"echo": arg, "pid": os.getpid(), "options": OPTIONS}
    if action == "none":
        return None
    if action == "segv":
        ctypes.string_at(0)
    if action == "exit":
        os._exit(7)
    if action == "hang":
        time.sleep(3600)
    if action == "spin":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            pass
    if action == "raise":
        raise RuntimeError("chaos asked for an exception")
    if action == "unserialisable":
        return {"when": object()}
    if action == "grandchild":
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        with open(arg, "w") as f:
            f.write(str(proc.pid))
        time.sleep(3600)
    if action == "interval":  # chaos:interval:SECONDS:LABEL: when it ran (CLOCK_MONOTONIC, the same for every process)
        started = time.monotonic()
        time.sleep(float(arg.partition(":")[0]))
        return {"started": started, "ended": time.monotonic()}
    if action == "sleep":
        time.sleep(float(arg))
        return float(arg)
    if action == "big":
        size, _, pause = arg.partition(":")
        time.sleep(float(pause or 0))
        return "x" * int(size)
    if action == "modules":
        return {"boto3": "boto3" in sys.modules, "botocore": "botocore" in sys.modules}
    if action == "later":
        from sesshu.plugin import RetryLater

        raise RetryLater(float(arg), "the site is busy")
    if action == "never":
        from sesshu.plugin import Reject

        raise Reject("gone for good")
    if action == "talk":
        print("chaos says hello on stdout", flush=True)
        print("chaos says hello on stderr", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-c", "print('a child says hello')"], check=True)
        return {"talked": True}
    if action == "orphan":
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"], start_new_session=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(arg, "w") as f:
            f.write(str(proc.pid))
        return {"left": proc.pid}
    if action == "behind":
        import multiprocessing.util

        r, w = os.pipe()
        code = ("import os, subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; "
                "time.sleep(3600)'], start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, "
                f"stderr=subprocess.DEVNULL); os.write({w}, str(p.pid).encode())")
        pid = multiprocessing.util.spawnv_passfds(sys.executable.encode(), [sys.executable, "-c", code], [w])
        os.close(w)
        os.waitpid(pid, 0)
        with os.fdopen(r) as f:
            return {"left": int(f.read())}
    if action == "frozen":
        return {"frozen": gc.get_freeze_count()}
    raise ValueError(f"unknown chaos action {action}")
