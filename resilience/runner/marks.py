"""Phase marks: the moments faults begin to act and are healed, told to the load workers.

Requests are placed in phases by their interval [sent, ended] (resilience/analysis/phases.py),
so the workers must know when each fault began to act and when it was healed before they
finalise a second (resilience/load/collector.py). The marker takes an ``apply`` mark just
before the timeline's first Toxiproxy call for a fault (the fault cannot act earlier) and a
``heal`` mark once the heal returned (it acts until then); it records each in the journal
and sends the list to the workers at once, then a few times a second with how far the list
is known (``upto``: no mark will come earlier), and at the end as final. The same thread
that applies and heals sends the marks, so a mark always reaches the workers before any
``upto`` past it. A game day injects and heals from several threads (the console's
requests, its loop, a halt): the marker takes a lock around reading the clock and sending,
and a heal stamped before the last ``upto`` sent is moved up to it, so the workers never
learn of a mark earlier than a moment they were told had no mark.

``FaultMoments`` is where a fault timeline's moments go, in a run and in a session alike:
the ``apply`` mark before the first Toxiproxy call, and on each event the ``heal`` mark,
the journal's fault records and its ``fault_<kind>`` event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Literal

from resilience.errors import LoadError
from resilience.faults.timeline import FaultEvent
from resilience.load.commands import PhaseMarks
from resilience.rundir.journal import FaultRecord, Journal, MarkRecord
from resilience.vocabulary import Clock

logger = logging.getLogger(__name__)

SEND_EVERY = 0.2
"""Seconds between two ``upto`` updates: how long a finished second may wait for them."""


class PhaseMarker:
    """Keeps the run's marks, the journal's copy and the workers' view in step."""

    def __init__(
        self,
        clock: Clock,
        send: Callable[[PhaseMarks], object],
        record: Callable[[list[MarkRecord]], None],
    ) -> None:
        self._clock = clock
        self._send = send
        self._record = record
        self.marks: list[MarkRecord] = []
        self._last_sent = -1e9
        self._last_upto = -1e9
        self._final = False
        self._lock = threading.Lock()

    def mark(self, kind: Literal["apply", "heal"], fault: int, t: float | None = None) -> None:
        """A fault begins to act (``apply``) or was healed (``heal``)."""
        with self._lock:
            at = self._clock.now() if t is None else t
            # Marks are kept in order, and none may fall before an ``upto`` already sent:
            # a late stamp joins the last mark (or the last ``upto``).
            at = max(round(at, 6), self.marks[-1].t if self.marks else 0.0, self._last_upto)
            self.marks.append(MarkRecord(t=at, kind=kind, fault=fault))
            self._record(list(self.marks))
            self._push(upto=None if self._final else self._clock.now())

    def tick(self, now: float) -> None:
        """Tell the workers how far the marks are known (a few times a second)."""
        with self._lock:
            if not self._final and now - self._last_sent >= SEND_EVERY:
                self._push(upto=min(now, self._clock.now()))

    def finish(self) -> None:
        """No mark will come any more (every fault is healed or given up)."""
        with self._lock:
            if not self._final:
                self._final = True
                self._push(upto=None)

    def _push(self, *, upto: float | None) -> None:
        self._last_sent = self._clock.now()
        if upto is not None:  # rounded as the marks are, so none falls below it by rounding
            upto = max(round(upto, 6), self._last_upto)
            self._last_upto = upto
        command = PhaseMarks(tuple(m.t for m in self.marks), upto)
        try:
            self._send(command)
        except LoadError as exc:
            # The load is not running (yet, or any more): its seconds are final already.
            logger.debug("phase marks not sent: %s", exc)


class FaultMoments:
    """Where a fault timeline's moments go (see the module doc): hand ``before_apply`` to
    ``FaultTimeline(on_before_apply=...)`` and ``event`` to its ``on_event``; ``records``
    reads the fault records the journal is to hold (the timeline's, once it exists)."""

    def __init__(
        self,
        journal: Journal,
        marker: PhaseMarker | None,
        then: Callable[[FaultEvent], None] | None = None,
    ) -> None:
        self.journal = journal
        self.records: Callable[[], list[dict[str, Any]]] = list
        self.marker = marker
        self.then = then

    def before_apply(self, index: int) -> None:
        if self.marker is not None:
            self.marker.mark("apply", index)

    def sync(self) -> None:
        """The journal's fault records as the timeline(s) hold them now."""
        self.journal.update(faults=[FaultRecord(**r) for r in self.records()])

    def event(self, event: FaultEvent) -> None:
        if event.kind == "healed" and self.marker is not None:
            self.marker.mark("heal", event.index, event.t)
        self.sync()
        self.journal.event(
            f"fault_{event.kind}",
            event.t,
            index=event.index,
            proxy=event.proxy,
            type=event.type,
            scheduled_at=event.scheduled_at,
            **_timing(event),
            **event.detail,
        )
        if self.then is not None:
            self.then(event)


def _timing(event: FaultEvent) -> dict[str, float]:
    """``lateness`` (seconds after the schedule), or ``early_by`` for a heal that came
    before its scheduled end, so no reader meets a negative lateness."""
    if event.early:
        return {"early_by": round(-event.lateness, 4)}
    return {"lateness": round(max(event.lateness, 0.0), 4)}
