"""The gateway: the shop's public API, forwarding to catalog and orders through Toxiproxy.

Where the two modes differ most. Fragile: one ``SlotPool`` named ``shared`` (and one httpx
client) serves both upstreams, with no timeouts, so order calls stuck behind a hung
database hold every slot and catalog calls queue behind them: the cascade. Hardened:
pools ``catalog`` and ``orders`` (bulkheads), a deadline per call, and a circuit breaker
on orders, so a hung database costs only order traffic and only briefly.

With the option ``auth_login`` the gateway also looks like an ordinary API behind a login
(``auth.py``): ``POST /login`` hands out bearer tokens that every business route requires.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import Depends, FastAPI, Query, Request, Response, params

from resilience.shop.auth import Auth, AuthProblem, TokenStore
from resilience.shop.breaker import BreakerConfig, BreakerState, CircuitBreaker
from resilience.shop.metrics import ShopMetrics
from resilience.shop.pools import PoolAccounting, SlotPool, current_span_event
from resilience.shop.retry import RetryPolicy
from resilience.shop.settings import ShopOptions, ShopSettings
from resilience.shop.tracing import Tracing
from resilience.shop.upstream import Upstream, UpstreamResponse
from resilience.shop.web import create_app

logger = logging.getLogger(__name__)

SHARED_POOL = "shared"
KEEPALIVE_EXPIRY_SECONDS = 5.0
"""The gateway drops an idle upstream connection after this, well before the services close
it (``__main__.KEEP_ALIVE_SECONDS``), so it never reuses one the server is closing."""


def breaker_config(options: ShopOptions) -> BreakerConfig:
    """The orders breaker's configuration from the shop options."""
    return BreakerConfig(
        failure_threshold=options.breaker_failure_threshold,
        failure_ratio=options.breaker_failure_ratio,
        window_seconds=options.breaker_window_seconds,
        min_calls=options.breaker_min_calls,
        open_seconds=options.breaker_open_seconds,
        probe_interval_seconds=options.breaker_probe_interval_seconds,
        recovery_seconds=options.breaker_recovery_seconds,
    )


def retry_policy(options: ShopOptions) -> RetryPolicy:
    """The gateway's retry policy from the shop options."""
    return RetryPolicy(
        max_retries=options.upstream_retries,
        retry_non_idempotent=options.retry_non_idempotent,
        backoff_base_seconds=options.retry_backoff_base_seconds,
        backoff_max_seconds=options.retry_backoff_max_seconds,
        jitter=options.retry_jitter,
    )


class Gateway:
    """The gateway's upstreams, pools and breaker, built from the settings."""

    def __init__(self, settings: ShopSettings, metrics: ShopMetrics, tracing: Tracing) -> None:
        opts = settings.options
        self.settings = settings
        self.pools: dict[str, SlotPool] = {}
        self.clients: list[httpx.AsyncClient] = []
        names = [SHARED_POOL] if opts.shared_upstream_pool else ["catalog", "orders"]
        members: dict[str, tuple[SlotPool, httpx.AsyncClient]] = {}
        for name in names:
            accounting = PoolAccounting(name, opts.upstream_pool_size)
            metrics.watch_upstream_pool(accounting)
            pool = SlotPool(accounting, tracing.tracer)
            client = self._client(opts, tracing)
            self.pools[name] = pool
            self.clients.append(client)
            members[name] = (pool, client)

        self.breaker: CircuitBreaker | None = None
        if opts.breaker_enabled:
            self.breaker = CircuitBreaker(
                "orders", breaker_config(opts), on_transition=_note_transition
            )
            metrics.watch_breaker("orders", self.breaker)

        policy = retry_policy(opts)
        assert settings.catalog_url is not None and settings.orders_url is not None  # validated
        urls = {"catalog": settings.catalog_url, "orders": settings.orders_url}
        self.upstreams: dict[str, Upstream] = {}
        for name, url in urls.items():
            pool, client = members[SHARED_POOL if opts.shared_upstream_pool else name]
            self.upstreams[name] = Upstream(
                name,
                url,
                client,
                pool,
                retry=policy,
                deadline_seconds=opts.upstream_deadline_seconds,
                attempt_timeout_seconds=opts.upstream_attempt_timeout_seconds,
                breaker=self.breaker if name == "orders" else None,
                metrics=metrics,
                tracer=tracing.tracer,
            )

    @staticmethod
    def _client(opts: ShopOptions, tracing: Tracing) -> httpx.AsyncClient:
        size = opts.upstream_pool_size
        client = httpx.AsyncClient(
            limits=httpx.Limits(
                # Unbounded: the SlotPool bounds the calls callers wait for, and a request
                # left by its caller's deadline runs on until httpx's timeouts end it
                # (upstream.py), never queueing a new one inside httpcore's pool.
                max_connections=None,
                max_keepalive_connections=size,
                keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS,
            ),
            timeout=httpx.Timeout(opts.upstream_attempt_timeout_seconds),
            trust_env=False,
        )
        if tracing.enabled:
            from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

            HTTPXClientInstrumentor.instrument_client(client, tracer_provider=tracing.provider)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()

    def health(self) -> dict[str, object]:
        """Pools and breaker as /health shows them."""
        body: dict[str, object] = {
            "pools": {
                name: {
                    "size": pool.accounting.size,
                    "in_use": pool.accounting.in_use,
                    "waiting": pool.accounting.waiting,
                }
                for name, pool in self.pools.items()
            }
        }
        if self.breaker is not None:
            body["breakers"] = {"orders": self.breaker.state.name.lower()}
        return body


def _note_transition(old: BreakerState, new: BreakerState) -> None:
    current_span_event(
        "breaker.transition", upstream="orders", old=old.name.lower(), new=new.name.lower()
    )


async def _auth_problem(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthProblem)
    return exc.response()


def _answer(result: UpstreamResponse) -> Response:
    return Response(result.content, status_code=result.status, media_type=result.content_type)


def build_gateway_app(settings: ShopSettings, metrics: ShopMetrics, tracing: Tracing) -> FastAPI:
    """The gateway's FastAPI app."""
    gateway = Gateway(settings, metrics, tracing)
    catalog = gateway.upstreams["catalog"]
    orders = gateway.upstreams["orders"]

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await gateway.close()

    app = create_app(settings, metrics, tracing, lifespan=lifespan, health_extra=gateway.health)
    # With auth_login, every business route depends on a valid bearer token.
    needs_token: list[params.Depends] = []
    if settings.options.auth_login:
        auth = Auth(TokenStore.from_options(settings.options))
        needs_token.append(Depends(auth.require_token))
        app.post("/login")(auth.login)
        app.add_exception_handler(AuthProblem, _auth_problem)
        app.state.auth = auth

    @app.get("/catalog/items", dependencies=needs_token)
    async def list_items() -> Response:
        return _answer(await catalog.call("GET", "/items"))

    @app.get("/catalog/items/{item_id}", dependencies=needs_token)
    async def get_item(item_id: int) -> Response:
        return _answer(await catalog.call("GET", f"/items/{item_id}"))

    @app.post("/orders", dependencies=needs_token)
    async def create_order(request: Request) -> Response:
        body = await request.body()
        return _answer(
            await orders.call(
                "POST", "/orders", content=body, headers={"content-type": "application/json"}
            )
        )

    @app.get("/orders/ids", dependencies=needs_token)
    async def order_ids() -> Response:
        return _answer(await orders.call("GET", "/orders/ids"))

    @app.get("/orders/{order_id}", dependencies=needs_token)
    async def get_order(order_id: int) -> Response:
        return _answer(await orders.call("GET", f"/orders/{order_id}"))

    @app.get("/orders", dependencies=needs_token)
    async def list_orders(
        after_id: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000)
    ) -> Response:
        return _answer(
            await orders.call("GET", "/orders", params={"after_id": after_id, "limit": limit})
        )

    app.state.gateway = gateway
    return app
