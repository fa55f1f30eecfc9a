"""The orders service against real PostgreSQL through a real Toxiproxy: writes, reads,
bounded waits under a hung database, and the lost-write mode versus the normal path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest

from tests.integration import _shop_harness as h

pytestmark = pytest.mark.integration

HANG = "resilience-shop-orders-hang"


@pytest.fixture(scope="module")
def infra() -> Iterator[h.Infra]:
    with h.infra(jaeger=False) as running:
        yield running


@pytest.fixture(autouse=True)
def _healed(infra: h.Infra) -> Iterator[None]:
    infra.toxiproxy.reset()
    yield
    infra.toxiproxy.reset()


def hang_database(infra: h.Infra) -> None:
    infra.toxiproxy.add_toxic("postgres", HANG, "timeout", {"timeout": 0})


def heal_database(infra: h.Infra) -> None:
    infra.toxiproxy.remove_toxic("postgres", HANG)


def new_order(client: httpx.Client, base: str, ref: str) -> dict[str, object]:
    response = client.post(f"{base}/orders", json={"item_id": 5, "quantity": 2, "client_ref": ref})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def stored_ids(infra: h.Infra) -> set[int]:
    """Every order id in PostgreSQL, read directly (not through the proxy)."""
    conn = await asyncpg.connect(infra.direct_database_url, timeout=5, ssl=False)
    try:
        rows = await conn.fetch("SELECT id FROM orders", timeout=10)
    finally:
        await conn.close(timeout=5)
    return {row["id"] for row in rows}


def test_orders_write_and_read_through_the_gateway_and_proxy(infra: h.Infra) -> None:
    """A 201 order is committed in PostgreSQL and readable by id through gateway and orders."""
    with h.shop(infra, "hardened", tracing=False) as shop, httpx.Client(timeout=5) as client:
        order = new_order(client, shop.gateway, "write-read")
        assert order["committed"] is True
        assert order["item_id"] == 5
        assert order["quantity"] == 2
        order_id = order["id"]
        assert isinstance(order_id, int)
        assert order_id in asyncio.run(stored_ids(infra))
        via_gateway = client.get(f"{shop.gateway}/orders/{order_id}").json()
        via_orders = client.get(f"{shop.orders}/orders/{order_id}").json()
        assert via_gateway == via_orders
        assert via_gateway["client_ref"] == "write-read"
        assert client.get(f"{shop.gateway}/orders/999999999999").status_code == 404
        bad = client.post(f"{shop.gateway}/orders", json={"item_id": 0, "quantity": 1})
        assert bad.status_code == 422
        text = shop.metrics_text("orders")
        assert (h.metric_value(text, "shop_orders_acknowledged_total") or 0) >= 1


def test_paging_and_ids_list_every_order(infra: h.Infra) -> None:
    """GET /orders pages by after_id in id order; GET /orders/ids lists every id."""
    with h.shop(infra, "fragile", tracing=False) as shop, httpx.Client(timeout=5) as client:
        created = [int(str(new_order(client, shop.gateway, f"page-{i}")["id"])) for i in range(5)]
        after = created[0] - 1
        seen: list[int] = []
        for _ in range(10):  # bounded: 5 orders in pages of 2
            page = client.get(
                f"{shop.gateway}/orders", params={"after_id": after, "limit": 2}
            ).json()
            seen.extend(o["id"] for o in page["orders"])
            if page["next_after_id"] is None:
                break
            after = page["next_after_id"]
        assert [i for i in seen if i in created] == created
        assert seen == sorted(seen)
        ids = client.get(f"{shop.gateway}/orders/ids").json()
        assert set(created) <= set(ids["ids"])
        assert ids["count"] == len(ids["ids"])


def test_schema_migration_is_idempotent_across_restarts(infra: h.Infra) -> None:
    """Restarting orders migrates again without harm and keeps the stored orders."""
    orders_only = {"services": ("orders",), "tracing": False}
    with h.shop(infra, "hardened", **orders_only) as shop, httpx.Client(timeout=5) as client:
        order_id = new_order(client, shop.orders, "before-restart")["id"]
    with h.shop(infra, "hardened", **orders_only) as shop, httpx.Client(timeout=5) as client:
        assert client.get(f"{shop.orders}/orders/{order_id}").status_code == 200


def test_hardened_orders_fail_fast_and_hold_nothing_under_a_hung_database(
    infra: h.Infra,
) -> None:
    """With a timeout toxic of 0, every hardened orders call ends in < 2 s, pool slots come back."""
    with h.shop(infra, "hardened", services=("orders",), tracing=False) as shop:

        async def scenario() -> list[tuple[float, int, str]]:
            async with httpx.AsyncClient(timeout=10) as client:
                # Open connections first, so statements (not only connects) hit the hang.
                warm = await asyncio.gather(
                    *[client.post(f"{shop.orders}/orders", json={"item_id": 1, "quantity": 1})
                      for _ in range(6)]
                )  # fmt: skip
                assert all(r.status_code == 201 for r in warm)
                hang_database(infra)

                async def one(path: str, method: str) -> tuple[float, int, str]:
                    started = time.monotonic()
                    body = {"item_id": 1, "quantity": 1} if method == "POST" else None
                    response = await client.request(method, f"{shop.orders}{path}", json=body)
                    error = response.json().get("error", "") if response.status_code >= 400 else ""
                    return time.monotonic() - started, response.status_code, error

                calls = [one("/orders", "POST") for _ in range(6)]
                calls += [one("/orders/1", "GET"), one("/orders/ids", "GET")]
                return await asyncio.gather(*calls)

        results = asyncio.run(scenario())
        durations = [d for d, _, _ in results]
        assert max(durations) < 2.0, results
        assert {status for _, status, _ in results} <= {503, 504}, results
        assert any(error == "TimeoutError" for _, _, error in results), results

        health = h.wait_until(
            lambda: (b := shop.health("orders"))["db_pool"]["in_use"] == 0 and b,
            timeout=3,
            what="db pool slots released",
        )
        assert health["db_pool"]["waiting"] == 0

        heal_database(infra)
        with httpx.Client(timeout=5) as client:
            recovered = h.wait_until(
                lambda: (
                    client.post(
                        f"{shop.orders}/orders", json={"item_id": 1, "quantity": 1}
                    ).status_code
                    == 201
                ),
                timeout=5,
                interval=0.1,
                what="orders writing again after the heal",
            )
        assert recovered


@dataclass
class WriteLog:
    """What a writer saw: ids acknowledged (201) and how many writes were refused."""

    acknowledged: list[int] = field(default_factory=list)
    refused: int = 0


async def write_through_a_fault(infra: h.Infra, base: str, *, fault_seconds: float) -> WriteLog:
    """Two writers: 1 s healthy, ``fault_seconds`` with the database hung, 1 s healed."""
    log = WriteLog()
    stop = asyncio.Event()

    async def writer(client: httpx.AsyncClient, n: int) -> None:
        for i in range(10_000):  # bounded; ends when stop is set
            if stop.is_set():
                return
            try:
                response = await client.post(
                    f"{base}/orders", json={"item_id": 2, "quantity": 1, "client_ref": f"w{n}-{i}"}
                )
            except httpx.HTTPError:
                log.refused += 1
                continue
            if response.status_code == 201:
                log.acknowledged.append(int(response.json()["id"]))
            else:
                log.refused += 1
            await asyncio.sleep(0.02)

    async with httpx.AsyncClient(timeout=10) as client:
        tasks = [asyncio.create_task(writer(client, n)) for n in range(2)]
        await asyncio.sleep(1.0)
        await asyncio.to_thread(hang_database, infra)
        await asyncio.sleep(fault_seconds)
        await asyncio.to_thread(heal_database, infra)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=15)
    return log


def test_normal_mode_never_loses_an_acknowledged_write(infra: h.Infra) -> None:
    """Writes across a hung database: every acknowledged id is stored after recovery."""
    with h.shop(infra, "hardened", services=("orders",), tracing=False) as shop:
        log = asyncio.run(write_through_a_fault(infra, shop.orders, fault_seconds=2.5))
    assert len(log.acknowledged) > 10
    assert log.refused > 0  # the fault was real: writes were refused, not acknowledged
    lost = set(log.acknowledged) - asyncio.run(stored_ids(infra))
    assert lost == set()


def test_ack_before_commit_loses_acknowledged_writes(infra: h.Infra) -> None:
    """With ack_before_commit, writes acknowledged while the database hangs are lost."""
    options = {"ack_before_commit": True}
    with h.shop(infra, "hardened", options, services=("orders",), tracing=False) as shop:
        log = asyncio.run(write_through_a_fault(infra, shop.orders, fault_seconds=2.5))
        health = h.wait_until(
            lambda: (b := shop.health("orders"))["ack_queue"]["pending"] == 0 and b,
            timeout=10,
            what="the ack queue drained",
        )
        text = shop.metrics_text("orders")
    assert log.refused == 0  # everything was acknowledged, even during the fault
    lost = set(log.acknowledged) - asyncio.run(stored_ids(infra))
    assert len(lost) > 0
    # The shop counts batches whose commit it could not confirm; a timed-out batch may
    # still have committed behind the toxic, so its count bounds the real loss from above.
    assert health["ack_queue"]["lost"] >= len(lost)
    assert h.metric_value(text, "shop_orders_lost_total") == health["ack_queue"]["lost"]
