"""What the pool reports to the supervisor, one value per thing that happened to a job or a slot."""

from __future__ import annotations

from dataclasses import dataclass

from sesshu.config.model import Config
from sesshu.pool.protocol import Result
from sesshu.pool.slot import RunningJob


@dataclass(frozen=True)
class JobFinished:
    running: RunningJob
    result: Result
    pid: int
    finished: float  # monotonic


@dataclass(frozen=True)
class JobLost:
    """The slot holding the job died, was killed, or timed out."""

    running: RunningJob
    reason: str  # "timeout", "crashed", "protocol", "killed"
    detail: str
    pid: int


@dataclass(frozen=True)
class ChildBootFailed:
    plugin: str
    error: str
    pid: int


@dataclass(frozen=True)
class Reconfigured:
    """A proposed configuration loaded in a probe slot and is now the pool's."""

    config: Config


@dataclass(frozen=True)
class ReconfigureFailed:
    plugin: str
    error: str


PoolEvent = JobFinished | JobLost | ChildBootFailed | Reconfigured | ReconfigureFailed
