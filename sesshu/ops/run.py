"""``sesshu run PLUGIN TARGET``: one job in a real worker, with no queue, for plugin authors.

Exit status, as ``sysexits.h`` has it: 0 for done (the result document as one
JSON line on stdout) and for empty ("empty" on stderr); 65 (EX_DATAERR) for
rejected and for a plugin that cannot be found; 75 (EX_TEMPFAIL) for
retried; 70 (EX_SOFTWARE) for a plugin that cannot be loaded. Everything
else, the plugin's own output included, goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

EX_DATAERR, EX_SOFTWARE, EX_TEMPFAIL = 65, 70, 75


def add_command(sub: Any) -> None:
    c = sub.add_parser("run", help="run one job of a plugin in a real worker, without a queue",
                       description="Run validate(TARGET) then fetch(TARGET) in a worker started as the daemon "
                       "starts them. Exit 0 done or empty, 65 rejected or unknown plugin, 75 retried, "
                       "70 the plugin does not load.")
    c.add_argument("plugin")
    c.add_argument("target")
    c.add_argument("-c", "--config", help="take the workers' account, environment, limits, network allow list "
                   "and the plugin's options and timeout from this config (default: the defaults)")
    c.add_argument("--plugin-path", action="append", default=[], metavar="DIR",
                   help="search DIR for NAME.py plugins first (repeatable)")
    c.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", type=_option,
                   help="an option for the plugin's configure(); VALUE is read as a YAML scalar "
                   "(repeatable; overrides the config's)")
    c.add_argument("--allow", action="append", default=[], metavar="CIDR", type=_cidr,
                   help="let the plugin's HTTP reach this address range, which the address guard refuses "
                   "by default, e.g. 127.0.0.0/8 for a site on loopback (repeatable; adds to the config's "
                   "workers.network.allow)")
    c.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                   help="kill the job after this long (default: the config's, or 30)")
    c.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    import logging

    from sesshu.config.model import load
    from sesshu.testing import PluginBroken, UnknownPlugin, job_config, run_job
    from sesshu.text import escape
    from sesshu.worker import sandbox

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load(args.config) if args.config else None
    timeout = args.timeout
    if timeout is None:
        entry = config.plugin(args.plugin) if config else None
        timeout = entry.timeout if entry else (config.timeout if config else 30.0)
    try:
        job = job_config(args.plugin, dict(args.option), args.plugin_path, timeout, config, allow=args.allow)
        # Whatever the plugin leaves behind, even past its keeper, comes to us to be killed.
        sandbox.set_subreaper()
        run = run_job(job, args.target, reap_orphans=True)
    except UnknownPlugin as exc:
        print(f"sesshu: {escape(str(exc))}", file=sys.stderr)
        return EX_DATAERR
    except PluginBroken as exc:
        print(f"sesshu: {escape(str(exc))}", file=sys.stderr)
        return EX_SOFTWARE
    if run.outcome == "done":
        print(run.document, flush=True)
        return 0
    if run.outcome == "empty":
        print("empty", file=sys.stderr)
        return 0
    print(f"{run.outcome}: {escape(run.reason)}", file=sys.stderr)
    return EX_DATAERR if run.outcome == "rejected" else EX_TEMPFAIL


def _option(text: str) -> tuple[str, Any]:
    import yaml

    key, eq, value = text.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:
        parsed = yaml.safe_load(value) if value else ""
    except yaml.YAMLError:
        parsed = value
    # A scalar, as a config file would give it; anything else stays the text it was.
    return key, parsed if isinstance(parsed, str | int | float | bool) or parsed is None else value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.1 <= value <= 43200:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0.1 to 43200")
    return value


def _cidr(text: str) -> str:
    from sesshu.plugin import addresses

    try:
        return str(addresses.network(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an address range: {exc}") from None
