"""The pool's index of its slots, kept current as slots change, so a loop turn costs what changed.

With hundreds of slots, a turn that asks every slot what it is doing costs
more than the turn's real work. Instead each slot tells this index
(:class:`sesshu.pool.slot.Watcher`) when its state, generation or next
wake-up changes, and before it closes an fd. The index is the pool's one
list of its slots, from launch until death, and keeps:

- the slots in each state, so ``idle()`` and ``busy_count()`` touch no other slot;
- the slots that count towards the pool's strength (live, and not a probe);
- one selector over every open fd of every slot, registered when a slot
  comes and unregistered before its fd closes or the slot is dead, mapping
  an fd to its slot. The supervisor waits on the selector's own fd (an epoll fd is readable
  while any fd in it is), so its wait set never changes with the slots;
- a heap of wake-up times: only slots with something due are visited.

A heap entry may be stale (the job ended before its deadline): it is
dropped when it comes up. Every slot with a wake-up time has an entry at or
before it, because each change pushes the slot's earliest time and each
entry taken off the heap pushes its slot's time again.
"""

from __future__ import annotations

import heapq
import itertools
import selectors
from collections.abc import Iterator

from sesshu.pool.slot import ChildProcess
from sesshu.pool.states import LIVE, State


class SlotIndex:
    def __init__(self) -> None:
        # Linux only (as is the rest of the sandbox): epoll has an fd of its own to wait on.
        self._selector = selectors.EpollSelector()
        self._state: dict[ChildProcess, State] = {}
        # Dicts as ordered sets: the last slot to go idle is the first handed a job.
        self._by_state: dict[State, dict[ChildProcess, None]] = {state: {} for state in State}
        self._counted: dict[ChildProcess, None] = {}
        self._fds: dict[ChildProcess, set[int]] = {}
        self._heap: list[tuple[float, int, ChildProcess]] = []
        self._pushed: dict[ChildProcess, float] = {}  # each slot's latest entry still on the heap
        self._seq = itertools.count()

    def fileno(self) -> int:
        return self._selector.fileno()

    def close(self) -> None:
        self._selector.close()

    # -- slots coming and going ------------------------------------------------

    def add(self, child: ChildProcess) -> None:
        fds = self._fds[child] = set()
        for fd in child.fds():
            self._selector.register(fd, selectors.EVENT_READ, child)
            fds.add(fd)
        self.changed(child)

    # -- what slots tell us (the Watcher protocol) -----------------------------

    def changed(self, child: ChildProcess) -> None:
        if child not in self._fds:
            return  # not (or no longer) one of ours
        old, new = self._state.get(child), child.state
        if old is not new:
            if old is not None:
                del self._by_state[old][child]
            if new is State.DEAD:
                for fd in self._fds.pop(child):
                    self._selector.unregister(fd)
                del self._state[child]
                self._counted.pop(child, None)
                self._pushed.pop(child, None)  # its heap entries are stale now
                return
            self._by_state[new][child] = None
            self._state[child] = new
        if new in LIVE and child.generation >= 0:
            self._counted[child] = None
        else:
            self._counted.pop(child, None)
        when = child.next_wakeup()
        if when is not None and self._pushed.get(child) != when:
            heapq.heappush(self._heap, (when, next(self._seq), child))
            self._pushed[child] = when

    def closing(self, child: ChildProcess, fd: int) -> None:
        fds = self._fds.get(child)
        if fds is not None and fd in fds:
            fds.discard(fd)
            self._selector.unregister(fd)

    # -- what the pool asks -----------------------------------------------------

    def __iter__(self) -> Iterator[ChildProcess]:
        """Every slot not yet dead, in launch order."""
        return iter(list(self._fds))

    def in_state(self, *states: State) -> list[ChildProcess]:
        return [child for state in states for child in self._by_state[state]]

    def count(self, state: State) -> int:
        return len(self._by_state[state])

    def counted(self) -> int:
        """Slots that make up the pool's strength: live, and not a probe."""
        return len(self._counted)

    def owner(self, fd: int) -> ChildProcess | None:
        key = self._selector.get_map().get(fd)
        if key is None:
            return None
        child: ChildProcess = key.data
        return child

    def ready(self) -> set[int]:
        """The fds with something to read (or a slot's death), without waiting."""
        return {key.fd for key, _ in self._selector.select(0)}

    def fds(self) -> list[int]:
        return [key.fd for key in self._selector.get_map().values()]

    def next_wakeup(self) -> float | None:
        heap = self._heap
        while heap:
            when, _, child = heap[0]
            current = child.next_wakeup() if child in self._fds else None
            if current is not None and current <= when:
                return when
            self._pop()  # stale: the slot is gone, or what was due at ``when`` was done
        return None

    def due(self, now: float) -> list[ChildProcess]:
        """Slots with something due by ``now``, each once; the pool calls :meth:`changed` after."""
        out: dict[ChildProcess, None] = {}
        while self._heap and self._heap[0][0] <= now:
            child = self._pop()
            if child is not None and (when := child.next_wakeup()) is not None and when <= now:
                out[child] = None
        return list(out)

    def _pop(self) -> ChildProcess | None:
        """Take the head entry; its slot's next time goes back on the heap."""
        when, _, child = heapq.heappop(self._heap)
        if child not in self._fds:
            return None
        if self._pushed.get(child) == when:
            del self._pushed[child]
        current = child.next_wakeup()
        if current is not None and current > when:
            self.changed(child)  # pushes the later time
        return child
