"""The slot's states and its table of steps, read as declarations, with no slot."""

from __future__ import annotations

import signal

import pytest

from sesshu.pool.states import LIVE, TRANSITIONS, State, describe_exit


def test_the_table_lets_every_live_state_stop_and_only_a_stopping_one_die() -> None:
    assert {State.STARTING, State.IDLE, State.BUSY, State.SWEEPING} == LIVE
    assert set(TRANSITIONS["stop"]) == LIVE | {State.STOPPING}
    assert TRANSITIONS["reap"] == {State.STOPPING: State.DEAD}
    assert not any(State.DEAD in leaving for leaving in TRANSITIONS.values())


def test_every_step_but_stop_leaves_one_live_state_for_a_live_one() -> None:
    for step, moves in TRANSITIONS.items():
        if step in ("stop", "reap"):
            continue
        assert len(moves) == 1 and all(old in LIVE and new in LIVE for old, new in moves.items()), step


def test_a_job_ends_in_sweeping_unless_it_left_no_process() -> None:
    assert TRANSITIONS["job_done"] == {State.BUSY: State.SWEEPING}
    assert TRANSITIONS["job_done_clean"] == {State.BUSY: State.IDLE}
    assert TRANSITIONS["swept"] == {State.SWEEPING: State.IDLE}


@pytest.mark.parametrize(("code", "told"), [
    (None, "exit status unknown"),
    (0, "exited with status 0"),
    (3, "exited with status 3"),
    (-signal.SIGSEGV, "killed by SIGSEGV"),
    (-signal.SIGKILL, "killed by SIGKILL"),
    (-200, "killed by signal 200"),  # no signal of that number: told as a number
])
def test_an_exit_code_is_told_as_a_log_line_says_it(code: int | None, told: str) -> None:
    assert describe_exit(code) == told
