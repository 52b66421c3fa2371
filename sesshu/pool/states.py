"""A slot's states, the steps between them, and how a dead slot's exit is told.

Only declarations live here, as in supervisor's ``states.py``: the slot
(``sesshu.pool.slot``) takes every step through ``ChildProcess._change``,
which looks it up in :data:`TRANSITIONS` and raises
:class:`IllegalTransition` on one the table does not allow; the pool and its
index (``sesshu.pool.slots``) only read a slot's state.

    STARTING --ready--> IDLE --assign--> BUSY --job_done--> SWEEPING --swept--> IDLE
                                           BUSY --job_done_clean--> IDLE  (the job left no process)
        any live state --stop/kill/terminate--> STOPPING --reap--> DEAD
"""

from __future__ import annotations

import enum
import signal


class State(enum.Enum):
    STARTING = "starting"  # launched; its plugins are loading
    IDLE = "idle"
    BUSY = "busy"
    SWEEPING = "sweeping"  # its job ended; the keeper kills what the job left behind
    STOPPING = "stopping"  # closed or signalled; waiting for its death
    DEAD = "dead"


LIVE = frozenset((State.STARTING, State.IDLE, State.BUSY, State.SWEEPING))

# Each step: the states it may leave, and the one it enters. A stopping slot may be stopped again, with a signal.
TRANSITIONS: dict[str, dict[State, State]] = {
    "ready": {State.STARTING: State.IDLE},
    "assign": {State.IDLE: State.BUSY},
    "job_done": {State.BUSY: State.SWEEPING},
    "job_done_clean": {State.BUSY: State.IDLE},  # the runner says the job left no process: nothing to sweep
    "swept": {State.SWEEPING: State.IDLE},
    "stop": {state: State.STOPPING for state in (*LIVE, State.STOPPING)},
    "reap": {State.STOPPING: State.DEAD},
}


class IllegalTransition(Exception):
    pass


def describe_exit(code: int | None) -> str:
    """A dead slot's exit code (``Process.exitcode``: negative for a signal), for a log line."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"
