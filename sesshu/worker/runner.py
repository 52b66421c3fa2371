"""The runner: the process of a worker slot that runs plugin code.

The keeper (``sesshu.worker.keeper``) forks the runner. Before any plugin code runs,
imports included, the runner contains itself: it keeps only its job pipe and
its output socket (as stdout and stderr; stdin is /dev/null), takes the
worker environment, lowers its resource limits, switches to ``workers.user``,
forbids new privileges and ptrace, makes its scratch directory, takes its
Landlock file view and its seccomp filter (``sesshu.worker.confine``), and
checks that it can read what it must. Then it imports every enabled plugin
once, says ``Ready``, and serves one job at a time from its pipe until the
pipe closes. Each job starts in an empty directory holding nothing of the last
job (``sesshu.worker.scratch``). It never imports boto3 and
never talks to AWS; everything it knows arrives over the pipe. It leaves only
through ``os._exit``, so no inherited atexit hook or buffered state runs twice.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import resource
import signal
import sys
import traceback
from dataclasses import replace
from multiprocessing.connection import Connection
from socket import socket
from types import ModuleType
from typing import Any

from setproctitle import setproctitle

from sesshu.plugin import Reject, RetryLater, addresses, retry_seconds
from sesshu.pool.protocol import BootFailed, Job, Ready, Result, decode_job, encode_child
from sesshu.text import clip, loggable
from sesshu.worker import confine, sandbox, scratch
from sesshu.worker.confine import ContainmentMissing
from sesshu.worker.leftovers import Leftovers, ProcessStarts
from sesshu.worker.sandbox import WorkerSetup

# (name, kind, ref, options): plain tuples, so the child needs no config code.
PluginSpec = tuple[str, str, str, dict[str, Any]]

JOB_FD = 3  # where the job pipe ends up, below any open_files limit
_RESET_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2",
                  "SIGTTIN", "SIGTTOU", "SIGCHLD", "SIGPIPE")
# Reasons after which a runner leaves: its heap or its limits are spent.
LEAVING_REASONS = ("memory", "limit_processes", "limit_open_files", "limit_file_size")


def runner_main(job_conn: Connection, output: socket, specs: list[PluginSpec], setup: WorkerSetup,
                max_result_bytes: int) -> None:
    """Entry point of the runner, in the keeper's child; never returns."""
    code = 0
    slot: str | None = None
    try:
        conn = _hygiene(job_conn, output)
        # Before the environment goes: setproctitle finds its room from argv and environ.
        setproctitle("sesshud: worker starting")
        try:
            slot = _contain(setup)
        except ContainmentMissing as exc:
            conn.send_bytes(encode_child(BootFailed("-", str(exc))))
            slot, plugins = None, None
        else:
            addresses.allow(setup.network_allow)  # the outbound address guard's policy, before any plugin
            plugins = _load_all(conn, specs, setup)
        starts = ProcessStarts()
        starts.install()
        if plugins is None:
            code = 3
        else:
            conn.send_bytes(encode_child(Ready()))
            _serve(conn, plugins, max_result_bytes, slot, starts)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the parent closed our pipe or died: time to go
    except BaseException:  # noqa: BLE001 - report anything, then leave
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            if slot is not None:
                scratch.remove(slot, None)
        finally:
            os._exit(code)


def _hygiene(job_conn: Connection, output: socket) -> Connection:
    """Hold exactly the job pipe (as fd 3), the output socket (as 1 and 2) and /dev/null (as 0)."""
    for name in _RESET_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(output.fileno(), 1)
    os.dup2(output.fileno(), 2)
    os.dup2(job_conn.fileno(), JOB_FD)
    sandbox.close_fds({0, 1, 2, JOB_FD})
    # The objects' own fds are closed now; forget them without closing again.
    job_conn._handle = None  # type: ignore[attr-defined]
    output.detach()
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - lives as long as the process
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    os.chdir("/")
    logging.basicConfig(level=logging.WARNING, force=True,
                        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
    return Connection(JOB_FD)


def _contain(setup: WorkerSetup) -> str | None:
    """Environment, limits, identity, the flags a uid switch would reset, then the file view and filter.

    Returns the slot's scratch directory, if the setup has a scratch root.
    """
    keeper = os.getppid()
    os.environ.clear()
    os.environ.update(setup.environment)
    setup.limits.apply()
    # Past file_size a write then fails with EFBIG, which names the limit,
    # instead of SIGXFSZ killing the runner with no word of why.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if setup.identity is not None:
        sandbox.drop_privileges(setup.identity)
    else:
        sandbox.drop_capabilities()
    sandbox.set_no_new_privs()
    sandbox.set_dumpable(False)
    sandbox.die_with_parent(signal.SIGKILL)
    if os.getppid() != keeper:
        os._exit(0)  # the keeper died before the death signal was armed
    found = confine.protections()
    if setup.require_containment:
        confine.require(found)
    slot = scratch.open_slot(setup.scratch_root, keeper) if setup.scratch_root else None
    confine.confine(found, slot, setup.read, setup.write)
    return slot


def load_plugin(name: str, kind: str, ref: str) -> ModuleType:
    """Import one plugin and check that it offers the plugin interface."""
    if kind == "file":
        spec = importlib.util.spec_from_file_location(f"sesshu_plugin_{name}", ref)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {ref}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    elif kind == "module":
        module = importlib.import_module(ref)
    else:  # entry point, "module" or "module:attribute"
        modname, _, attr = ref.partition(":")
        module = importlib.import_module(modname.strip())
        for part in filter(None, attr.strip().split(".")):
            module = getattr(module, part)
    for fn in ("validate", "fetch"):
        if not callable(getattr(module, fn, None)):
            raise TypeError(f"plugin has no callable {fn}(target)")
    return module


def _load_all(conn: Connection, specs: list[PluginSpec], setup: WorkerSetup) -> dict[str, ModuleType] | None:
    problem = sandbox.unreadable(setup.must_read)
    if problem is not None:
        who = setup.identity.user if setup.identity else "the worker"
        conn.send_bytes(encode_child(BootFailed("-", f"workers.user: {who} {problem}")))
        return None
    plugins: dict[str, ModuleType] = {}
    for name, kind, ref, options in specs:
        try:
            module = load_plugin(name, kind, ref)
            configure = getattr(module, "configure", None)
            if callable(configure):
                configure(dict(options))
        except BaseException as exc:  # noqa: BLE001 - any import failure is a boot failure
            conn.send_bytes(encode_child(BootFailed(name, _describe(exc))))
            return None
        plugins[name] = module
    return plugins


def _serve(conn: Connection, plugins: dict[str, ModuleType], max_result_bytes: int, slot: str | None,
           starts: ProcessStarts) -> None:
    jobs_dir = scratch.JobDirectory(slot) if slot is not None else None
    leftovers = Leftovers(starts)
    while True:
        setproctitle("sesshud: worker idle")
        job = decode_job(conn.recv_bytes())
        setproctitle(f"sesshud: worker {loggable(job.plugin, 40)} {loggable(job.target, 60)}")
        # Only now: the last job left no process, or the keeper swept them before this
        # job was sent, so nothing of that job can write into this one's directory.
        if jobs_dir is not None:
            jobs_dir.enter()
        leftovers.begin()
        result = run_job(plugins, job, max_result_bytes, starts)
        conn.send_bytes(encode_child(replace(result, sweep=leftovers.possible())))
        if result.reason in LEAVING_REASONS:
            return  # the heap or a limit is spent: let a fresh runner take over


def run_job(plugins: dict[str, ModuleType], job: Job, max_result_bytes: int,
            starts: ProcessStarts | None = None) -> Result:
    """Run ``validate`` then ``fetch``; turn every way it can end into a Result."""
    module = plugins.get(job.plugin)
    if module is None:
        return Result(job.job_id, "rejected", f"plugin {job.plugin!r} is not loaded")
    try:
        module.validate(job.target)
    except (Reject, RetryLater) as exc:
        return _asked(job, exc)
    except BaseException as exc:  # noqa: BLE001 - plugins are untrusted
        return Result(job.job_id, "rejected", f"invalid target: {_describe(exc)}")
    try:
        data = module.fetch(job.target)
    except (Reject, RetryLater) as exc:
        return _asked(job, exc)
    except MemoryError:
        return Result(job.job_id, "failed", "fetch ran out of memory (workers.memory_limit)", reason="memory")
    except BaseException as exc:  # noqa: BLE001
        limit = sandbox.limit_reason(exc, starts is not None and starts.seen, _processes_capped())
        if limit is not None:
            name = limit.removeprefix("limit_")
            return Result(job.job_id, "failed", f"fetch hit workers.limits.{name}: {_describe(exc)}",
                          reason=limit)
        return Result(job.job_id, "failed", f"fetch raised {_describe(exc)}", reason="fetch_error")
    if data is None:
        return Result(job.job_id, "empty")
    try:
        payload = json.dumps(data, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        return Result(job.job_id, "failed", f"result is not JSON-serialisable: {_describe(exc)}",
                      reason="unserialisable")
    except MemoryError:
        return Result(job.job_id, "failed", "result ran out of memory (workers.memory_limit)", reason="memory")
    if len(payload) > max_result_bytes:
        return Result(job.job_id, "failed",
                      f"result is {len(payload)} bytes, over the {max_result_bytes}-byte limit", reason="too_large")
    return Result(job.job_id, "done", payload=payload)


def _processes_capped() -> bool:
    return resource.getrlimit(resource.RLIMIT_NPROC)[0] != resource.RLIM_INFINITY


def _asked(job: Job, exc: Reject | RetryLater) -> Result:
    """What the plugin asked for, in so many words: never again, or not before a time."""
    try:
        reason = clip(exc.reason, 500)
    except BaseException:  # noqa: BLE001 - a subclass may have made even that fail
        reason = ""
    if isinstance(exc, Reject):
        return Result(job.job_id, "rejected", f"rejected by the plugin: {reason or 'no reason given'}")
    seconds = retry_seconds(getattr(exc, "seconds", 0))
    said = f"plugin asked to retry in {seconds} s" + (f": {reason}" if reason else "")
    return Result(job.job_id, "failed", said, reason="retry_later", delay=seconds)


def _describe(exc: BaseException) -> str:
    try:
        return clip(f"{type(exc).__name__}: {exc}", 500)
    except BaseException:  # noqa: BLE001 - a plugin's exception may not even print
        return clip(type(exc).__name__, 500)
