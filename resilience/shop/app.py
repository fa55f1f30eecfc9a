"""Build the app of one shop service from its settings: the single place that picks
gateway, orders or catalog, and the metrics registry and tracing it gets.
"""

from __future__ import annotations

from fastapi import FastAPI

from resilience.shop.metrics import ShopMetrics
from resilience.shop.settings import ShopSettings
from resilience.shop.tracing import Tracing, create_tracing


def build_app(settings: ShopSettings, tracing: Tracing | None = None) -> FastAPI:
    """The FastAPI app of ``settings.service``, with its own metrics registry."""
    tracing = tracing or create_tracing(settings.service_name, settings.otlp_endpoint)
    metrics = ShopMetrics(settings.service)
    if settings.service == "gateway":
        from resilience.shop.gateway import build_gateway_app

        app = build_gateway_app(settings, metrics, tracing)
    elif settings.service == "orders":
        from resilience.shop.orders import build_orders_app

        app = build_orders_app(settings, metrics, tracing)
    else:
        from resilience.shop.catalog import build_catalog_app

        app = build_catalog_app(settings, metrics, tracing)
    app.state.metrics = metrics
    app.state.tracing = tracing
    app.state.settings = settings
    return app
