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
