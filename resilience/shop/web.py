"""What the three services share on the HTTP side: the app shell, /health, /metrics (on
the app port, or on a port of its own with ``separate_metrics_port``), request metrics by
route template, and one translation of ``ShopError`` into an answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from resilience.shop.errors import ShopError
from resilience.shop.metrics import CONTENT_TYPE, ShopMetrics
from resilience.shop.settings import ShopSettings
from resilience.shop.tracing import Tracing

UNMATCHED_ROUTE = "<unmatched>"
_UNMEASURED_PATHS = frozenset({"/metrics", "/health"})

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
HealthExtra = Callable[[], dict[str, object]]


class RequestMetricsMiddleware:
    """Times every request and labels it with its route template (never the raw path)."""

    def __init__(self, app: ASGIApp, metrics: ShopMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNMEASURED_PATHS:
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # The router writes the matched route into this same scope dict.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            self.metrics.observe_request(
                route, scope["method"], status, time.perf_counter() - started
            )


def create_app(
    settings: ShopSettings,
    metrics: ShopMetrics,
    tracing: Tracing,
    *,
    lifespan: Lifespan | None = None,
    health_extra: HealthExtra | None = None,
) -> FastAPI:
    """A FastAPI app with the shared routes and middleware; the service adds its own routes."""
    app = FastAPI(
        title=settings.service_name,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)

    @app.exception_handler(ShopError)
    async def _shop_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ShopError)
        record_error(exc)
        return JSONResponse({"error": exc.error_type, "detail": str(exc)}, exc.status)

    @app.get("/health")
    async def health() -> dict[str, object]:
        body: dict[str, object] = {
            "status": "ok",
            "service": settings.service,
            "mode": settings.mode,
            # JSON mode: the demo password shows as '**********'.
            "options": settings.options.model_dump(mode="json"),
        }
        if health_extra is not None:
            body.update(health_extra())
        return body

    if not settings.options.separate_metrics_port:

        @app.get("/metrics")
        async def metrics_endpoint() -> Response:
            return Response(metrics.render(), media_type=CONTENT_TYPE)

    if tracing.enabled:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=tracing.provider,
            excluded_urls="/health$,/metrics$",
            exclude_spans=["receive", "send"],
        )
    return app


def create_metrics_app(metrics: ShopMetrics) -> Starlette:
    """The app of the separate metrics port: ``GET /metrics`` and nothing else (404)."""

    async def metrics_endpoint(_request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return Starlette(routes=[Route("/metrics", metrics_endpoint, methods=["GET"])])


class PortDispatch:
    """One ASGI app for one server listening on two sockets: requests that arrived on
    ``metrics_port`` go to ``metrics_app``, all others (and the lifespan) to ``app``.

    One uvicorn server keeps one event loop, one signal handling and one shutdown, and the
    scrape reads pool and breaker state on the loop that changes them.
    """

    def __init__(self, app: ASGIApp, metrics_app: ASGIApp, metrics_port: int) -> None:
        self.app = app
        self.metrics_app = metrics_app
        self.metrics_port = metrics_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] == "http" and server is not None and server[1] == self.metrics_port:
            await self.metrics_app(scope, receive, send)
            return
        await self.app(scope, receive, send)


def record_error(exc: ShopError) -> None:
    """Mark the current span failed with the error's type (``TimeoutError`` for timeouts)."""
    span = trace.get_current_span()
    span.record_exception(exc, attributes={"exception.type": exc.error_type})
    span.set_attribute("error.type", exc.error_type)
    span.set_status(Status(StatusCode.ERROR, str(exc)))
