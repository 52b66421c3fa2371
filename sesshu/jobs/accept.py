"""Accepting received messages: each becomes a ticket ready to run, or has its outcome at once.

A message's outcome is decided here, before any slot sees it, when its
request stored in S3 could not be read (a retry when S3 failed now, a
rejection when the pointer can never be read), when its body is no valid
request (rejected), or when it arrived while the daemon stops (released).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from functools import partial

from sesshu.bus.api import Message, transient
from sesshu.jobs import trace
from sesshu.jobs.requests import Rejected, RequestParser
from sesshu.jobs.settle import Settler
from sesshu.jobs.ticket import Ticket

log = logging.getLogger(__name__)


class Acceptor:
    """Makes the tickets of one receive; ``parser`` follows a reload's plugin list."""

    def __init__(self, plugin_names: tuple[str, ...], settler: Settler, clock: Callable[[], float]) -> None:
        self.parser = RequestParser(plugin_names)
        self.settler = settler
        self.clock = clock

    def reconfigure(self, plugin_names: tuple[str, ...]) -> None:
        self.parser = RequestParser(plugin_names)

    def accept(self, messages: Iterable[Message], started: float, stopping: bool) -> list[Ticket]:
        """The tickets, in order, of the messages of a receive begun at ``started`` (monotonic) that may run."""
        visible_until = started + self.settler.visibility()
        received_ns = time.time_ns() - int((self.clock() - started) * 1e9)
        runnable: list[Ticket] = []
        for message in messages:
            ticket = Ticket(message, visible_until=visible_until, received_ns=received_ns)
            if self.settler.guarded(ticket, partial(self._accept, ticket, stopping)):
                runnable.append(ticket)
        return runnable

    def _accept(self, ticket: Ticket, stopping: bool) -> bool:
        message = ticket.message
        ticket.trace = trace.of_request(message.attributes, message.trace_header)
        if (unreadable := message.unreadable) is not None:
            # A request stored in S3 that could not be read: S3 failing now is
            # worth a retry, a pointer to nothing (or to too much) never is.
            if transient(unreadable):
                self.settler.retry(ticket, "payload_error", unreadable)
            else:
                self.settler.reject(ticket, unreadable)
            return False
        try:
            ticket.request = self.parser.parse(message.body)
        except Rejected as exc:
            log.debug("rejected body of %s: %r", ticket.message_id, message.body[:2048])
            ticket.named_plugin, ticket.named_target = exc.plugin, exc.target
            self.settler.reject(ticket, str(exc))
            return False
        if ticket.request.traceparent is not None:  # it came in the SNS envelope, and wins
            envelope = {trace.ATTRIBUTE: ticket.request.traceparent}
            ticket.trace = trace.of_request(envelope, None) or ticket.trace
        if stopping:
            self.settler.retry(ticket, "shutdown", "received while stopping", delay=0)
            return False
        return True
