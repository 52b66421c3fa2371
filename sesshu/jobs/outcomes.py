"""Every received message ends in exactly one outcome: logged once, counted once.

| outcome  | what happened                                | the message             |
|----------|----------------------------------------------|-------------------------|
| done     | the plugin returned data; it was published   | deleted after publish   |
| empty    | the plugin returned None                     | deleted                 |
| rejected | malformed, unknown plugin, invalid target    | released for the DLQ    |
| retried  | crash, timeout, fetch error, publish failure | left for redelivery     |
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from sesshu.text import loggable

log = logging.getLogger(__name__)

OUTCOMES = ("done", "empty", "rejected", "retried")
# An error detail can quote a plugin's exception, which can quote the target
# (password and all) or a page: longer than a target, still bounded.
DETAIL_CHARS = 1000


# (plugin, outcome, reason, duration): how metrics hear of each outcome
OutcomeObserver = Callable[[str, str, str, "float | None"], None]


# Messages remembered per outcome for the exit summary; past this the count says "at least".
TRACKED_IDS = 100_000


class Outcomes:
    def __init__(self, observer: OutcomeObserver | None = None) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()  # (plugin, outcome): one per receive
        self.reasons: Counter[str] = Counter()  # reasons of "retried" and "rejected"
        self._messages: dict[str, set[str]] = {o: set() for o in OUTCOMES}  # distinct MessageIds
        self._observer = observer

    def total(self, outcome: str) -> int:
        """Outcomes of this kind, one per receive."""
        return sum(n for (_, o), n in self.counts.items() if o == outcome)

    def summary(self) -> str:
        """Messages per outcome; receives apart, where a message came more than once."""
        def messages(o: str) -> str:
            n = len(self._messages[o])
            return f"{n}+" if n >= TRACKED_IDS else str(n)
        text = ", ".join(f"{o}={messages(o)}" for o in OUTCOMES)
        repeats = [f"{o}={self.total(o)}" for o in OUTCOMES if self.total(o) != len(self._messages[o])]
        return text + (f"; receives: {', '.join(repeats)}" if repeats else "")

    def record(
        self,
        outcome: str,
        message_id: str,
        plugin: str | None,
        target: str | None,
        *,
        reason: str = "",
        detail: str = "",
        duration: float | None = None,
        pid: int | None = None,
        receive: tuple[int, int | None] = (1, None),
        named: tuple[str | None, str | None] = (None, None),
        trace_id: str | None = None,
    ) -> None:
        """``receive``: this receive of the message, and how many the redrive policy allows.

        ``named``: what a request that never parsed named, for the log line
        only; counts and metrics label it ``-``, so a sender cannot mint labels.
        """
        assert outcome in OUTCOMES, outcome
        self.counts[(plugin or "-", outcome)] += 1
        if len(self._messages[outcome]) < TRACKED_IDS:
            self._messages[outcome].add(message_id)
        if reason:
            self.reasons[f"{outcome}:{reason}"] += 1
        if self._observer is not None:
            self._observer(plugin or "-", outcome, reason, duration)
        # Plugin, target and detail all come from the sender or a plugin: masked,
        # escaped and bounded here, in text and JSON lines alike.
        if plugin is None:
            plugin, target = named
        plugin = loggable(plugin) if plugin else None
        detail = loggable(detail, DETAIL_CHARS)
        fields: dict[str, Any] = {
            "message_id": message_id,
            "plugin": plugin,
            "target": loggable(target) if target else None,
            "outcome": outcome,
            "reason": reason or None,
            "duration": round(duration, 4) if duration is not None else None,
            "worker_pid": pid,
            "receive": receive[0],
        }
        if trace_id is not None:  # the request's trace (sesshu.jobs.trace): JSON lines name it
            fields["trace_id"] = trace_id
        what = f"{plugin} {fields['target']}" if plugin else "request"
        took = f" in {duration:.3f} s" if duration is not None else ""
        nth, allowed = receive
        count = f" (receive {nth} of {allowed})" if allowed else (f" (receive {nth})" if nth > 1 else "")
        if outcome == "done":
            text = f"{what}: result published{took}; message {message_id} deleted"
        elif outcome == "empty":
            text = f"{what}: no data{took}; message {message_id} deleted"
        elif outcome == "rejected":
            text = f"{what}: {detail}; message {message_id} left for the dead-letter queue{count}"
        else:
            text = f"{what}: {detail}; message {message_id} will be retried{count}"
        level = logging.INFO if outcome in ("done", "empty") else logging.WARNING
        log.log(level, "%s: %s", outcome, text, extra={"sesshu": fields})
