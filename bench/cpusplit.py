"""sesshud's CPU, split by thread and process, read from ``/proc``.

Four parts: the master's loop thread (its main thread, whose id is the
process id), the master's other threads (the bus lanes: receivers, senders,
their pools), the keepers (children titled ``sesshud: keeper``) and the
runners (``sesshud: worker ...``); any other descendant is counted apart.
Each is ``utime + stime`` of ``/proc/<pid>/task/<tid>/stat`` (threads) or
``/proc/<pid>/stat`` (processes), in clock ticks. A window's CPU is the
difference of two readings, process by process; one that started within the
window counts from nothing, one that ended within it loses what it used
since the first reading (the daemon's runners live for many jobs).
"""

from __future__ import annotations

import os
from pathlib import Path

PARTS = ("loop thread", "bus threads", "keepers", "runners", "other children")
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def stat_fields(text: str) -> list[str]:
    """The fields of a ``stat`` line after ``comm``, which may hold spaces and parentheses.

    The first returned field is ``state`` (field 3 of proc(5)).
    """
    return text[text.rindex(")") + 2:].split()


def stat_cpu(text: str) -> int:
    """utime + stime (fields 14 and 15 of proc(5)), in clock ticks."""
    f = stat_fields(text)
    return int(f[11]) + int(f[12])


def stat_ppid(text: str) -> int:
    return int(stat_fields(text)[1])


def part_of(title: str) -> str:
    """Which part a sesshud child process is, by its process title."""
    if title.startswith("sesshud: keeper"):
        return "keepers"
    if title.startswith("sesshud: worker"):
        return "runners"
    return "other children"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


class ProcTree:
    """Readings of one or more sesshud masters' CPU by part, from ``root`` (``/proc``, or a fake one)."""

    def __init__(self, masters: list[int], root: Path = Path("/proc")) -> None:
        self.masters = masters
        self.root = root

    def _descendants(self) -> list[int]:
        parents: dict[int, list[int]] = {}
        for entry in self.root.iterdir():
            if not entry.name.isdigit():
                continue
            text = _read(entry / "stat")
            if text:
                parents.setdefault(stat_ppid(text), []).append(int(entry.name))
        out, todo = [], list(self.masters)
        while todo:
            kids = parents.get(todo.pop(), [])
            out += kids
            todo += kids
        return out

    def reading(self) -> dict[tuple[str, int], tuple[str, int]]:
        """(kind, id) -> (part, ticks) for every thread of the masters and every descendant process."""
        out: dict[tuple[str, int], tuple[str, int]] = {}
        for pid in self.masters:
            tasks = self.root / str(pid) / "task"
            try:
                tids = [int(t.name) for t in tasks.iterdir() if t.name.isdigit()]
            except OSError:
                continue
            for tid in tids:
                text = _read(tasks / str(tid) / "stat")
                if text:
                    out[("thread", tid)] = ("loop thread" if tid == pid else "bus threads", stat_cpu(text))
        for pid in self._descendants():
            text = _read(self.root / str(pid) / "stat")
            title = (_read(self.root / str(pid) / "cmdline") or "").replace("\0", " ").strip()
            if text:
                out[("process", pid)] = (part_of(title), stat_cpu(text))
        return out


def window(before: dict[tuple[str, int], tuple[str, int]],
           after: dict[tuple[str, int], tuple[str, int]], tick: int = TICK) -> dict[str, float]:
    """CPU seconds by part between two readings (a thread or process new in ``after`` counts from nothing)."""
    out = dict.fromkeys(PARTS, 0.0)
    for key, (part, ticks) in after.items():
        was = before.get(key, (part, 0))[1]
        out[part] += max(0, ticks - was) / tick
    return out


def children(split: dict[str, float]) -> float:
    """The CPU of a split's child processes (keepers, runners and any other)."""
    return split["keepers"] + split["runners"] + split["other children"]


def split_text(split: dict[str, float], jobs: int) -> str:
    """``loop thread 0.12, bus threads 0.30, ...`` in CPU ms per job."""
    return ", ".join(f"{part} {1000 * split[part] / max(1, jobs):.3f}" for part in PARTS
                     if part != "other children" or split[part])
