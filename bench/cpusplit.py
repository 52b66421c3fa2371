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

Where that CPU goes is read the same way (:func:`detail`): the share spent
in the kernel (``stime``), and how often each part blocked and was woken
again (``voluntary_ctxt_switches`` of ``status``): a job handed between
processes costs each of them a wake-up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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


def stat_sys(text: str) -> int:
    """stime (field 15 of proc(5)): CPU spent in the kernel, in clock ticks."""
    return int(stat_fields(text)[12])


def voluntary_switches(status: str | None) -> int:
    """``voluntary_ctxt_switches`` of a ``status`` file: the times the task blocked (0 if unknown)."""
    for line in (status or "").splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


def stat_ppid(text: str) -> int:
    return int(stat_fields(text)[1])


def part_of(title: str) -> str:
    """Which part a sesshud child process is, by its process title."""
    if title.startswith("sesshud: keeper"):
        return "keepers"
    if title.startswith("sesshud: worker"):
        return "runners"
    return "other children"


@dataclass(frozen=True)
class Usage:
    """One thread's or process's CPU so far (clock ticks, the kernel's share apart) and its blocking waits."""

    part: str
    ticks: int
    sys_ticks: int
    switches: int


NOTHING = Usage("", 0, 0, 0)


def _usage(part: str, stat: str, status: str | None) -> Usage:
    return Usage(part, stat_cpu(stat), stat_sys(stat), voluntary_switches(status))


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

    def reading(self) -> dict[tuple[str, int], Usage]:
        """(kind, id) -> its part and usage, for every thread of the masters and every descendant process."""
        out: dict[tuple[str, int], Usage] = {}
        for pid in self.masters:
            tasks = self.root / str(pid) / "task"
            try:
                tids = [int(t.name) for t in tasks.iterdir() if t.name.isdigit()]
            except OSError:
                continue
            for tid in tids:
                text = _read(tasks / str(tid) / "stat")
                if text:
                    out[("thread", tid)] = _usage("loop thread" if tid == pid else "bus threads", text,
                                                  _read(tasks / str(tid) / "status"))
        for pid in self._descendants():
            text = _read(self.root / str(pid) / "stat")
            title = (_read(self.root / str(pid) / "cmdline") or "").replace("\0", " ").strip()
            if text:
                out[("process", pid)] = _usage(part_of(title), text, _read(self.root / str(pid) / "status"))
        return out


Reading = dict[tuple[str, int], "Usage"]


def window(before: Reading, after: Reading, tick: int = TICK) -> dict[str, float]:
    """CPU seconds by part between two readings (a thread or process new in ``after`` counts from nothing)."""
    out = dict.fromkeys(PARTS, 0.0)
    for key, now in after.items():
        was = before.get(key, NOTHING)
        out[now.part] += max(0, now.ticks - was.ticks) / tick
    return out


def detail(before: Reading, after: Reading, tick: int = TICK) -> dict[str, tuple[float, int]]:
    """By part, between two readings: (CPU seconds in the kernel, voluntary context switches)."""
    out = dict.fromkeys(PARTS, (0.0, 0))
    for key, now in after.items():
        was = before.get(key, NOTHING)
        kernel, switches = out[now.part]
        out[now.part] = (kernel + max(0, now.sys_ticks - was.sys_ticks) / tick,
                         switches + max(0, now.switches - was.switches))
    return out


def detail_text(split: dict[str, float], details: dict[str, tuple[float, int]], jobs: int) -> str:
    """``loop thread 41% kernel, 2.1 waits; ...``: per part, the kernel's share of its CPU and its waits per job."""
    said = []
    for part in PARTS:
        kernel, switches = details.get(part, (0.0, 0))
        if split.get(part) or switches:
            share = 100 * kernel / split[part] if split.get(part) else 0.0
            said.append(f"{part} {share:.0f}% kernel, {switches / max(1, jobs):.2f} waits")
    return "; ".join(said)


def children(split: dict[str, float]) -> float:
    """The CPU of a split's child processes (keepers, runners and any other)."""
    return split["keepers"] + split["runners"] + split["other children"]


def split_text(split: dict[str, float], jobs: int) -> str:
    """``loop thread 0.12, bus threads 0.30, ...`` in CPU ms per job."""
    return ", ".join(f"{part} {1000 * split[part] / max(1, jobs):.3f}" for part in PARTS
                     if part != "other children" or split[part])
