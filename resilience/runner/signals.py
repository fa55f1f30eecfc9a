"""SIGINT and SIGTERM: the first stops the run, a second only hurries its shutdown.

An ``InterruptGate`` is installed before anything that can be interrupted (the CLI installs
it first thing in ``run``, before the experiment is loaded; ``run_experiment`` installs its
own when given none). Until it is *armed* a signal is only remembered; the orchestrator arms
it once the run directory and its journal exist, and a remembered signal then raises
``Interrupted`` at once. Armed, the first signal sets the run's ``stop`` event and raises
``Interrupted`` in the main thread; the orchestrator heals every fault, finishes the
journal and writes the reports. A second signal (an impatient Ctrl-C, a supervisor's
SIGTERM after a SIGINT) raises nothing: it sets ``hurry``, which shortens every bounded
step that follows (the load's stop grace, the drain, the report budget), so the healing
and the journal are never cut short. Handlers are restored on ``restore`` so library
callers are unaffected.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from resilience.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InterruptGate:
    """The run's SIGINT/SIGTERM handling (see the module doc). Main thread only."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.hurry = threading.Event()
        self.received: list[str] = []
        self._armed = False
        self._raised = False
        self._previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}

    @property
    def signal_name(self) -> str | None:
        """The first signal received, if any."""
        return self.received[0] if self.received else None

    def install(self) -> InterruptGate:
        """Take over SIGINT and SIGTERM (a no-op outside the main thread).

        A gate installed earlier and still in place (the console script's, set before the
        commands are imported) hands over: the signals it caught become this gate's, and
        ``restore`` gives back the handlers that gate replaced."""
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return self
        earlier: set[InterruptGate] = set()
        for sig in SIGNALS:
            previous = signal.signal(sig, self._handler)
            early = getattr(previous, "__self__", None)
            if isinstance(early, InterruptGate) and early is not self:
                earlier.add(early)
                previous = early._previous.get(sig, signal.SIG_DFL)
            self._previous[sig] = previous
        for early in earlier:
            self.received.extend(early.received)
            early._previous = {}
        if self.received:
            self.stop.set()
            if len(self.received) > 1:
                self.hurry.set()
        return self

    def restore(self) -> None:
        """Give SIGINT and SIGTERM back to whoever had them."""
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous = {}

    def arm(self) -> None:
        """From now on the first signal raises ``Interrupted``; one that came before
        raises it now."""
        self._armed = True
        if self.received and not self._raised:
            self._raised = True
            raise Interrupted(self.received[0])

    def disarm(self) -> None:
        """The run is finishing: a signal from here on only hurries it."""
        self._armed = False
        self._raised = True

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        if len(self.received) > 1:
            self.hurry.set()
            return
        self.stop.set()
        if self._armed and not self._raised:
            self._raised = True
            raise Interrupted(name)


@contextmanager
def interrupts_raise(stop: threading.Event | None = None) -> Iterator[InterruptGate]:
    """Within the block, the first SIGINT/SIGTERM raises Interrupted (and sets ``stop``);
    a second only sets the gate's ``hurry``. For callers without a run directory to make
    first (the game-day console)."""
    gate = InterruptGate()
    if stop is not None:
        gate.stop = stop
    gate.install()
    try:
        gate.arm()
        yield gate
    finally:
        gate.restore()
