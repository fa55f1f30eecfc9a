"""SIGINT and SIGTERM become an ``Interrupted`` exception in the main thread.

The orchestrator's ``finally`` then heals every fault and stops the load before the
process exits with 130. Handlers are restored on exit so library callers are unaffected.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from resilience.errors import Interrupted


@contextmanager
def interrupts_raise(stop: threading.Event | None = None) -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM raise Interrupted (once; a second signal is ignored
    so the healing in ``finally`` is not cut short)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        if fired.is_set():
            return
        fired.set()
        if stop is not None:
            stop.set()
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
