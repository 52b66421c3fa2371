"""A test plugin whose import dooms its worker: the child dies 0.3 s after it loads.

It loads fine (so the start-up check passes), then every worker dies while
idle: the crash loop the respawn backoff must slow down.
"""

from __future__ import annotations

import os
import threading

threading.Timer(0.3, os._exit, (3,)).start()


def validate(target: str) -> None:
    pass


def fetch(target: str) -> None:
    return None
