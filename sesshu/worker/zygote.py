"""Imported by the fork server alone, as its first preload: it hardens that process.

The fork server forks every worker slot, so what it holds, every slot
inherits. It is exec'd with the worker environment already (see
``sesshu.pool.spawn.start_fork_server``); here it becomes non-dumpable, so that no
process of the same account can ptrace it, read its memory or copy its file
descriptors, which would be a way around the keepers. Importing this module
anywhere else would harden that process too, which is why nothing else does.
"""

from __future__ import annotations

from sesshu.worker import sandbox

sandbox.set_dumpable(False)
