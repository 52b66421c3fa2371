"""What a runner confines itself to, and how the master says what is in force on this kernel.

After it switched accounts and before any plugin code runs, a runner takes
a Landlock file view (:func:`grants`): it may read the interpreter, its
library, the plugins and the few system files a network client needs, and
write only in its slot's scratch directory and ``/dev/null``; its signals
stay within its own processes. Then a seccomp filter closes the system
calls no plugin needs (``sesshu.worker.seccomp``). Where the kernel lacks
either, the runner goes on without it, unless ``workers.require_containment``
is set; the master finds that out first (:func:`protections`), so a start
fails before any worker does.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from sesshu.worker import landlock, seccomp
from sesshu.worker.landlock import Grant

# What a network client reads besides the interpreter: libraries, certificates,
# name resolution, time zones, randomness. /etc as a whole is not among them:
# the daemon's config usually lives there.
SYSTEM_READ = (
    "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin",
    "/etc/ssl", "/etc/ca-certificates", "/etc/pki", "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf",
    "/etc/gai.conf", "/etc/host.conf", "/etc/services", "/etc/protocols", "/etc/localtime", "/etc/timezone",
    "/etc/ld.so.cache", "/etc/mime.types", "/dev/urandom", "/dev/random", "/dev/zero",
    "/sys/devices/system/cpu",  # how many CPUs: os.cpu_count(), and so thread pools' default sizes
    "/proc/self",  # the runner's own entry (its fds, its status), fixed when the view is taken
)
# Landlock needs ABI 6 to keep signals in the job: below it, only files are confined.
SIGNALS_ABI = 6
_ALL = (1 << 16) - 1
_DEV_NULL = landlock.READ_FILE | landlock.WRITE_FILE | landlock.TRUNCATE | landlock.IOCTL_DEV


class ContainmentMissing(Exception):
    """``workers.require_containment`` is set and this kernel cannot give what it asks for."""


def interpreter_paths() -> list[str]:
    """Where this interpreter, its standard library, its import path and Sesshu itself live."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable)),
             os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}  # Sesshu, installed editable or not
    paths.update(p for p in sys.path if p and os.path.isabs(p))
    return sorted(paths)


def grants(slot: str | None, read: tuple[str, ...], write: tuple[str, ...]) -> list[Grant]:
    """The runner's file view: read-only for the system and ``read``, everything in ``slot`` and ``write``."""
    view = [Grant(p, landlock.READ) for p in (*SYSTEM_READ, *interpreter_paths(), *read)]
    view.append(Grant("/dev/null", _DEV_NULL))
    view += [Grant(p, _ALL) for p in (*([slot] if slot else []), *write)]
    return view


@dataclass(frozen=True)
class Protections:
    """What this kernel and this host give a worker."""

    landlock_abi: int
    seccomp_missing: str | None  # why there is no filter; None when there is one

    @property
    def files(self) -> bool:
        return self.landlock_abi > 0

    @property
    def signals(self) -> bool:
        return self.landlock_abi >= SIGNALS_ABI

    def missing(self) -> list[str]:
        """Each protection this host lacks, in words."""
        out = []
        if not self.files:
            out.append("Landlock (the kernel has none): plugins can read every file their account can, "
                       "and write outside their scratch directory")
        elif not self.signals:
            out.append(f"Landlock signal scoping (the kernel has ABI {self.landlock_abi}; it takes "
                       f"{SIGNALS_ABI}): a plugin can signal other workers of its account")
        if self.seccomp_missing is not None:
            out.append(f"seccomp ({self.seccomp_missing}): every system call is open to plugins")
        return out

    def describe(self, user: str | None) -> str:
        """One line: what is in force, then what is missing."""
        held = []
        if self.files:
            held.append(f"Landlock ABI {self.landlock_abi} (files{', signals' if self.signals else ''})")
        if self.seccomp_missing is None:
            held.append("seccomp")
        held += ["rlimits", "a scratch directory per job",
                 f"account {user}" if user else "the daemon's own account (workers.user is not set)"]
        line = "containment: " + ", ".join(held)
        missing = self.missing()
        return line + ("; missing: " + "; ".join(missing) if missing else "")


def protections() -> Protections:
    return Protections(landlock.abi(), seccomp.available())


def require(found: Protections) -> None:
    """Raise ContainmentMissing when anything is missing (``workers.require_containment``)."""
    missing = found.missing()
    if missing:
        raise ContainmentMissing("workers.require_containment: this host lacks " + "; ".join(missing))


def confine(found: Protections, slot: str | None, read: tuple[str, ...], write: tuple[str, ...]) -> None:
    """Take the file view and the system-call filter ``found`` says this host has; needs no_new_privs."""
    if found.files:
        landlock.restrict_self(grants(slot, read, write))
    if found.seccomp_missing is None:
        seccomp.load_filter()


def readable_by_plugins(path: str, read: tuple[str, ...]) -> str | None:
    """The grant under which plugins can read ``path``, if one covers it (for a warning at start)."""
    real = os.path.realpath(path)
    for grant in (*SYSTEM_READ, *interpreter_paths(), *read):
        base = os.path.realpath(grant)
        if real == base or real.startswith(base.rstrip("/") + "/"):
            return grant
    return None
