"""The shop's ground truth under a hung database (a Toxiproxy ``timeout`` toxic of 0 on the
postgres proxy), measured with a plain httpx client against the gateway:

- fragile: catalog requests degrade while order requests are in flight, though catalog
  never touches the database (the cascade runs through the gateway's shared pool);
- hardened: catalog keeps its latency, order requests fail fast (< 2 s each), and after
  the heal the breaker closes in ≈ breaker_recovery_seconds.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from resilience.shop.settings import MODE_DEFAULTS
from tests.integration import _shop_harness as h

pytestmark = pytest.mark.integration

HANG = "resilience-shop-ground-truth-hang"
ORDER = {"item_id": 3, "quantity": 1}


@pytest.fixture(scope="module")
def infra() -> Iterator[h.Infra]:
    with h.infra() as running:
        yield running


@pytest.fixture(autouse=True)
def _healed(infra: h.Infra) -> Iterator[None]:
    infra.toxiproxy.reset()
    yield
    infra.toxiproxy.reset()


@dataclass(frozen=True)
class Sample:
    """One request as the client saw it: when it was sent, how long it took, how it ended."""

    sent: float
    seconds: float
    status: int | str

    @property
    def ok(self) -> bool:
        return isinstance(self.status, int) and self.status < 400


async def timed(
    client: httpx.AsyncClient, method: str, url: str, *, timeout: float = 10.0
) -> Sample:
    sent = time.monotonic()
    try:
        response = await client.request(
            method, url, json=ORDER if method == "POST" else None, timeout=timeout
        )
    except httpx.HTTPError as exc:
        return Sample(sent, time.monotonic() - sent, type(exc).__name__)
    return Sample(sent, time.monotonic() - sent, response.status_code)


async def baseline(client: httpx.AsyncClient, url: str, n: int = 10) -> list[Sample]:
    samples = [await timed(client, "GET", url) for _ in range(n)]
    assert all(s.ok for s in samples), samples
    return samples


def gateway_pool(shop: h.Shop, name: str) -> dict[str, int]:
    pool: dict[str, int] = shop.health("gateway")["pools"][name]
    return pool


def test_fragile_catalog_degrades_while_orders_hang(infra: h.Infra) -> None:
    """Fragile: order calls fill the shared pool and catalog requests stall or fail."""
    with h.shop(infra, "fragile") as shop:

        async def scenario() -> tuple[list[Sample], list[Sample], list[Sample]]:
            limits = httpx.Limits(max_connections=50)
            async with httpx.AsyncClient(limits=limits) as client:
                catalog = f"{shop.gateway}/catalog/items"
                before = await baseline(client, catalog)
                await asyncio.to_thread(infra.toxiproxy.add_toxic, "postgres", HANG, "timeout", {"timeout": 0})  # fmt: skip
                orders = [
                    asyncio.create_task(timed(client, "POST", f"{shop.gateway}/orders", timeout=30))
                    for _ in range(12)
                ]
                await asyncio.to_thread(
                    h.wait_until,
                    lambda: (
                        (p := gateway_pool(shop, "shared"))["in_use"] == p["size"]
                        and p["waiting"] > 0
                    ),
                    timeout=10,
                    what="the shared pool full of order calls",
                )
                during = [await timed(client, "GET", catalog, timeout=3.0) for _ in range(4)]
                evidence = await asyncio.to_thread(shop.metrics_text, "gateway")
                db = (await asyncio.to_thread(shop.health, "orders"))["db_pool"]
                assert db["in_use"] == db["size"] and db["waiting"] > 0, db
                waiting = h.metric_value(evidence, "shop_upstream_pool_waiting", {"pool": "shared"})
                assert waiting is not None and waiting > 0
                await asyncio.to_thread(infra.toxiproxy.remove_toxic, "postgres", HANG)
                ended = await asyncio.wait_for(asyncio.gather(*orders), timeout=30)
                return before, during, ended

        before, during, ended = asyncio.run(scenario())

        normal = statistics.median(s.seconds for s in before)
        assert normal < 0.3, before
        degraded = [s for s in during if not s.ok or s.seconds > 1.0]
        assert degraded == during, f"catalog did not degrade: {during}"
        # Deleting the toxic closes the hung connections: every order call ends.
        assert len(ended) == 12
        with httpx.Client(timeout=5) as client:
            h.wait_until(
                lambda: client.get(f"{shop.gateway}/catalog/items").status_code == 200,
                timeout=10,
                what="catalog answering after the heal",
            )


def test_hardened_keeps_catalog_and_fails_orders_fast(infra: h.Infra) -> None:
    """Hardened: catalog latency holds while every order request fails in under 2 s."""
    with h.shop(infra, "hardened") as shop:

        async def scenario() -> tuple[list[Sample], list[Sample], list[Sample]]:
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=50)) as client:
                catalog = f"{shop.gateway}/catalog/items"
                before = await baseline(client, catalog)
                await asyncio.to_thread(infra.toxiproxy.add_toxic, "postgres", HANG, "timeout", {"timeout": 0})  # fmt: skip
                order_url = f"{shop.gateway}/orders"
                burst = [asyncio.create_task(timed(client, "POST", order_url)) for _ in range(8)]
                during: list[Sample] = []
                deadline = time.monotonic() + 3.0
                for _ in range(1000):  # bounded; about 3 s of catalog requests
                    if time.monotonic() > deadline:
                        break
                    during.append(await timed(client, "GET", catalog))
                    await asyncio.sleep(0.05)
                orders = await asyncio.wait_for(asyncio.gather(*burst), timeout=10)
                orders += [await timed(client, "POST", order_url) for _ in range(10)]
                return before, during, orders

        before, during, orders = asyncio.run(scenario())
        breaker = h.metric_value(
            shop.metrics_text("gateway"), "shop_breaker_state", {"upstream": "orders"}
        )

    assert all(s.ok for s in during), [s for s in during if not s.ok]
    normal = max(s.seconds for s in before)
    assert max(s.seconds for s in during) < normal + 0.5, (before, during)
    assert statistics.median(s.seconds for s in during) < 0.2
    assert all(s.status in (503, 504) for s in orders), orders
    assert max(s.seconds for s in orders) < 2.0, orders
    # After the first failures the breaker rejects at once.
    assert statistics.median(s.seconds for s in orders[8:]) < 0.2, orders
    assert breaker in (1.0, 2.0)  # open or half-open while the database hangs


# One value here; the toolkit measures another (8 s) end to end in test_run_contract.py.
@pytest.mark.parametrize("recovery_seconds", [4.0])
def test_hardened_recovers_in_breaker_recovery_seconds(
    infra: h.Infra, recovery_seconds: float
) -> None:
    """After the heal, order errors stop ≈ breaker_recovery_seconds later (formula in docs)."""
    options = {"breaker_recovery_seconds": recovery_seconds}
    open_seconds = MODE_DEFAULTS["hardened"].breaker_open_seconds
    with h.shop(infra, "hardened", options) as shop:

        async def scenario() -> tuple[float, list[Sample]]:
            samples: list[Sample] = []
            stop = asyncio.Event()

            async def orders_loop(client: httpx.AsyncClient) -> None:
                for _ in range(100_000):  # bounded; ends when stop is set
                    if stop.is_set():
                        return
                    samples.append(await timed(client, "POST", f"{shop.gateway}/orders"))
                    await asyncio.sleep(0.04)

            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=10)) as client:
                loops = [asyncio.create_task(orders_loop(client)) for _ in range(2)]
                await asyncio.sleep(1.0)
                await asyncio.to_thread(infra.toxiproxy.add_toxic, "postgres", HANG, "timeout", {"timeout": 0})  # fmt: skip
                await asyncio.sleep(3.0)
                await asyncio.to_thread(infra.toxiproxy.remove_toxic, "postgres", HANG)
                healed = time.monotonic()
                await asyncio.sleep(recovery_seconds + 3.0)
                stop.set()
                await asyncio.wait_for(asyncio.gather(*loops), timeout=10)
            return healed, samples

        healed, samples = asyncio.run(scenario())
        state = h.metric_value(
            shop.metrics_text("gateway"), "shop_breaker_state", {"upstream": "orders"}
        )

    before_fault = [s for s in samples if s.sent < healed - 3.0]
    assert before_fault and all(s.ok for s in before_fault[:-2]), before_fault
    after = [s for s in samples if s.sent >= healed]
    failures = [s for s in after if not s.ok]
    assert failures, "no order request failed after the heal: the breaker never opened?"
    recovery = max(s.sent for s in failures) - healed
    tail = [s for s in after if s.sent > healed + recovery]
    assert len(tail) > 10 and all(s.ok for s in tail)
    # recovery_seconds <= T <= recovery_seconds + open_seconds + probe latency + request gap
    assert recovery_seconds - 0.2 <= recovery <= recovery_seconds + open_seconds + 0.5, (
        recovery,
        [(round(s.sent - healed, 3), s.status) for s in after[:40]],
    )
    assert state == 0.0


def test_fragile_recovers_only_after_its_reconnect_pause(infra: h.Infra) -> None:
    """Fragile: after the heal, orders serve again only ≈ db_reconnect_pause_seconds later."""
    pause = 4.0
    with h.shop(infra, "fragile", {"db_reconnect_pause_seconds": pause}) as shop:

        async def scenario() -> tuple[float, list[Sample]]:
            samples: list[Sample] = []
            stop = asyncio.Event()

            async def orders_loop(client: httpx.AsyncClient) -> None:
                for _ in range(100_000):  # bounded; ends when stop is set
                    if stop.is_set():
                        return
                    samples.append(
                        await timed(client, "POST", f"{shop.gateway}/orders", timeout=30)
                    )
                    await asyncio.sleep(0.05)

            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=10)) as client:
                loops = [asyncio.create_task(orders_loop(client)) for _ in range(2)]
                await asyncio.sleep(1.0)
                await asyncio.to_thread(infra.toxiproxy.add_toxic, "postgres", HANG, "timeout", {"timeout": 0})  # fmt: skip
                await asyncio.sleep(2.0)
                await asyncio.to_thread(infra.toxiproxy.remove_toxic, "postgres", HANG)
                healed = time.monotonic()
                await asyncio.sleep(pause + 3.0)
                stop.set()
                await asyncio.wait_for(asyncio.gather(*loops), timeout=30)
            return healed, samples

        healed, samples = asyncio.run(scenario())

    served_again = min(s.sent + s.seconds for s in samples if s.ok and s.sent + s.seconds > healed)
    recovery = served_again - healed
    assert pause - 0.2 <= recovery <= pause + 1.0, recovery
    after = [s for s in samples if s.sent > served_again]
    assert len(after) > 10 and all(s.ok and s.seconds < 1.0 for s in after)
