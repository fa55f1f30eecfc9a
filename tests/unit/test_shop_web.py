"""The shop's HTTP shell, in process: routes, /health, /metrics names, error translation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from resilience.shop.app import build_app, served_app
from resilience.shop.breaker import BreakerState
from resilience.shop.catalog import catalog_items
from resilience.shop.errors import DependencyTimeout
from resilience.shop.settings import settings_from_env

CATALOG_ENV = {"SHOP_SERVICE": "catalog", "SHOP_MODE": "hardened", "SHOP_PORT": "8202"}
UPSTREAMS = {"SHOP_CATALOG_URL": "http://127.0.0.1:9", "SHOP_ORDERS_URL": "http://127.0.0.1:9"}

CONTRACT_METRICS = (
    "shop_http_request_duration_seconds",
    "shop_http_errors_total",
    "shop_upstream_request_duration_seconds",
    "shop_upstream_requests_total",
    "shop_upstream_retries_total",
    "shop_upstream_pool_size",
    "shop_upstream_pool_in_use",
    "shop_upstream_pool_waiting",
    "shop_breaker_state",
    "shop_db_pool_size",
    "shop_db_pool_in_use",
    "shop_db_pool_waiting",
    "shop_db_pool_wait_timeouts_total",
    "shop_db_pool_wait_seconds",
    "shop_orders_acknowledged_total",
)


class AppClient:
    """Requests to an ASGI app in process (httpx's ASGITransport; no sockets)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def get(self, path: str) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as c:
                return await c.get(path)

        return asyncio.run(send())


@contextmanager
def app_client(app: FastAPI) -> Iterator[AppClient]:
    yield AppClient(app)


@pytest.fixture
def catalog() -> Iterator[AppClient]:
    with app_client(build_app(settings_from_env(CATALOG_ENV))) as client:
        yield client


def test_catalog_lists_fifty_items(catalog: AppClient) -> None:
    """GET /items lists the default 50 items; GET /items/{id} returns one."""
    body = catalog.get("/items").json()
    assert body["count"] == 50
    assert body["items"] == catalog_items(50)
    assert catalog.get("/items/7").json()["id"] == 7


def test_unknown_item_is_404(catalog: AppClient) -> None:
    """An unknown item id answers 404 with an error body."""
    response = catalog.get("/items/999")
    assert response.status_code == 404
    assert response.json()["error"] == "NotFound"


def test_health_reports_service_mode_and_options(catalog: AppClient) -> None:
    """GET /health carries status, service, mode and the effective options."""
    body = catalog.get("/health").json()
    assert body["status"] == "ok"
    assert body["service"] == "catalog"
    assert body["mode"] == "hardened"
    assert body["options"]["catalog_items"] == 50
    assert body["options"]["breaker_recovery_seconds"] == 2.0


def test_request_metrics_use_the_route_template(catalog: AppClient) -> None:
    """Requests are labelled by route template and status, never by raw path."""
    catalog.get("/items/3")
    catalog.get("/items/4")
    catalog.get("/items/999")
    text = catalog.get("/metrics").text
    assert (
        'shop_http_request_duration_seconds_count{method="GET",route="/items/{item_id}",'
        'service="catalog",status="200"} 2.0'
    ) in text
    assert 'route="/items/{item_id}",service="catalog",status="404"} 1.0' in text
    assert 'route="/items/3"' not in text
    assert "/metrics" not in text.split("# HELP")[1]  # scrapes are not measured


def test_unmatched_paths_share_one_label(catalog: AppClient) -> None:
    """Unknown paths are counted under one label, so they cannot explode cardinality."""
    catalog.get("/no/such/path/1")
    catalog.get("/no/such/path/2")
    text = catalog.get("/metrics").text
    assert 'route="<unmatched>",service="catalog",status="404"} 2.0' in text


def test_shop_errors_become_json_answers_and_count_as_errors() -> None:
    """A ShopError becomes its status with {error, detail} and counts in shop_http_errors_total."""
    app = build_app(settings_from_env(CATALOG_ENV))

    @app.get("/boom")
    async def boom() -> None:
        raise DependencyTimeout("database: insert order did not finish")

    with app_client(app) as client:
        response = client.get("/boom")
        assert response.status_code == 504
        assert response.json() == {
            "error": "TimeoutError",
            "detail": "database: insert order did not finish",
        }
        text = client.get("/metrics").text
    assert 'shop_http_errors_total{route="/boom",service="catalog",status="504"} 1.0' in text


def test_gateway_exports_pool_and_breaker_state() -> None:
    """A hardened gateway exports its two pools and the orders breaker (closed) at once."""
    env = {**CATALOG_ENV, **UPSTREAMS, "SHOP_SERVICE": "gateway", "SHOP_PORT": "8200"}
    with app_client(build_app(settings_from_env(env))) as client:
        text = client.get("/metrics").text
        health = client.get("/health").json()
    assert 'shop_upstream_pool_size{pool="catalog",service="gateway"} 10.0' in text
    assert 'shop_upstream_pool_size{pool="orders",service="gateway"} 10.0' in text
    assert (
        f'shop_breaker_state{{service="gateway",upstream="orders"}} {BreakerState.CLOSED:.1f}'
        in text
    )
    assert health["breakers"] == {"orders": "closed"}
    assert set(health["pools"]) == {"catalog", "orders"}


def test_fragile_gateway_has_one_shared_pool() -> None:
    """A fragile gateway has a single pool named shared and no breaker."""
    env = {**CATALOG_ENV, **UPSTREAMS, "SHOP_SERVICE": "gateway", "SHOP_MODE": "fragile"}
    with app_client(build_app(settings_from_env(env))) as client:
        health = client.get("/health").json()
        text = client.get("/metrics").text
    assert set(health["pools"]) == {"shared"}
    assert "breakers" not in health
    assert "shop_breaker_state{" not in text


def test_every_contract_metric_is_registered() -> None:
    """Every metric name the toolkit's checks rely on exists in the registry."""
    app = build_app(settings_from_env(CATALOG_ENV))
    text = app.state.metrics.render().decode()
    for name in CONTRACT_METRICS:
        assert f"# TYPE {name} " in text, name


def _served_client_get(app: FastAPI, port: int, path: str) -> httpx.Response:
    """GET through what the server runs (served_app), as if it arrived on ``port``."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=served_app(app))
        async with httpx.AsyncClient(
            transport=transport, base_url=f"http://127.0.0.1:{port}"
        ) as client:
            return await client.get(path)

    return asyncio.run(send())


def test_separate_metrics_port_moves_metrics_off_the_app_port() -> None:
    """With separate_metrics_port, /metrics answers only on the metrics port; the app port
    answers 404 for it, and the metrics port answers 404 for everything else."""
    env = {**CATALOG_ENV, "SHOP_OPT_SEPARATE_METRICS_PORT": "true", "SHOP_METRICS_PORT": "18202"}
    app = build_app(settings_from_env(env))
    assert _served_client_get(app, 8202, "/items/3").status_code == 200
    assert _served_client_get(app, 8202, "/metrics").status_code == 404
    assert _served_client_get(app, 8202, "/health").status_code == 200
    metrics = _served_client_get(app, 18202, "/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert (
        'shop_http_request_duration_seconds_count{method="GET",route="/items/{item_id}",'
        'service="catalog",status="200"} 1.0'
    ) in metrics.text
    assert _served_client_get(app, 18202, "/health").status_code == 404
    assert _served_client_get(app, 18202, "/items/3").status_code == 404


def test_without_the_option_the_served_app_is_the_app() -> None:
    """Default options: the server runs the service's app itself, /metrics on the app port."""
    app = build_app(settings_from_env(CATALOG_ENV))
    assert served_app(app) is app
    assert _served_client_get(app, 8202, "/metrics").status_code == 200


def test_tracing_off_builds_no_provider_and_no_instrumentation() -> None:
    """tracing=false: even with an OTLP endpoint there is no SDK provider, no FastAPI or httpx
    instrumentation, and a request carrying a traceparent is served normally."""
    env = {
        **CATALOG_ENV,
        "SHOP_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "SHOP_OPT_TRACING": "false",
    }
    app = build_app(settings_from_env(env))
    assert app.state.tracing.enabled is False
    assert not isinstance(app.state.tracing.provider, TracerProvider)
    # The flag OpenTelemetry's instrumentors set on what they instrument.
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    gateway = build_app(settings_from_env({**env, **UPSTREAMS, "SHOP_SERVICE": "gateway"}))
    for client in gateway.state.gateway.clients:
        assert not getattr(client, "_is_instrumented_by_opentelemetry", False)

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as c:
            parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            return await c.get("/items/2", headers={"traceparent": parent})

    assert asyncio.run(send()).status_code == 200


def test_tracing_on_with_an_endpoint_instruments_the_app() -> None:
    """The default (tracing on) with an endpoint: an SDK provider and FastAPI middleware."""
    env = {**CATALOG_ENV, "SHOP_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    app = build_app(settings_from_env(env))
    try:
        assert app.state.tracing.enabled is True
        assert isinstance(app.state.tracing.provider, TracerProvider)
        assert getattr(app, "_is_instrumented_by_opentelemetry", False) is True
        gateway = build_app(settings_from_env({**env, **UPSTREAMS, "SHOP_SERVICE": "gateway"}))
        assert all(c._is_instrumented_by_opentelemetry for c in gateway.state.gateway.clients)
        gateway.state.tracing.shutdown()
    finally:
        app.state.tracing.shutdown()
