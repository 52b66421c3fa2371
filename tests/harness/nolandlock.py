"""``python -m tests.harness.nolandlock COMMAND...``: run COMMAND as on a kernel without Landlock.

A seccomp filter makes Landlock's three system calls answer ENOSYS, which is
what a kernel built without Landlock (or booted with it off) answers.
"""

from __future__ import annotations

import errno
import os
import sys

from sesshu.worker import seccomp


def main() -> None:
    lib = seccomp._library()
    ctx = lib.seccomp_init(seccomp._ACT_ALLOW)
    for name in ("landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"):
        seccomp._rule(lib, ctx, seccomp._act_errno(errno.ENOSYS), name)
    if lib.seccomp_load(ctx) != 0:
        raise SystemExit("nolandlock: seccomp_load failed")
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
