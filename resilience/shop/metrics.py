"""The shop's Prometheus metrics: one registry per process, names fixed by contract.

The toolkit's built-in checks query these names and labels, so they must not change.
Every metric carries a ``service`` label (gateway, orders or catalog). Pool and breaker
gauges are read from the live objects at scrape time (``set_function``), so a scrape
always shows the current state and no code path can forget to update them.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as _CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from resilience.shop.breaker import CircuitBreaker
from resilience.shop.pools import PoolAccounting

CONTENT_TYPE = _CONTENT_TYPE

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
)  # fmt: skip

UPSTREAM_OUTCOMES = ("ok", "error", "timeout", "rejected")


class ShopMetrics:
    """Every metric of one shop process, registered on its own registry."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        # process_resident_memory_bytes & co.: the memory_growth detector reads them.
        ProcessCollector(registry=r)
        self.http_request_duration = Histogram(
            "shop_http_request_duration_seconds",
            "Server-side duration of HTTP requests, by route template.",
            ["service", "route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_errors = Counter(
            "shop_http_errors_total",
            "HTTP responses with a 5xx status, by route template.",
            ["service", "route", "status"],
            registry=r,
        )
        self.upstream_request_duration = Histogram(
            "shop_upstream_request_duration_seconds",
            "Duration of each attempt to an upstream (rejections last ~0).",
            ["service", "upstream", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_requests = Counter(
            "shop_upstream_requests_total",
            "Attempts to call an upstream, by outcome (ok|error|timeout|rejected).",
            ["service", "upstream", "outcome"],
            registry=r,
        )
        self.upstream_retries = Counter(
            "shop_upstream_retries_total",
            "Retries sent to an upstream (attempts after the first).",
            ["service", "upstream"],
            registry=r,
        )
        self.upstream_pool_size = Gauge(
            "shop_upstream_pool_size", "Slots of a gateway upstream pool.",
            ["service", "pool"], registry=r,
        )  # fmt: skip
        self.upstream_pool_in_use = Gauge(
            "shop_upstream_pool_in_use", "Slots of a gateway upstream pool in use.",
            ["service", "pool"], registry=r,
        )  # fmt: skip
        self.upstream_pool_waiting = Gauge(
            "shop_upstream_pool_waiting", "Calls waiting for a slot of a gateway upstream pool.",
            ["service", "pool"], registry=r,
        )  # fmt: skip
        self.breaker_state = Gauge(
            "shop_breaker_state", "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
            ["service", "upstream"], registry=r,
        )  # fmt: skip
        self.db_pool_size = Gauge(
            "shop_db_pool_size", "Connections of the orders database pool.",
            ["service"], registry=r,
        )  # fmt: skip
        self.db_pool_in_use = Gauge(
            "shop_db_pool_in_use", "Database connections checked out.",
            ["service"], registry=r,
        )  # fmt: skip
        self.db_pool_waiting = Gauge(
            "shop_db_pool_waiting", "Requests waiting for a database connection.",
            ["service"], registry=r,
        )  # fmt: skip
        self.db_pool_wait_timeouts = Counter(
            "shop_db_pool_wait_timeouts_total", "Database pool waits that ran out of time.",
            ["service"], registry=r,
        )  # fmt: skip
        self.db_pool_wait_seconds = Histogram(
            "shop_db_pool_wait_seconds", "Time spent waiting for a database connection.",
            ["service"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.orders_acknowledged = Counter(
            "shop_orders_acknowledged_total", "Orders acknowledged to the client (201).",
            ["service"], registry=r,
        )  # fmt: skip
        self.orders_lost = Counter(
            "shop_orders_lost_total",
            "Acknowledged orders whose background commit failed or could not be confirmed "
            "(ack_before_commit only; a timed-out batch may still have committed).",
            ["service"], registry=r,
        )  # fmt: skip

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One served HTTP request."""
        code = str(status)
        self.http_request_duration.labels(self.service, route, method, code).observe(seconds)
        if status >= 500:
            self.http_errors.labels(self.service, route, code).inc()

    def observe_upstream(self, upstream: str, outcome: str, seconds: float) -> None:
        """One attempt to an upstream (or one rejection before sending)."""
        self.upstream_requests.labels(self.service, upstream, outcome).inc()
        self.upstream_request_duration.labels(self.service, upstream, outcome).observe(seconds)

    def count_retry(self, upstream: str) -> None:
        self.upstream_retries.labels(self.service, upstream).inc()

    def watch_upstream_pool(self, pool: PoolAccounting) -> None:
        """Publish a gateway pool's counts, read at every scrape."""
        self.upstream_pool_size.labels(self.service, pool.name).set_function(lambda: pool.size)
        self.upstream_pool_in_use.labels(self.service, pool.name).set_function(lambda: pool.in_use)
        self.upstream_pool_waiting.labels(self.service, pool.name).set_function(
            lambda: pool.waiting
        )

    def watch_breaker(self, upstream: str, breaker: CircuitBreaker) -> None:
        """Publish a breaker's state, read (and advanced in time) at every scrape."""
        self.breaker_state.labels(self.service, upstream).set_function(lambda: int(breaker.state))

    def watch_db_pool(self, pool: PoolAccounting) -> None:
        """Publish the database pool's counts, read at every scrape."""
        self.db_pool_size.labels(self.service).set_function(lambda: pool.size)
        self.db_pool_in_use.labels(self.service).set_function(lambda: pool.in_use)
        self.db_pool_waiting.labels(self.service).set_function(lambda: pool.waiting)
        # Touch the counter so it is exported as 0 before the first timeout.
        self.db_pool_wait_timeouts.labels(self.service)

    def observe_db_wait(self, seconds: float, acquired: bool) -> None:
        """``PoolAccounting`` wait observer for the database pool (successful or not)."""
        self.db_pool_wait_seconds.labels(self.service).observe(seconds)

    def count_db_wait_timeout(self) -> None:
        self.db_pool_wait_timeouts.labels(self.service).inc()

    def render(self) -> bytes:
        """The exposition text for ``GET /metrics``."""
        return generate_latest(self.registry)
