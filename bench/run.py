"""``python -m bench.run``: run the benchmarks, print progress, write docs/benchmarks.md.

Each measurement lives in its own module with ``run(bench) -> Section``.
They run one after another against one moto server (reset between them),
so their figures share a machine state as far as a noisy machine allows.
The figures that depend on the server's distance (requests per job,
throughput against the raw loop, latency, Celery) are measured on loopback
and again through the bench proxy at ``--delay-ms`` per AWS request (20 ms,
about what a request to SQS or SNS costs from a host in the same region).
Then the figures that depend on the server (requests per job, throughput
against the raw loop, latency) are measured again against LocalStack, the
tests' second server, on loopback: the summary shows them in a column of their own.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import report
from bench.common import ROOT, Bench, Section, machine, progress
from bench.motoserver import MotoProcess
from tests.harness.localstack import LocalStackServer

# (name, module, needs the SQS/SNS server)
MEASUREMENTS = [
    ("requests", "bench.requests_per_job", True),
    ("throughput", "bench.throughput", True),
    ("pool", "bench.pool_core", False),
    ("io", "bench.io_scaling", True),
    ("iocpu", "bench.io_cpu", True),
    ("fleet", "bench.fleet", True),
    ("large", "bench.large_results", True),
    ("latency", "bench.latency", True),
    ("recovery", "bench.recovery", True),
    ("memory", "bench.memory", True),
    ("scaling", "bench.scaling", True),
    ("containment", "bench.containment", True),
    ("peers", "bench.peers", True),
]
ON_LOCALSTACK = ("requests", "throughput", "latency")  # the figures that depend on the server


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes, for development")
    p.add_argument("--peers", action="store_true", help=argparse.SUPPRESS)  # Celery is now always compared
    p.add_argument("--delay-ms", type=float, default=20.0,
                   help="round trip added per AWS request for the far figures (default 20; 0: loopback only)")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="run only this measurement (repeatable): " + ", ".join(n for n, _, _ in MEASUREMENTS))
    p.add_argument("--stock-moto", action="store_true", help="run moto without the hot-spot patch")
    p.add_argument("--no-localstack", action="store_true",
                   help="skip the LocalStack column (which needs `make localstack`)")
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (configs, logs)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    chosen = list(MEASUREMENTS)
    if args.only:
        unknown = set(args.only) - {n for n, _, _ in MEASUREMENTS}
        if unknown:
            print(f"unknown measurement(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        chosen = [m for m in MEASUREMENTS if m[0] in args.only]
    facts = machine()
    tmp = Path(tempfile.mkdtemp(prefix="sesshu-bench-"))
    bench = Bench(quick=args.quick, tmp=tmp, delay=max(0.0, args.delay_ms) / 1000)
    sections: list[Section] = []
    failures: list[str] = []
    started = time.monotonic()
    moto = MotoProcess(stock=args.stock_moto, log_path=str(tmp / "moto.log"))
    localstack: LocalStackServer | None = None
    second: list[Section] = []
    second_server = ""
    try:
        if any(needs for _, _, needs in chosen):
            progress(f"starting {moto.description}")
            bench.moto = moto.start()
        for name, module_name, needs_server in chosen:
            section = _measure(bench, name, module_name, failures, moto.reset if needs_server else None)
            if section is not None:
                sections.append(section)
        again = [m for m in chosen if m[0] in ON_LOCALSTACK] if not args.no_localstack else []
        if again:
            moto.stop()  # idle, but the machine has two cores: nothing else runs beside the servers
            (tmp / "localstack").mkdir()
            localstack = LocalStackServer(tmp / "localstack")
            progress("starting LocalStack (host mode, SQS/SNS/S3 on loopback)")
            # On loopback only: the far figures compare the daemon with its baselines, not the servers.
            ls_bench = Bench(quick=args.quick, tmp=tmp, moto=localstack.start(), server_name="localstack",
                             far=False)
            second_server = (f"LocalStack {localstack.version()} in host mode (hypercorn gateway, its own SQS, SNS "
                             "and S3 providers), in its own process, from `.venv-localstack/`")
            for name, module_name, _ in again:
                section = _measure(ls_bench, name, module_name, failures, None, "LocalStack")
                if section is not None:
                    second.append(section)
    finally:
        moto.stop()
        if localstack is not None:
            localstack.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            progress(f"scratch files kept in {tmp}")
    command = "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report.render(sections, facts, moto.description, command.strip(), time.monotonic() - started,
                         failures, second, second_server)
    report.write(args.output, text)
    progress(f"wrote {args.output} ({time.monotonic() - started:.0f} s in all)")
    return 1 if failures else 0


def _measure(bench: Bench, name: str, module_name: str, failures: list[str], reset: Callable[[], None] | None,
             server: str = "") -> Section | None:
    """Run one measurement; a failure is recorded, and the run goes on."""
    t0 = time.monotonic()
    label = f"{name} on {server}" if server else name
    progress(f"== {label}")
    try:
        section: Section = importlib.import_module(module_name).run(bench)
    except Exception as exc:  # noqa: BLE001 - one broken measurement must not lose the others
        traceback.print_exc()
        failures.append(f"{label}: {type(exc).__name__}: {exc}")
        return None
    finally:
        if reset is not None:
            reset()
    section.seconds = time.monotonic() - t0
    for f in section.figures:
        mark = "" if f.met is None or server else ("  [met]" if f.met else "  [MISSED]")
        progress(f"   {section.title}{f' ({server})' if server else ''}: {f.name}: {f.measured}{mark}")
    return section


if __name__ == "__main__":
    sys.exit(main())
