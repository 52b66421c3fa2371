"""FIFO message groups: which held message may start, so that a group's messages run one at a time, in order.

On a FIFO queue, SQS hands out the messages of one message group in order,
and no more of a group while one of it is in flight; but one receive may
bring several messages of the same group. Those wait here, in order: a
message starts only when no earlier message of its group is held, running,
or having its result published. A message without a group (a standard
queue) is never held back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable

from sesshu.jobs.settle import Settler
from sesshu.jobs.ticket import Ticket
from sesshu.text import loggable


def take_startable(held: deque[Ticket], busy: Collection[str]) -> Ticket | None:
    """Remove and return the first held ticket that may start now, if any.

    ``busy``: the groups with a message running, or with a result on its way out.
    """
    blocked = set(busy)
    for i, ticket in enumerate(held):
        group = ticket.message.group_id
        if group is None or group not in blocked:
            del held[i]
            return ticket
        blocked.add(group)
    return None


def take_group(held: deque[Ticket], group: str) -> list[Ticket]:
    """Remove and return every held ticket of ``group``, in order."""
    taken = [t for t in held if t.message.group_id == group]
    if taken:
        kept = [t for t in held if t.message.group_id != group]
        held.clear()
        held.extend(kept)
    return taken


def busy(tickets: Iterable[Ticket]) -> set[str]:
    """The message groups of these tickets (running, or with a result on its way out)."""
    return {group for t in tickets if (group := t.message.group_id) is not None}


def release_behind(ticket: Ticket, held: deque[Ticket], settler: Settler) -> None:
    """``ticket`` was released: its group's later messages, held, must not overtake it, so they go back too."""
    group = ticket.message.group_id
    if group is None:
        return
    for later in take_group(held, group):
        settler.retry(later, "group_order", f"message {ticket.message_id} of its message group "
                      f"{loggable(group, 128)} was released before it, and goes first", delay=0)
