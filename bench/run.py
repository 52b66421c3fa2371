"""``python -m bench.run``: run the benchmarks, print progress, write docs/benchmarks.md.

Each measurement lives in its own module with ``run(bench) -> Section``.
They run one after another against one moto server (reset between them),
so their figures share a machine state as far as a noisy machine allows.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import report
from bench.common import ROOT, Bench, Section, machine, progress
from bench.motoserver import MotoProcess

# (name, module, needs the SQS/SNS server)
MEASUREMENTS = [
    ("requests", "bench.requests_per_job", True),
    ("throughput", "bench.throughput", True),
    ("pool", "bench.pool_core", False),
    ("io", "bench.io_scaling", True),
    ("latency", "bench.latency", True),
    ("recovery", "bench.recovery", True),
    ("memory", "bench.memory", True),
    ("scaling", "bench.scaling", True),
    ("containment", "bench.containment", True),
]
PEERS = ("peers", "bench.peers", True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes, for development (~3 min)")
    p.add_argument("--peers", action="store_true", help="also compare with Celery (needs the peers extra)")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="run only this measurement (repeatable): "
                        + ", ".join(n for n, _, _ in [*MEASUREMENTS, PEERS]))
    p.add_argument("--stock-moto", action="store_true", help="run moto without the hot-spot patch")
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (configs, logs)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    chosen = [*MEASUREMENTS, PEERS] if args.peers else list(MEASUREMENTS)
    if args.only:
        unknown = set(args.only) - {n for n, _, _ in [*MEASUREMENTS, PEERS]}
        if unknown:
            print(f"unknown measurement(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        chosen = [m for m in [*MEASUREMENTS, PEERS] if m[0] in args.only]
    facts = machine()
    tmp = Path(tempfile.mkdtemp(prefix="sesshu-bench-"))
    bench = Bench(quick=args.quick, tmp=tmp)
    sections: list[Section] = []
    failures: list[str] = []
    started = time.monotonic()
    moto = MotoProcess(stock=args.stock_moto, log_path=str(tmp / "moto.log"))
    try:
        if any(needs for _, _, needs in chosen):
            progress(f"starting {moto.description}")
            bench.moto = moto.start()
        for name, module_name, needs_server in chosen:
            t0 = time.monotonic()
            progress(f"== {name}")
            try:
                section = importlib.import_module(module_name).run(bench)
            except Exception as exc:  # noqa: BLE001 - one broken measurement must not lose the others
                traceback.print_exc()
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            finally:
                if needs_server:
                    moto.reset()
            section.seconds = time.monotonic() - t0
            sections.append(section)
            for f in section.figures:
                mark = "" if f.met is None else ("  [met]" if f.met else "  [MISSED]")
                progress(f"   {section.title}: {f.name}: {f.measured}{mark}")
    finally:
        moto.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            progress(f"scratch files kept in {tmp}")
    command = "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report.render(sections, facts, moto.description, command.strip(), time.monotonic() - started,
                         failures)
    report.write(args.output, text)
    progress(f"wrote {args.output} ({time.monotonic() - started:.0f} s in all)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
