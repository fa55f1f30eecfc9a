"""The catalog: a fixed list of items served from memory. It never touches the database,
which is what makes its degradation under a database fault a clean sign of a cascade.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from resilience.shop.metrics import ShopMetrics
from resilience.shop.settings import ShopSettings
from resilience.shop.tracing import Tracing
from resilience.shop.web import create_app

_ADJECTIVES = ("plain", "sturdy", "light", "compact", "classic", "bright", "quiet")
_NOUNS = ("kettle", "lamp", "chair", "mug", "notebook", "backpack", "clock", "scarf")


def catalog_items(count: int) -> list[dict[str, object]]:
    """The deterministic catalog: ids 1..count with a name, a price and a stock level."""
    return [
        {
            "id": i,
            "name": f"{_ADJECTIVES[i % len(_ADJECTIVES)]} {_NOUNS[i % len(_NOUNS)]} #{i}",
            "price_cents": 199 + (i * 337) % 9800,
            "stock": (i * 7) % 40,
        }
        for i in range(1, count + 1)
    ]


def build_catalog_app(settings: ShopSettings, metrics: ShopMetrics, tracing: Tracing) -> FastAPI:
    """The catalog's FastAPI app."""
    items = catalog_items(settings.options.catalog_items)
    by_id = {item["id"]: item for item in items}
    app = create_app(settings, metrics, tracing)

    @app.get("/items")
    async def list_items() -> dict[str, object]:
        return {"items": items, "count": len(items)}

    @app.get("/items/{item_id}", response_model=None)
    async def get_item(item_id: int) -> dict[str, object] | JSONResponse:
        item = by_id.get(item_id)
        if item is None:
            return JSONResponse(
                {"error": "NotFound", "detail": f"no item with id {item_id}"}, status_code=404
            )
        return item

    return app
