"""The code that runs inside a worker child: load plugins, run jobs, report.

A child is started by the fork server (see ``sesshu.pool``), imports every
enabled plugin once, says ``Ready``, then serves one job at a time from its
own pipe until the pipe closes. It never imports boto3 and never talks to
AWS; everything it knows arrives over the pipe. It leaves only through
``os._exit``, so no inherited atexit hook or buffered state runs twice.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import json
import logging
import os
import resource
import signal
import sys
import traceback
from multiprocessing.connection import Connection
from types import ModuleType
from typing import Any

from setproctitle import setproctitle

from sesshu.protocol import BootFailed, Job, Ready, Result, decode_job, encode_child

# (name, kind, ref, options): plain tuples, so the child needs no config code.
PluginSpec = tuple[str, str, str, dict[str, Any]]

_PR_SET_PDEATHSIG = 1
_RESET_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2",
                  "SIGTTIN", "SIGTTOU", "SIGCHLD", "SIGPIPE")


def child_main(conn: Connection, specs: list[PluginSpec], max_result_bytes: int,
               memory_limit_mib: int | None = None) -> None:
    """Entry point of a worker child; never returns."""
    code = 0
    try:
        _hygiene()
        if memory_limit_mib:
            # Address space, not RSS: the kernel enforces it at allocation
            # time, so a runaway plugin gets a MemoryError (or dies) alone.
            limit = memory_limit_mib * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        plugins = _load_all(conn, specs)
        if plugins is None:
            code = 3
        else:
            conn.send_bytes(encode_child(Ready()))
            _serve(conn, plugins, max_result_bytes)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the parent closed our pipe or died: time to go
    except BaseException:  # noqa: BLE001 - report anything, then leave
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _hygiene() -> None:
    # Leading our own process group lets the parent kill us together with
    # anything a plugin spawned, in one killpg.
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    for name in _RESET_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    _die_with_parent()
    setproctitle("sesshud: worker starting")
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s",
    )


def _die_with_parent() -> None:
    # The fork server, our parent, exits when sesshud dies; PDEATHSIG turns
    # that into our death even while a plugin is busy and not reading the pipe.
    # multiprocessing hands every child a copy of the write end of the fork
    # server's "alive" pipe; while any child holds it, the fork server never
    # sees sesshud go, so it must be closed here.
    from multiprocessing import forkserver

    server: Any = forkserver._forkserver  # type: ignore[attr-defined]
    alive_fd = getattr(server, "_forkserver_alive_fd", None)
    if alive_fd is not None:
        try:
            os.close(alive_fd)
        except OSError:
            pass
        server._forkserver_alive_fd = None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        os._exit(0)


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


def _load_all(conn: Connection, specs: list[PluginSpec]) -> dict[str, ModuleType] | None:
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


def _serve(conn: Connection, plugins: dict[str, ModuleType], max_result_bytes: int) -> None:
    while True:
        setproctitle("sesshud: worker idle")
        job = decode_job(conn.recv_bytes())
        setproctitle(f"sesshud: worker {job.plugin} {shorten(job.target)}")
        result = run_job(plugins, job, max_result_bytes)
        conn.send_bytes(encode_child(result))
        if result.reason == "memory":
            return  # the heap may be in a sorry state: let a fresh child take over


def run_job(plugins: dict[str, ModuleType], job: Job, max_result_bytes: int) -> Result:
    """Run ``validate`` then ``fetch``; turn every way it can end into a Result."""
    module = plugins.get(job.plugin)
    if module is None:
        return Result(job.job_id, "rejected", f"plugin {job.plugin!r} is not loaded")
    try:
        module.validate(job.target)
    except BaseException as exc:  # noqa: BLE001 - plugins are untrusted
        return Result(job.job_id, "rejected", f"invalid target: {_describe(exc)}")
    try:
        data = module.fetch(job.target)
    except MemoryError:
        return Result(job.job_id, "failed", "fetch ran out of memory (workers.memory_limit)", reason="memory")
    except BaseException as exc:  # noqa: BLE001
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


def shorten(text: str, limit: int = 60) -> str:
    """Keep process titles and error texts to a readable length."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(exc: BaseException) -> str:
    return shorten(f"{type(exc).__name__}: {exc}", 500)
