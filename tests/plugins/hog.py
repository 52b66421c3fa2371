"""A test plugin that eats memory on request: the target says how.

``hog:grow`` allocates 8 MiB blocks, touching every page, until the
allocation fails (or the kernel kills it); it never returns on its own.
``hog:grow:S`` first sleeps S seconds. ``hog:creep`` does the same with
64 KiB blocks, so the failure lands in an arbitrary small allocation.
``hog:echo:X`` returns X and the worker's pid.
"""

from __future__ import annotations

import os
import time
from typing import Any

BIG, SMALL = 8 * 1024 * 1024, 64 * 1024


def validate(target: str) -> None:
    if not target.startswith("hog:"):
        raise ValueError(f"not a hog target: {target[:40]}")


def fetch(target: str) -> Any:
    _, action, *rest = target.split(":", 2)
    arg = rest[0] if rest else ""
    if action == "echo":
        return {"echo": arg, "pid": os.getpid()}
    if action in ("grow", "creep"):
        time.sleep(float(arg or 0))
        return _grow(BIG if action == "grow" else SMALL)
    raise ValueError(f"unknown hog action {action}")


def _grow(block: int) -> Any:
    hoard: list[bytearray] = []
    while True:
        # bytearray(n) zero-fills, so every page is really touched.
        hoard.append(bytearray(block))
