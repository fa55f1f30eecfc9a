"""Bounded pools whose waits are visible: counts for metrics, a span around every wait.

``PoolAccounting`` is the bookkeeping (size, in use, waiting, wait timeouts) shared by the
gateway's upstream pools and the orders service's database pool; it knows nothing of
asyncio, so it is unit-tested with a fake clock. ``SlotPool`` is the gateway's pool: an
``asyncio.Semaphore`` in front of an httpx client that never makes a request wait, so a
call waits *here* (and the wait shows in metrics and traces) instead of invisibly inside
httpx.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode, Tracer

from resilience.shop.errors import Rejected

WaitObserver = Callable[[float, bool], None]
"""Called after every wait with (seconds waited, whether a slot was obtained)."""


class PoolAccounting:
    """Counts of one bounded pool. Every ``begin_wait`` is matched by one ``end_wait``."""

    def __init__(
        self,
        name: str,
        size: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_wait: WaitObserver | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"pool {name!r}: size must be >= 1, got {size}")
        self.name = name
        self.size = size
        self.in_use = 0
        self.waiting = 0
        self.wait_timeouts = 0
        self.acquired_total = 0
        self._clock = clock
        self._on_wait = on_wait

    def begin_wait(self) -> float:
        """A caller starts waiting for a slot; returns the start time for ``end_wait``."""
        self.waiting += 1
        return self._clock()

    def end_wait(self, started: float, *, acquired: bool, timed_out: bool = False) -> float:
        """The wait ended (with a slot or not); returns the seconds waited."""
        if self.waiting <= 0:
            raise RuntimeError(f"pool {self.name!r}: end_wait without begin_wait")
        self.waiting -= 1
        if acquired:
            self.in_use += 1
            self.acquired_total += 1
        if timed_out:
            self.wait_timeouts += 1
        waited = max(0.0, self._clock() - started)
        if self._on_wait is not None:
            self._on_wait(waited, acquired)
        return waited

    def release(self) -> None:
        """A slot obtained through ``end_wait(acquired=True)`` is given back."""
        if self.in_use <= 0:
            raise RuntimeError(f"pool {self.name!r}: release without a slot in use")
        self.in_use -= 1

    @property
    def saturated(self) -> bool:
        """Every slot in use and someone waiting: the signature of pool exhaustion."""
        return self.in_use >= self.size and self.waiting > 0


class SlotPool:
    """An asyncio pool of ``size`` slots with accounting and a ``pool.acquire`` span per wait."""

    def __init__(self, accounting: PoolAccounting, tracer: Tracer) -> None:
        self.accounting = accounting
        self._semaphore = asyncio.Semaphore(accounting.size)
        self._tracer = tracer

    @property
    def name(self) -> str:
        return self.accounting.name

    @asynccontextmanager
    async def slot(self, timeout: float | None) -> AsyncIterator[None]:
        """Hold one slot for the body; ``timeout=None`` waits as long as it takes.

        Raises ``Rejected`` (error type ``PoolExhausted``) when the wait runs out.
        """
        acct = self.accounting
        with self._tracer.start_as_current_span(
            "pool.acquire",
            attributes={
                "pool": acct.name,
                "pool.size": acct.size,
                "pool.in_use": acct.in_use,
                "pool.waiting": acct.waiting,
            },
        ) as span:
            started = acct.begin_wait()
            try:
                if timeout is None:
                    await self._semaphore.acquire()
                else:
                    async with asyncio.timeout(max(timeout, 0.0)):
                        await self._semaphore.acquire()
            except TimeoutError as exc:
                waited = acct.end_wait(started, acquired=False, timed_out=True)
                span.set_attribute("pool.wait_seconds", waited)
                span.record_exception(exc)
                span.set_attribute("error.type", "PoolExhausted")
                span.set_status(Status(StatusCode.ERROR, "pool wait timed out"))
                raise Rejected(
                    f"pool {acct.name!r}: no free slot within {timeout:.3f} s "
                    f"({acct.in_use}/{acct.size} in use, {acct.waiting} waiting)",
                    error_type="PoolExhausted",
                ) from exc
            except BaseException:
                acct.end_wait(started, acquired=False)
                raise
            span.set_attribute("pool.wait_seconds", acct.end_wait(started, acquired=True))
        try:
            yield
        finally:
            self._semaphore.release()
            acct.release()


def current_span_event(name: str, **attributes: str | int | float | bool) -> None:
    """Add an event to whatever span is current (a no-op when tracing is off)."""
    trace.get_current_span().add_event(name, attributes=attributes)
