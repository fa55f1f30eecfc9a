"""Build the app of one shop service from its settings: the single place that picks
gateway, orders or catalog, the metrics registry and tracing it gets, and what the server
serves (the app alone, or the app and a metrics-only app on a second port).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp

from resilience.shop.metrics import ShopMetrics
from resilience.shop.settings import ShopSettings
from resilience.shop.tracing import Tracing, create_tracing
from resilience.shop.web import PortDispatch, create_metrics_app


def build_app(settings: ShopSettings, tracing: Tracing | None = None) -> FastAPI:
    """The FastAPI app of ``settings.service``, with its own metrics registry."""
    if tracing is None:
        # tracing off: no provider, no exporter, no instrumentation (traceparent is ignored).
        endpoint = settings.otlp_endpoint if settings.options.tracing else None
        tracing = create_tracing(settings.service_name, endpoint)
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


def served_app(app: FastAPI) -> ASGIApp:
    """What the server runs: ``app``, or with ``separate_metrics_port`` a dispatcher that
    sends requests on the metrics port to a ``/metrics``-only app."""
    settings: ShopSettings = app.state.settings
    if not settings.options.separate_metrics_port or settings.metrics_port is None:
        return app
    return PortDispatch(app, create_metrics_app(app.state.metrics), settings.metrics_port)
