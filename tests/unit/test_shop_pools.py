"""Pool wait accounting: counts of in use and waiting, wait timeouts, and what metrics show."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.trace import NoOpTracerProvider

from resilience.shop.errors import Rejected
from resilience.shop.metrics import ShopMetrics
from resilience.shop.pools import PoolAccounting, SlotPool

TRACER = NoOpTracerProvider().get_tracer("test")


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_accounting_follows_waits_and_releases() -> None:
    """begin/end/release move waiting and in_use exactly; waits are timed by the clock."""
    clock = FakeClock()
    observed: list[tuple[float, bool]] = []
    acct = PoolAccounting("shared", 2, clock=clock, on_wait=lambda s, ok: observed.append((s, ok)))
    first = acct.begin_wait()
    second = acct.begin_wait()
    assert (acct.waiting, acct.in_use) == (2, 0)
    clock.now += 0.25
    assert acct.end_wait(first, acquired=True) == pytest.approx(0.25)
    assert (acct.waiting, acct.in_use) == (1, 1)
    clock.now += 0.5
    assert acct.end_wait(second, acquired=False, timed_out=True) == pytest.approx(0.75)
    assert (acct.waiting, acct.in_use, acct.wait_timeouts) == (0, 1, 1)
    acct.release()
    assert (acct.waiting, acct.in_use, acct.acquired_total) == (0, 0, 1)
    assert observed == [(pytest.approx(0.25), True), (pytest.approx(0.75), False)]


def test_saturated_means_full_with_waiters() -> None:
    """Saturated is all slots in use while someone waits; full alone is not."""
    acct = PoolAccounting("db", 1)
    acct.end_wait(acct.begin_wait(), acquired=True)
    assert not acct.saturated
    acct.begin_wait()
    assert acct.saturated


def test_unbalanced_calls_are_errors() -> None:
    """Releasing without a slot, or ending a wait never begun, raises."""
    acct = PoolAccounting("db", 1)
    with pytest.raises(RuntimeError, match="release"):
        acct.release()
    with pytest.raises(RuntimeError, match="end_wait"):
        acct.end_wait(0.0, acquired=True)
    with pytest.raises(ValueError, match="size"):
        PoolAccounting("db", 0)


def test_slot_pool_makes_waits_visible_and_bounded() -> None:
    """Holders fill the pool, a waiter shows as waiting, a bounded wait times out as Rejected."""

    async def scenario() -> None:
        pool = SlotPool(PoolAccounting("shared", 2), TRACER)
        acct = pool.accounting
        release = asyncio.Event()

        async def hold() -> None:
            async with pool.slot(None):
                await release.wait()

        holders = [asyncio.create_task(hold()) for _ in range(2)]
        waiter = asyncio.create_task(hold())
        for _ in range(100):  # bounded: let the tasks reach their waits
            if acct.in_use == 2 and acct.waiting == 1:
                break
            await asyncio.sleep(0)
        assert (acct.in_use, acct.waiting) == (2, 1)
        assert acct.saturated

        with pytest.raises(Rejected) as caught:
            async with pool.slot(0.01):
                pytest.fail("got a slot from a full pool")
        assert caught.value.error_type == "PoolExhausted"
        assert "2/2 in use" in str(caught.value)
        assert (acct.in_use, acct.waiting, acct.wait_timeouts) == (2, 1, 1)

        release.set()
        await asyncio.wait_for(asyncio.gather(*holders, waiter), timeout=5)
        assert (acct.in_use, acct.waiting) == (0, 0)
        assert acct.acquired_total == 3

    asyncio.run(scenario())


def test_a_cancelled_wait_leaves_the_counts_straight() -> None:
    """Cancelling a waiting task undoes its 'waiting' without taking a slot."""

    async def scenario() -> None:
        pool = SlotPool(PoolAccounting("orders", 1), TRACER)
        acct = pool.accounting
        release = asyncio.Event()

        async def hold() -> None:
            async with pool.slot(None):
                await release.wait()

        holder = asyncio.create_task(hold())
        waiter = asyncio.create_task(hold())
        for _ in range(100):
            if acct.waiting == 1:
                break
            await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert (acct.in_use, acct.waiting) == (1, 0)
        release.set()
        await asyncio.wait_for(holder, timeout=5)
        assert (acct.in_use, acct.waiting) == (0, 0)

    asyncio.run(scenario())


def test_pool_gauges_read_the_live_counts() -> None:
    """shop_upstream_pool_* and shop_db_pool_* gauges show the accounting at scrape time."""
    metrics = ShopMetrics("gateway")
    upstream = PoolAccounting("shared", 10)
    db = PoolAccounting("orders-db", 4)
    metrics.watch_upstream_pool(upstream)
    metrics.watch_db_pool(db)
    upstream.end_wait(upstream.begin_wait(), acquired=True)
    upstream.begin_wait()
    db.begin_wait()
    text = metrics.render().decode()
    assert 'shop_upstream_pool_size{pool="shared",service="gateway"} 10.0' in text
    assert 'shop_upstream_pool_in_use{pool="shared",service="gateway"} 1.0' in text
    assert 'shop_upstream_pool_waiting{pool="shared",service="gateway"} 1.0' in text
    assert 'shop_db_pool_size{service="gateway"} 4.0' in text
    assert 'shop_db_pool_waiting{service="gateway"} 1.0' in text
    assert 'shop_db_pool_wait_timeouts_total{service="gateway"} 0.0' in text


def test_a_connection_already_back_in_the_pool_is_not_terminated_again() -> None:
    """Terminating a connection that asyncpg already took back raises InterfaceError; that
    must not replace the request's own exception (the log named it instead of the lost
    connection)."""
    import asyncpg

    from resilience.shop.orders_store import _terminate

    class Released:
        def terminate(self) -> None:
            raise asyncpg.InterfaceError(
                "cannot call Connection.terminate(): connection has been released back to the pool"
            )

    class Live:
        terminated = 0

        def terminate(self) -> None:
            self.terminated += 1

    _terminate(Released())  # type: ignore[arg-type]
    live = Live()
    _terminate(live)  # type: ignore[arg-type]
    assert live.terminated == 1
