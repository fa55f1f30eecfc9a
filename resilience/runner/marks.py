"""Phase marks: the moments faults begin to act and are healed, told to the load workers.

Requests are placed in phases by their interval [sent, ended] (resilience/analysis/phases.py),
so the workers must know when each fault began to act and when it was healed before they
finalise a second (resilience/load/collector.py). The marker takes an ``apply`` mark just
before the timeline's first Toxiproxy call for a fault (the fault cannot act earlier) and a
``heal`` mark once the heal returned (it acts until then); it records each in the journal
and sends the list to the workers at once, then a few times a second with how far the list
is known (``upto``: no mark will come earlier), and at the end as final. The same thread
that applies and heals sends the marks, so a mark always reaches the workers before any
``upto`` past it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from resilience.errors import LoadError
from resilience.load.commands import PhaseMarks
from resilience.rundir.journal import MarkRecord
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
        self._final = False

    def mark(self, kind: Literal["apply", "heal"], fault: int, t: float | None = None) -> None:
        """A fault begins to act (``apply``) or was healed (``heal``)."""
        at = self._clock.now() if t is None else t
        if self.marks and at < self.marks[-1].t:
            at = self.marks[-1].t  # marks are kept in order; a late stamp joins the last
        self.marks.append(MarkRecord(t=round(at, 6), kind=kind, fault=fault))
        self._record(list(self.marks))
        self._push(upto=self._clock.now())

    def tick(self, now: float) -> None:
        """Tell the workers how far the marks are known (a few times a second)."""
        if not self._final and now - self._last_sent >= SEND_EVERY:
            self._push(upto=now)

    def finish(self) -> None:
        """No mark will come any more (every fault is healed or given up)."""
        if not self._final:
            self._final = True
            self._push(upto=None)

    def _push(self, *, upto: float | None) -> None:
        self._last_sent = self._clock.now()
        command = PhaseMarks(tuple(m.t for m in self.marks), upto)
        try:
            self._send(command)
        except LoadError as exc:
            # The load is not running (yet, or any more): its seconds are final already.
            logger.debug("phase marks not sent: %s", exc)
