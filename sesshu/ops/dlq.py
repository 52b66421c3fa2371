"""``sesshu dlq``: look at, move back and empty a dead-letter queue.

SQS has no true peek: reading a message hides it (and counts a receive). So
``peek`` hides what it reads only for as long as it pages through the queue,
and makes all of it visible again before it returns. ``redrive`` lets SQS
move the messages itself (StartMessageMoveTask) where it can, and otherwise
receives, sends and deletes them, deleting a message only once its copy was
sent. ``purge`` asks first.

Like ``sesshu.ops.cli``, nothing here imports boto3 at module level: the parser
is built from this module in every ``sesshu`` run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sesshu.bus.api import BATCH_MAX
from sesshu.ops.aws import EMPTY_RECEIVES, StopSignals, open_queue, queue_url, release
from sesshu.ops.dlqmove import DlqError, TaskRefused, move_by_hand, move_by_task

# Long enough to page through a large DLQ without meeting a message twice,
# short enough that a peek killed before it could release its messages
# leaves them hidden for half a minute at most.
PEEK_HIDE = 30
PREVIEW = 200  # characters of a body that does not parse


def add_commands(sub: Any, aws_args: Callable[..., None]) -> None:
    """Add ``dlq peek|redrive|purge`` to the ``sesshu`` parser."""
    dlq = sub.add_parser("dlq", help="look at, move back or empty a dead-letter queue")
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    c = actions.add_parser("peek", help="print the dead-lettered requests without consuming them")
    c.add_argument("--queue", required=True, help="the dead-letter queue (a URL, or a name)")
    c.add_argument("--max", type=_positive, metavar="N", help="print at most N messages")
    aws_args(c)
    c.set_defaults(func=cmd_peek)

    c = actions.add_parser("redrive", help="move the messages back to the queue they came from")
    c.add_argument("--queue", required=True, help="the dead-letter queue (a URL, or a name)")
    c.add_argument("--to", metavar="URL", help="the queue to move them to (a URL, or a name; default: the "
                   "one queue whose redrive policy names --queue)")
    c.add_argument("--max", type=_positive, metavar="N", help="move at most N messages (by receive, send "
                   "and delete: a move task cannot be bounded)")
    aws_args(c)
    c.set_defaults(func=cmd_redrive)

    c = actions.add_parser("purge", help="delete every message in a dead-letter queue")
    c.add_argument("--queue", required=True, help="the dead-letter queue (a URL, or a name)")
    c.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    aws_args(c)
    c.set_defaults(func=cmd_purge)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def cmd_peek(args: argparse.Namespace) -> int:
    from sesshu.jobs.requests import RequestParser

    sqs, url = open_queue(args, args.queue)
    # No plugin is enabled here, so every request is "rejected", but a
    # rejection still names the plugin and target it found, after the same
    # bounded parsing the daemon does.
    parser = RequestParser(())
    shown = 0

    def show(message: dict[str, Any]) -> None:
        nonlocal shown
        print(describe(message, parser))
        shown += 1

    peek(sqs, url, show, limit=args.max)
    sys.stdout.flush()
    print(f"{shown} message(s) in {url}; none consumed (each peek counts one receive)")
    return 0


def peek(sqs: Any, url: str, show: Callable[[dict[str, Any]], None], limit: int | None = None) -> None:
    """Show every message of the queue once (at most ``limit``), then make them all visible again.

    VisibilityTimeout=0 on the receive would consume nothing, but SQS would
    then hand back the same first messages on every receive and a queue of
    more than ten could never be paged through (a FIFO queue never). So each
    receive hides what it got for PEEK_HIDE seconds, and the ``finally``
    releases every one of them at once, however the peek ends.
    """
    from sesshu.bus.sqs import call

    held: dict[str, str] = {}  # MessageId -> its latest receipt handle
    shown = 0
    nothing_new = 0
    try:
        while nothing_new < EMPTY_RECEIVES and (limit is None or shown < limit):
            reply = call(sqs, "receive_message", QueueUrl=url, MaxNumberOfMessages=BATCH_MAX, WaitTimeSeconds=0,
                         VisibilityTimeout=PEEK_HIDE,
                         MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"])
            messages = reply.get("Messages", [])
            new = [m for m in messages if m["MessageId"] not in held]
            held.update((m["MessageId"], m["ReceiptHandle"]) for m in messages)
            # Nothing new: the queue is empty, or it only returned messages seen
            # already (hidden long enough to come back). Either way, done soon.
            nothing_new = 0 if new else nothing_new + 1
            for m in new[:None if limit is None else limit - shown]:
                show(m)
                shown += 1
    finally:
        failed = release(sqs, url, list(held.values()))
        if failed:
            print(f"sesshu: warning: {len(failed)} message(s) stay hidden for up to {PEEK_HIDE} s: "
                  f"{next(iter(failed.values()))}", file=sys.stderr)


def describe(message: dict[str, Any], parser: Any) -> str:
    """One line for a dead letter: id, receives, sent time, and the request it holds."""
    from sesshu.jobs.requests import Rejected
    from sesshu.text import loggable

    attrs = message.get("Attributes", {})
    head = (f"{message['MessageId']}  receives={attrs.get('ApproximateReceiveCount', '?')}  "
            f"sent={_sent_at(attrs.get('SentTimestamp'))}")
    body = str(message.get("Body", ""))
    try:
        request = parser.parse(body)
        plugin, target = request.plugin, request.target
    except Rejected as exc:
        if exc.plugin is None or exc.target is None:
            return f"{head}  unparsed ({loggable(str(exc), 120)}): {loggable(body, PREVIEW)}"
        plugin, target = exc.plugin, exc.target
    return f"{head}  plugin={loggable(plugin, 60)}  target={loggable(target)}"


def _sent_at(millis: str | None) -> str:
    try:
        return datetime.fromtimestamp(int(millis or "") / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):
        return "?"


def cmd_redrive(args: argparse.Namespace) -> int:
    sqs, source = open_queue(args, args.queue)
    target = queue_url(sqs, args.to) if args.to else origin(sqs, source)
    if target == source:
        raise DlqError("--to is the dead-letter queue itself: nothing to move")
    how = "receive, send, delete"
    if args.max is None:
        try:
            moved = move_by_task(sqs, source, target)
        except TaskRefused as refused:
            how += f"; StartMessageMoveTask refused: {refused}"
        else:
            print(f"moved {moved} message(s) from {source} to {target} (StartMessageMoveTask)")
            return 0
    with StopSignals() as stop:
        outcome = move_by_hand(sqs, source, target, limit=args.max, stopped=lambda: stop.requested)
    print(f"moved {outcome.moved} message(s) from {source} to {target} ({how})")
    if outcome.error:
        raise DlqError(outcome.error)
    if stop.requested:
        return 130
    return 0


def sources(sqs: Any, url: str) -> list[str]:
    """The queues whose redrive policy names ``url`` as their dead-letter queue."""
    from sesshu.bus.sqs import call

    found: list[str] = []
    token: dict[str, str] = {}
    while True:
        reply = call(sqs, "list_dead_letter_source_queues", QueueUrl=url, MaxResults=1000, **token)
        found.extend(str(u) for u in reply.get("queueUrls", []))
        if not reply.get("NextToken"):
            return found
        token = {"NextToken": str(reply["NextToken"])}


def origin(sqs: Any, url: str) -> str:
    """The one queue that dead-letters into ``url``, or a refusal that says what to do."""
    found = sources(sqs, url)
    if len(found) == 1:
        return found[0]
    if not found:
        raise DlqError(f"no queue has {url} as its dead-letter queue: give --to URL")
    raise DlqError(f"{len(found)} queues have {url} as their dead-letter queue ({', '.join(found[:3])}"
                   f"{', ...' if len(found) > 3 else ''}): give --to URL")


def cmd_purge(args: argparse.Namespace) -> int:
    from sesshu.bus.sqs import call

    sqs, url = open_queue(args, args.queue)
    # A guard against purging the input queue by a slip of the finger.
    users = sources(sqs, url)
    if not users:
        raise DlqError(f"{url} is no queue's dead-letter queue: not purged (dlq purge empties only DLQs)")
    if not args.yes:
        attrs = call(sqs, "get_queue_attributes", QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        count = attrs.get("Attributes", {}).get("ApproximateNumberOfMessages", "?")
        confirm(f"Delete all {count} message(s) in {url}, the dead-letter queue of {users[0]}? "
                "This cannot be undone. Type yes to purge: ")
    call(sqs, "purge_queue", QueueUrl=url)
    print(f"purged {url} (SQS may take up to a minute to delete every message)")
    return 0


def confirm(question: str) -> None:
    """Return only if the operator typed yes on a terminal."""
    if not sys.stdin.isatty():
        raise DlqError("not purged: confirm on a terminal, or give --yes")
    print(question, end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() != "yes":
        raise DlqError("not purged: not confirmed")
