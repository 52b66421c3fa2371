"""sesshud's CPU split by thread and process title, from a fake /proc."""

from __future__ import annotations

from pathlib import Path

from bench.cpusplit import ProcTree, detail, detail_text, part_of, split_text, stat_cpu, stat_ppid, stat_sys, window


def _stat(pid: int, comm: str, ppid: int, utime: int, stime: int) -> str:
    # proc(5): pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime ...
    return f"{pid} ({comm}) S {ppid} 1 1 0 -1 4194560 10 0 0 0 {utime} {stime} 0 0 20 0 3 0\n"


def _proc(root: Path, pid: int, ppid: int, title: str, ticks: int, threads: dict[int, int] | None = None,
          switches: int | None = None) -> None:
    d = root / str(pid)
    (d / "task").mkdir(parents=True, exist_ok=True)
    (d / "stat").write_text(_stat(pid, "py (x) y", ppid, ticks - ticks // 4, ticks // 4))
    if switches is not None:
        (d / "status").write_text(f"Name:\tpy\nvoluntary_ctxt_switches:\t{switches}\n"
                                  f"nonvoluntary_ctxt_switches:\t{switches * 10}\n")
    (d / "cmdline").write_text(title.replace(" ", "\0") + "\0")
    for tid, t in (threads or {pid: ticks}).items():
        (d / "task" / str(tid)).mkdir(exist_ok=True)
        (d / "task" / str(tid) / "stat").write_text(_stat(tid, "thr", ppid, t - t // 3, t // 3))


def test_stat_fields_survive_a_comm_with_spaces_and_parentheses() -> None:
    text = _stat(7, "a) (b c", 3, 120, 30)
    assert stat_cpu(text) == 150 and stat_sys(text) == 30 and stat_ppid(text) == 3


def test_parts_by_title() -> None:
    assert part_of("sesshud: keeper") == "keepers"
    assert part_of("sesshud: worker idle") == "runners"
    assert part_of("sesshud: worker noop n:64:1") == "runners"
    assert part_of("python -m something") == "other children"


def _tree(root: Path, scale: int) -> None:
    _proc(root, 100, 1, "sesshud: master -c x.yaml", 0, threads={100: 10 * scale, 101: 4 * scale, 102: 6 * scale})
    _proc(root, 110, 100, "sesshud: keeper", 2 * scale)
    _proc(root, 120, 110, "sesshud: worker idle", 3 * scale)  # a runner under its keeper
    _proc(root, 121, 100, "sesshud: worker noop n:64:1", 5 * scale)
    _proc(root, 200, 1, "sesshud: worker of another daemon", 1000 * scale)  # not a descendant


def test_a_window_splits_the_master_by_thread_and_the_children_by_title(tmp_path: Path) -> None:
    _tree(tmp_path, 1)
    tree = ProcTree([100], tmp_path)
    before = tree.reading()
    _tree(tmp_path, 3)
    _proc(tmp_path, 122, 110, "sesshud: worker starting", 7)  # started within the window: counts from nothing
    split = window(before, tree.reading(), tick=100)
    assert split == {"loop thread": 0.2, "bus threads": 0.2, "keepers": 0.04, "runners": 0.23,
                     "other children": 0.0}
    assert split_text(split, 100) == "loop thread 2.000, bus threads 2.000, keepers 0.400, runners 2.300"


def test_a_process_gone_before_the_second_reading_is_left_out(tmp_path: Path) -> None:
    _tree(tmp_path, 1)
    tree = ProcTree([100], tmp_path)
    before = tree.reading()
    for f in (tmp_path / "121").rglob("*"):
        if f.is_file():
            f.unlink()
    assert window(before, tree.reading(), tick=100)["runners"] == 0.0


def test_cpu_per_job_of_the_worker_itself_leaves_the_server_and_the_bench_out() -> None:
    from bench.throughput import children_ms, split_note, tree_ms

    ses = {"jobs": 1000, "rate": 400.0, "split": {"loop thread": 0.3, "bus threads": 0.5, "keepers": 0.1,
                                                   "runners": 0.2, "other children": 0.0},
           "cpu": {"moto": 1.3, "sesshud master": 0.8, "sesshud children": 0.3, "proxy": 0.2}}
    raw = {"jobs": 1000, "rate": 500.0, "cpu": {"moto": 1.2, "raw loop": 0.45, "proxy": 0.2}}
    assert round(tree_ms(ses), 6) == 1.1 and round(tree_ms(raw), 6) == 0.45
    assert round(children_ms(ses), 6) == 0.3
    said = split_note([ses], [raw])
    assert "loop thread 0.300, bus threads 0.500, keepers 0.100, runners 0.200" in said
    assert said.endswith("raw loop (one process): 0.450")


def test_the_kernels_share_and_the_waits_are_read_per_part(tmp_path: Path) -> None:
    """Two runners that used 400 ticks (a quarter in the kernel) and blocked 300 times between readings."""
    _proc(tmp_path, 100, 1, "sesshud: master", 0, switches=5)
    _proc(tmp_path, 121, 100, "sesshud: worker idle", 100, switches=10)
    tree = ProcTree([100], tmp_path)
    before = tree.reading()
    _proc(tmp_path, 121, 100, "sesshud: worker idle", 300, switches=160)
    _proc(tmp_path, 122, 100, "sesshud: worker noop", 200, switches=150)  # new: counts from nothing
    split, details = window(before, tree.reading(), tick=100), detail(before, tree.reading(), tick=100)
    assert split["runners"] == 4.0
    assert details["runners"] == (1.0, 300)  # stime: (75 - 25) + 50 ticks
    assert details["loop thread"] == (0.0, 0)  # no status read for a thread without one
    assert detail_text(split, details, 100) == "runners 25% kernel, 3.00 waits"
