"""moto's SQS/SNS server with each queue's state changed under the queue's lock.

Stock moto 5 changes a queue's message list from several request threads
without a lock, where real SQS is atomic per message:

* ``Queue.delete_message`` rebuilds the list from a snapshot, so two deletes
  at once (a daemon with several senders) put back what the other removed,
  and a delete beside a send drops the message just sent;
* ``receive_message`` checks that a message is visible, then marks it
  received, so two receives at once can both deliver it; and both may move
  the same message to the dead-letter queue, where the second
  ``_messages.remove`` raises, the request answers 500, and the messages it
  had already marked received come back later with a receive counted and no
  delivery (an echo job dead-lettered, a request "never delivered");
* ``change_message_visibility`` reads the list while another thread rebuilds it.

A test that sees any of these cannot tell moto's fault from ours.
:func:`lock_queues` makes each of those calls hold the queue's own lock
(``Queue._messages_lock``, which moto's ``add_message`` already takes). A
long poll still waits with the lock released: the lock is a condition whose
``wait`` gives it up. Every moto the tests, the demo, the soak and the bench
start runs with it (``python -m tests.harness.motoserver --port P``).
"""

from __future__ import annotations

import argparse
import functools
import logging
import signal
from collections.abc import Callable
from typing import Any


def _under_queue_lock(method: Callable[..., Any]) -> Callable[..., Any]:
    """A backend method ``(self, queue_name, ...)`` run holding that queue's lock."""

    @functools.wraps(method)
    def locked(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        with self.get_queue(queue_name)._messages_lock:
            return method(self, queue_name, *args, **kwargs)

    return locked


def lock_queues() -> None:
    """Make moto's SQS receive, delete and visibility changes atomic per queue."""
    import moto.sqs.models as sqs_models

    if getattr(sqs_models, "_sesshu_locked", False):
        return
    queue, backend = sqs_models.Queue, sqs_models.SQSBackend
    unlocked_delete = queue.delete_message

    def delete_message(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:
            unlocked_delete(self, receipt_handle)

    queue.delete_message = delete_message  # type: ignore[method-assign]
    # receive_message takes the source queue's lock, then the DLQ's (add_message)
    # when it moves a message there: always in that order, so no deadlock.
    for name in ("receive_message", "change_message_visibility"):
        setattr(backend, name, _under_queue_lock(getattr(backend, name)))
    sqs_models._sesshu_locked = True  # type: ignore[attr-defined]


def serve(port: int, before: Callable[[], None] | None = None) -> None:
    """Run moto's threaded server on 127.0.0.1:``port``, queues locked, until SIGTERM or SIGINT."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    lock_queues()
    if before is not None:
        before()
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--port", type=int, required=True)
    serve(p.parse_args().port)


if __name__ == "__main__":
    main()
