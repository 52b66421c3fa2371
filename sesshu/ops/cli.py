"""``sesshu``: the operator's command line.

``check`` and ``plugins`` read a config file; ``run`` (in ``sesshu.ops.run``)
runs one plugin job with no queue; ``submit``, ``results`` (in
``sesshu.ops.results``), ``provision`` and ``dlq`` (in ``sesshu.ops.dlq``)
talk to SQS/SNS directly. Credentials come from boto3's default chain alone.
Every failure is one line on stderr and exit status 1, except that ``check
--aws`` exits 75 when the bus cannot be reached, as a start of ``sesshud``
would (``sesshu.bus.startup``), and that ``run`` has exit codes of its own.

With the forkserver start method this module is re-imported in the fork
server (as ``__mp_main__``) by ``check``, so boto3 and the daemon's modules
are imported inside the commands, never at module level.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any

DEFAULT_CONFIG = "/etc/sesshu.yaml"
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,71}$")  # 80-character SQS limit minus "-requests"


class _Failure(Exception):
    """An operator-facing error: printed as one line, exit status 1."""


def _parser() -> argparse.ArgumentParser:
    from sesshu import __version__
    from sesshu.ops import dlq, results, run

    p = argparse.ArgumentParser(prog="sesshu", description="Operate a Sesshu deployment.")
    p.add_argument("--version", action="version", version=f"sesshu {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def aws_args(cmd: argparse.ArgumentParser, note: str = "") -> None:
        cmd.add_argument("--endpoint-url", help="an SQS/SNS-compatible endpoint (AWS_ENDPOINT_URL works too)" + note)
        cmd.add_argument("--region", help="AWS region (default: boto3's, or the one in the ARN/URL)" + note)

    c = sub.add_parser("check", help="validate a config and load its plugins")
    c.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default: %(default)s)")
    c.add_argument("--aws", action="store_true", help="also check that the queue and the topic exist "
                   "(exit 1 if not, 75 if the bus cannot be reached)")
    aws_args(c, "; overrides the config's bus.*")
    c.set_defaults(func=cmd_check)

    c = sub.add_parser("plugins", help="list installed plugins and whether the config enables them")
    c.add_argument("-c", "--config", help=f"config file (default: {DEFAULT_CONFIG} if it exists; without "
                   "one, every installed plugin is listed)")
    c.add_argument("--plugin-path", action="append", default=[], metavar="DIR",
                   help="also search DIR for NAME.py plugins (repeatable; added after the config's plugin_path)")
    aws_args(c, "; accepted for symmetry, unused: listing plugins needs no AWS")
    c.set_defaults(func=cmd_plugins)

    c = sub.add_parser("submit", help="send job requests")
    c.add_argument("plugin")
    c.add_argument("targets", nargs="+", metavar="TARGET", help="a target, or - to read one a line from stdin")
    dest = c.add_mutually_exclusive_group(required=True)
    dest.add_argument("--topic", help="publish to this requests topic (an ARN, or a name looked up with ListTopics)")
    dest.add_argument("--queue", help="send straight to this input queue (a URL, or a name)")
    aws_args(c)
    c.set_defaults(func=cmd_submit)

    c = sub.add_parser("results", help="print result documents from a results queue, one JSON a line")
    c.add_argument("--queue", required=True, help="a queue subscribed to the results topic (a URL, or a name)")
    c.add_argument("--follow", action="store_true", help="long-poll until SIGINT/SIGTERM instead of "
                   "exiting when the queue is empty")
    c.add_argument("--keep", action="store_true", help="leave the messages in the queue (visible again on exit)")
    aws_args(c)
    c.set_defaults(func=results.cmd_results)

    c = sub.add_parser("provision", help="create a deployment's queues and topics; print the bus: config")
    c.add_argument("name", help="prefix of the resource names (NAME-requests, NAME-results, NAME-dlq)")
    c.add_argument("--raw", action="store_true", help="raw delivery from the requests topic to the queue")
    c.add_argument("--visibility", type=int, default=60, help="input queue visibility timeout, s (%(default)s)")
    c.add_argument("--max-receive", type=int, default=3, help="receives before the DLQ (%(default)s)")
    c.add_argument("--filter-plugin", action="append", default=[], metavar="NAME",
                   help="the results queue gets only results of plugin NAME (repeatable; an SNS filter "
                   "policy on the message attribute plugin); without it, every result")
    aws_args(c)
    c.set_defaults(func=cmd_provision)

    run.add_command(sub)
    dlq.add_commands(sub, aws_args)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

    from sesshu.bus.api import BusError
    from sesshu.bus.startup import EX_TEMPFAIL, BusUnreachable
    from sesshu.config.schema import ConfigError
    from sesshu.ops.aws import LookupFailed
    from sesshu.ops.dlqmove import DlqError
    from sesshu.ops.results import ResultsError

    try:
        return int(args.func(args))
    except ConfigError as exc:
        return _fail(f"config error: {exc}")
    except BusUnreachable as exc:
        _fail(str(exc))
        return EX_TEMPFAIL
    except NoRegionError:
        return _fail("no AWS region: give --region or set AWS_DEFAULT_REGION")
    except (_Failure, DlqError, ResultsError, LookupFailed, BusError, BotoCoreError, ClientError) as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, and delete nothing more.
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130


def _fail(message: str) -> int:
    lines = message.strip().splitlines() or ["failed"]
    print(f"sesshu: {lines[0]}", file=sys.stderr)
    return 1


def cmd_check(args: argparse.Namespace) -> int:
    from sesshu.bus.startup import open_bus
    from sesshu.config.model import load
    from sesshu.daemon import assemble as daemon
    from sesshu.daemon import logs

    config = load(args.config)
    logs.check(config.log_path, config.log_name)
    _ctx, settings = daemon.prepare(config)
    report = f"OK: {args.config}: {len(settings.specs)} plugin(s) load"
    if args.aws:
        # The very checks a start makes, so check and start cannot disagree.
        report += "; " + open_bus(config, region=args.region, endpoint_url=args.endpoint_url).describe()
    print(report)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from sesshu.config.model import load
    from sesshu.plugin.registry import discover, shipped_dir

    path = args.config or (DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None)
    config = load(path) if path else None
    found = discover([*(config.plugin_path if config else ()), *args.plugin_path])
    enabled = set(config.plugin_names if config else ())
    shipped = shipped_dir()
    rows = [("NAME", "ORIGIN", "ENABLED", "LOCATION")]
    for name in sorted(found):
        source = found[name]
        location = source.ref
        if source.kind == "module" and shipped is not None:
            # Where the file is, found without importing the plugin.
            location = str(shipped / f"{name}.py")
        # Without a config, nothing is enabled or disabled: say so rather than "no".
        state = ("yes" if name in enabled else "no") if config else "-"
        rows.append((name, source.origin, state, location))
    missing = [name for name in (config.plugin_names if config else ()) if name not in found]
    rows.extend((name, "-", "yes", "NOT INSTALLED") for name in missing)
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    if missing:
        raise _Failure(f"enabled but not installed: {', '.join(missing)}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from sesshu.bus.api import SNS_MAX_BYTES, SQS_MAX_BYTES, batches, message_size
    from sesshu.config.schema import valid_plugin_name
    from sesshu.jobs.requests import MAX_TARGET_CHARS
    from sesshu.ops import aws as opaws

    if not valid_plugin_name(args.plugin):
        raise _Failure(f"{args.plugin!r} is not a valid plugin name")
    targets = list(_targets(args.targets, sys.stdin))
    for target in targets:
        if len(target) > MAX_TARGET_CHARS:
            raise _Failure(f"target {target[:40]!r}... is over {MAX_TARGET_CHARS} characters")
    documents = [json.dumps({"plugin": args.plugin, "target": t}) for t in targets]
    if args.topic:
        client = opaws.client("sns", args, args.topic)
        where = opaws.topic_arn(client, args.topic)
    else:
        client, where = opaws.open_queue(args, args.queue)
    failed: list[str] = []
    # Ten messages a batch, and 256 KiB for all of them together: SNS and SQS
    # refuse a whole batch over either (moto does not, so nothing else checks).
    limit = SNS_MAX_BYTES if args.topic else SQS_MAX_BYTES
    for batch in batches([message_size(d) for d in documents], limit):
        chunk = documents[batch.start:batch.stop]
        errors = _send_topic(client, where, chunk) if args.topic else _send_queue(client, where, chunk)
        failed.extend(f"{targets[batch.start + i]}: {error}" for i, error in sorted(errors.items()))
    print(f"sent {len(documents) - len(failed)} request(s) to {where}")
    if failed:
        raise _Failure(f"{len(failed)} request(s) not sent, first: {failed[0]}")
    return 0


def _targets(arguments: list[str], stdin: Iterable[str]) -> Iterator[str]:
    for arg in arguments:
        if arg == "-":
            yield from (line.strip() for line in stdin if line.strip())
        elif arg.strip():
            yield arg.strip()


def _send_topic(sns: Any, topic: str, chunk: list[str]) -> dict[int, str]:
    import uuid

    from sesshu.bus.api import Publish
    from sesshu.bus.sqs import call, publish_entries

    # A FIFO topic wants a deduplication id: each submitted request is a new one (a standard topic gets none).
    failed = publish_entries(call, sns, topic, [Publish(str(i), doc, deduplication_id=uuid.uuid4().hex)
                                                for i, doc in enumerate(chunk)])
    return {int(k): v for k, v in failed.items()}


def _send_queue(sqs: Any, queue: str, chunk: list[str]) -> dict[int, str]:
    from sesshu.bus.sqs import batch_failures, call

    reply = call(sqs, "send_message_batch", QueueUrl=queue, Entries=[
        {"Id": str(i), "MessageBody": doc} for i, doc in enumerate(chunk)])
    return {int(k): v for k, v in batch_failures(reply).items()}


def cmd_provision(args: argparse.Namespace) -> int:
    from sesshu.ops.provision import config_snippet, filter_results, provision

    if not NAME_RE.match(args.name):
        raise _Failure(f"{args.name!r}: a name is 1 to 71 letters, digits, - or _")
    from sesshu.config.schema import valid_plugin_name
    from sesshu.ops import aws as opaws

    bad = [name for name in args.filter_plugin if not valid_plugin_name(name)]
    if bad:
        raise _Failure(f"--filter-plugin {bad[0]!r} is not a valid plugin name")
    sqs, sns = opaws.client("sqs", args, None), opaws.client("sns", args, None)
    deployment = provision(sqs, sns, args.name, visibility=args.visibility,
                           max_receive=args.max_receive, raw=args.raw)
    filter_results(sqs, sns, deployment, args.filter_plugin)
    if args.filter_plugin:
        print(f"# Results queue gets only plugin(s): {', '.join(sorted(set(args.filter_plugin)))}")
    print(config_snippet(deployment, sqs.meta.region_name, args.endpoint_url), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
