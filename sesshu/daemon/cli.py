"""``sesshud``: the daemon's command line.

This module is also what multiprocessing re-imports as ``__mp_main__`` in
every child, so it imports nothing heavy at module level: boto3 and the
supervisor are imported inside :func:`main`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sesshu.config.model import Config
    from sesshu.daemon.pidfile import Pidfile

EX_SOFTWARE = 70
DEFAULT_CONFIG = "/etc/sesshu.yaml"


def _parser() -> argparse.ArgumentParser:
    from sesshu import __version__

    p = argparse.ArgumentParser(
        prog="sesshud", description="Sesshu SQS job-worker daemon",
        epilog="Exit status: 0 stopped cleanly; 1 configuration error (a restart cannot help: no such "
               "queue or topic, credentials refused); 75 the bus could not be reached at start-up "
               "(retry later); 70 an unexpected crash.")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (YAML; default: %(default)s)")
    p.add_argument("--check", action="store_true", help="validate the config, load the plugins, exit")
    p.add_argument("--aws", action="store_true", help="with --check: also prove that the queue and the "
                   "topic are there (exit 1 or 75, as a start would)")
    p.add_argument("--pidfile", help="write the daemon's pid here; refuse to start if it is live")
    p.add_argument("--version", action="version", version=f"sesshud {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.aws and not args.check:
        parser.error("--aws goes with --check")
    # Now, while argv and environ are as exec left them: setproctitle finds its room there,
    # and the fork server is started with another environment later.
    from setproctitle import setproctitle

    from sesshu.config.model import load
    from sesshu.config.schema import ConfigError
    from sesshu.daemon import logs
    from sesshu.daemon.pidfile import Pidfile, PidfileError
    from sesshu.text import escape, loggable

    setproctitle(f"sesshud: {'check' if args.check else 'master'} -c {loggable(args.config, 200)}")
    try:
        config = load(args.config)
        pidfile = Pidfile(args.pidfile) if args.pidfile and not args.check else None
        if pidfile is not None:
            pidfile.check()
        # What a start would trip over, found here: --check runs every step short of the bus.
        logs.check(config.log_path, config.log_name)
        return _start(args, config, pidfile)
    except ConfigError as exc:
        # One line, whatever a config value quoted in the message holds.
        print(f"sesshud: config error: {escape(str(exc))}", file=sys.stderr)
        return 1
    except PidfileError as exc:
        print(f"sesshud: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except Exception:
        # A bug, not a config error: exit EX_SOFTWARE (not 1), so that a
        # service manager restarts us; the messages we held reappear.
        logging.getLogger(__name__).exception("sesshud crashed")
        return EX_SOFTWARE


def _start(args: argparse.Namespace, config: Config, pidfile: Pidfile | None) -> int:
    # boto3 and the pool load only for a config that passed: a bad one fails in a fraction of the time.
    from sesshu.bus import startup
    from sesshu.daemon import assemble as daemon

    try:
        ctx, settings = daemon.prepare(config)
        if args.check:
            report = f"sesshud: {args.config}: OK ({len(settings.specs)} plugin(s) load"
            if args.aws:
                report += "; " + startup.open_bus(config).describe()
            print(f"sesshud: {daemon.containment(config)}")
            for problem in daemon.exposed(config):
                print(f"sesshud: warning: {problem}")
            print(report + ")")
            return 0
        return daemon.run(config, ctx, settings, pidfile)
    except startup.BusUnreachable as exc:
        print(f"sesshud: {exc}", file=sys.stderr)
        return startup.EX_TEMPFAIL


if __name__ == "__main__":
    sys.exit(main())
