"""The SQS/SNS server the benchmarks run against: moto, on loopback.

Stock moto spends most of each SQS request on bookkeeping that grows with
the queue: every message's visibility is checked through a datetime-based
``unix_time()`` (about 8 us a call), ``ReceiveMessage`` recomputes *all*
queue attributes once per returned message (to read the retention period),
and ``GetQueueAttributes`` recomputes them once per requested name. With a
few hundred messages queued that costs tens of milliseconds a request, so
the server, not the client, would be what a throughput figure measures.
And every request, of any service, waits for a lock under which moto's
dispatcher lists its own package directory on disk (a ``listdir`` and a
``stat`` per module), about a seventh of the server's CPU under load.

:func:`patch_moto` replaces exactly those four hot spots with code that
computes the same values (``time.time()`` for the clock, one attribute read
for the retention period, one attribute pass per request, the module list
read once), so SQS semantics are kept. ``python -m bench.motoserver --port
P`` runs moto's threaded server in this process with the patch applied;
``--stock`` runs it without those. Either way each queue is locked as the
tests' server locks it (``tests.harness.motoserver``): a correctness fix,
which the counting of completed jobs needs, not a speed-up.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.harness.aws import MotoServer
from tests.harness.motoserver import serve


def patch_moto() -> None:
    import moto.backends as moto_backends
    import moto.core.utils as core_utils
    import moto.sns.models as sns_models
    import moto.sqs.models as sqs_models

    slow_unix_time = core_utils.unix_time

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else slow_unix_time(dt)

    def unix_time_millis(dt: Any = None) -> float:
        return unix_time(dt) * 1000.0

    for module in (core_utils, sqs_models, sns_models):
        if hasattr(module, "unix_time"):
            module.unix_time = unix_time  # type: ignore[attr-defined]
        if hasattr(module, "unix_time_millis"):
            module.unix_time_millis = unix_time_millis  # type: ignore[attr-defined]

    backend = sqs_models.SQSBackend

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        queue = self.get_queue(queue_name)
        retain_until = queue.message_retention_period + message.sent_timestamp / 1000
        return bool(retain_until > unix_time())

    slow_get_attributes = backend.get_queue_attributes

    def get_queue_attributes(self: Any, queue_name: str, attribute_names: list[str]) -> dict[str, Any]:
        queue = self.get_queue(queue_name)
        valid = {*queue.BASE_ATTRIBUTES, *queue.FIFO_ATTRIBUTES, *queue.KMS_ATTRIBUTES}
        if not attribute_names or "All" in attribute_names or not valid.issuperset(attribute_names):
            # Empty answer, every attribute, or moto's own error: unchanged.
            return slow_get_attributes(self, queue_name, attribute_names)  # type: ignore[no-any-return]
        current = queue.attributes  # one pass over the queue, not one per name
        return {n: current[n] for n in attribute_names if current.get(n) is not None}

    modules = tuple(moto_backends.list_of_moto_modules())  # the installed package does not change
    moto_backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]

    backend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period  # type: ignore[method-assign]
    backend.get_queue_attributes = get_queue_attributes  # type: ignore[method-assign]


class MotoProcess(MotoServer):
    """The tests' moto launcher, running this module (moto, hot-spot patched unless ``stock``)."""

    def __init__(self, stock: bool = False, log_path: str | None = None) -> None:
        super().__init__(Path(log_path) if log_path else None)
        self.stock = stock

    @property
    def description(self) -> str:
        import moto

        how = "no hot-spot patch" if self.stock else "with bench/motoserver.py's hot-spot patch"
        how = f"queues locked, {how}"
        return f"moto {moto.__version__} threaded werkzeug server, {how}, in its own process"

    def command(self) -> list[str]:
        stock = ["--stock"] if self.stock else []
        return [sys.executable, "-m", "bench.motoserver", "--port", str(self.port), *stock]

    def start(self) -> MotoProcess:
        super().start()
        return self

    def reset(self) -> None:
        """Forget every queue, topic and stored notification (frees memory between stages)."""
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=30):
            pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--stock", action="store_true", help="run moto without the hot-spot patch")
    args = p.parse_args()
    serve(args.port, before=None if args.stock else patch_moto)


if __name__ == "__main__":
    main()
