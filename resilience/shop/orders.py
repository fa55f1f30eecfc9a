"""The orders service: writes and reads orders in PostgreSQL (through the Toxiproxy
``postgres`` proxy). Its HTTP side is thin; ``orders_store`` holds the mechanisms.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from resilience.shop.metrics import ShopMetrics
from resilience.shop.orders_store import OrdersStore
from resilience.shop.settings import ShopSettings
from resilience.shop.tracing import Tracing
from resilience.shop.web import create_app

MAX_PAGE = 1000


class NewOrder(BaseModel):
    """The body of ``POST /orders``."""

    model_config = ConfigDict(extra="forbid")

    item_id: int = Field(ge=1)
    quantity: int = Field(ge=1, le=1000)
    client_ref: str | None = Field(default=None, max_length=200)


def build_orders_app(settings: ShopSettings, metrics: ShopMetrics, tracing: Tracing) -> FastAPI:
    """The orders service's FastAPI app; the store starts (and migrates) in the lifespan."""
    assert settings.database_url is not None  # validated: orders needs it
    store = OrdersStore(settings.database_url, settings.options, metrics, tracing.tracer)

    if tracing.enabled:
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        # Patches asyncpg's Connection class for this process: one instrumentation per process.
        instrumentor = AsyncPGInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=tracing.provider)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await store.start()
        try:
            yield
        finally:
            await store.close()

    def health_extra() -> dict[str, object]:
        acct = store.accounting
        body: dict[str, object] = {
            "db_pool": {"size": acct.size, "in_use": acct.in_use, "waiting": acct.waiting},
            "db_reconnecting": store.reconnecting,
        }
        if store.writer is not None:
            body["ack_queue"] = {
                "pending": store.writer.pending,
                "committed": store.writer.committed,
                "lost": store.writer.lost,
            }
        return body

    app = create_app(settings, metrics, tracing, lifespan=lifespan, health_extra=health_extra)
    acknowledged = metrics.orders_acknowledged.labels(metrics.service)

    @app.post("/orders", status_code=201)
    async def create_order(body: NewOrder) -> JSONResponse:
        order, committed = await store.create(body.item_id, body.quantity, body.client_ref)
        acknowledged.inc()
        return JSONResponse({**order.to_json(), "committed": committed}, status_code=201)

    @app.get("/orders/ids")
    async def order_ids() -> dict[str, object]:
        ids = await store.ids()
        return {"ids": ids, "count": len(ids)}

    @app.get("/orders/{order_id}", response_model=None)
    async def get_order(order_id: int) -> dict[str, object] | JSONResponse:
        order = await store.get(order_id)
        if order is None:
            return JSONResponse(
                {"error": "NotFound", "detail": f"no order with id {order_id}"}, status_code=404
            )
        return order.to_json()

    @app.get("/orders")
    async def list_orders(
        after_id: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=MAX_PAGE)
    ) -> dict[str, object]:
        orders = await store.page(after_id, limit)
        next_after = orders[-1].id if len(orders) == limit else None
        return {"orders": [o.to_json() for o in orders], "next_after_id": next_after}

    app.state.store = store
    return app
