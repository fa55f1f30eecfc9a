"""The gateway's retry policy and its use by Upstream (with httpx.MockTransport, no network)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.trace import NoOpTracerProvider

from resilience.shop.breaker import BreakerConfig, BreakerState, CircuitBreaker
from resilience.shop.errors import DependencyFailed, DependencyTimeout, Rejected
from resilience.shop.metrics import ShopMetrics
from resilience.shop.pools import PoolAccounting, SlotPool
from resilience.shop.retry import RetryPolicy, is_retryable_status
from resilience.shop.upstream import Upstream

HARDENED = RetryPolicy(
    max_retries=2,
    retry_non_idempotent=False,
    backoff_base_seconds=0.05,
    backoff_max_seconds=0.4,
    jitter=0.5,
)
FRAGILE = RetryPolicy(
    max_retries=2,
    retry_non_idempotent=True,
    backoff_base_seconds=0.0,
    backoff_max_seconds=0.0,
    jitter=0.0,
)
TRACER = NoOpTracerProvider().get_tracer("test")


def test_only_idempotent_methods_are_retried_when_hardened() -> None:
    """Hardened retries GET (and other idempotent methods), never POST."""
    assert HARDENED.allows("GET")
    assert HARDENED.allows("get")
    assert HARDENED.allows("PUT")
    assert not HARDENED.allows("POST")
    assert not HARDENED.allows("PATCH")
    assert not HARDENED.should_retry("POST", 0)


def test_fragile_retries_every_method() -> None:
    """Fragile retries POST too, up to its retry count."""
    assert FRAGILE.should_retry("POST", 0)
    assert FRAGILE.should_retry("POST", 1)
    assert not FRAGILE.should_retry("POST", 2)


def test_retry_count_is_bounded() -> None:
    """No retry beyond max_retries."""
    assert HARDENED.should_retry("GET", 1)
    assert not HARDENED.should_retry("GET", 2)


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    """The ceiling doubles per retry and stops at backoff_max_seconds."""
    highs = [HARDENED.backoff_bounds(n)[1] for n in range(1, 7)]
    assert highs == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.4, 0.4])
    assert HARDENED.backoff_bounds(200)[1] == pytest.approx(0.4)


def test_fragile_backoff_is_immediate() -> None:
    """Fragile retries at once: every delay is zero."""
    rng = random.Random(1)
    assert all(FRAGILE.backoff(n, rng) == 0.0 for n in range(1, 5))


@given(retry=st.integers(1, 100), seed=st.integers(0, 2**32 - 1))
def test_jittered_backoff_stays_in_its_bounds(retry: int, seed: int) -> None:
    """Every drawn delay lies in [b * (1 - jitter), b]."""
    low, high = HARDENED.backoff_bounds(retry)
    assert low == pytest.approx(high * (1 - HARDENED.jitter))
    delay = HARDENED.backoff(retry, random.Random(seed))
    assert low <= delay <= high


def test_jitter_actually_varies_the_delay() -> None:
    """Different draws give different delays (the jitter is real)."""
    rng = random.Random(7)
    delays = {HARDENED.backoff(1, rng) for _ in range(20)}
    assert len(delays) > 10


def test_retry_number_starts_at_one() -> None:
    """Retry numbers are 1-based."""
    with pytest.raises(ValueError, match="retry_number"):
        HARDENED.backoff_bounds(0)


def test_server_errors_are_retryable_client_errors_are_not() -> None:
    """5xx answers may be retried; 4xx are answers, not failures."""
    assert is_retryable_status(500)
    assert is_retryable_status(503)
    assert not is_retryable_status(404)
    assert not is_retryable_status(200)


# -- Upstream with a mock transport -----------------------------------------------------


class Recorder:
    """A mock upstream answering from a list of statuses (or exceptions) in order."""

    def __init__(self, answers: list[int | Exception]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, json={"n": len(self.requests)})


def make_upstream(
    handler: Callable[[httpx.Request], httpx.Response],
    policy: RetryPolicy,
    *,
    breaker: CircuitBreaker | None = None,
    deadline: float | None = None,
    metrics: ShopMetrics | None = None,
) -> tuple[Upstream, list[float]]:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    upstream = Upstream(
        "orders",
        "http://orders.test",
        client,
        SlotPool(PoolAccounting("orders", 4), TRACER),
        retry=policy,
        deadline_seconds=deadline,
        attempt_timeout_seconds=None,
        breaker=breaker,
        metrics=metrics or ShopMetrics("gateway"),
        tracer=TRACER,
        sleep=fake_sleep,
        rng=random.Random(3),
    )
    return upstream, sleeps


def test_hardened_retries_a_failing_get_with_backoff() -> None:
    """A GET answered 503, 503, 200 succeeds on the third attempt after two backoffs."""
    recorder = Recorder([503, 503, 200])
    metrics = ShopMetrics("gateway")
    upstream, sleeps = make_upstream(recorder, HARDENED, metrics=metrics)
    result = asyncio.run(upstream.call("GET", "/orders/1"))
    assert result.status == 200
    assert len(recorder.requests) == 3
    assert len(sleeps) == 2
    for n, delay in enumerate(sleeps, start=1):
        low, high = HARDENED.backoff_bounds(n)
        assert low <= delay <= high
    assert metrics.upstream_retries.labels("gateway", "orders")._value.get() == 2
    assert metrics.upstream_requests.labels("gateway", "orders", "error")._value.get() == 2
    assert metrics.upstream_requests.labels("gateway", "orders", "ok")._value.get() == 1


def test_hardened_never_retries_a_post() -> None:
    """A POST answered 503 is passed back after exactly one attempt."""
    recorder = Recorder([503, 201])
    upstream, sleeps = make_upstream(recorder, HARDENED)
    result = asyncio.run(upstream.call("POST", "/orders", content=b"{}"))
    assert result.status == 503
    assert len(recorder.requests) == 1
    assert sleeps == []


def test_fragile_retries_a_post_immediately() -> None:
    """Fragile retries a POST twice with no delay: three requests for one call."""
    recorder = Recorder([httpx.ConnectError("refused"), 500, 500])
    upstream, sleeps = make_upstream(recorder, FRAGILE)
    result = asyncio.run(upstream.call("POST", "/orders", content=b"{}"))
    assert result.status == 500
    assert len(recorder.requests) == 3
    assert sleeps == []


def test_transport_errors_surface_as_dependency_failed() -> None:
    """When every attempt fails to connect, the call raises DependencyFailed."""
    recorder = Recorder([httpx.ConnectError("refused")])
    upstream, _ = make_upstream(recorder, HARDENED)
    with pytest.raises(DependencyFailed, match="ConnectError"):
        asyncio.run(upstream.call("GET", "/items"))
    assert len(recorder.requests) == 3


def test_timeouts_surface_as_dependency_timeout() -> None:
    """An httpx timeout is a DependencyTimeout with error type TimeoutError."""
    recorder = Recorder([httpx.ReadTimeout("slow")])
    upstream, _ = make_upstream(recorder, FRAGILE)
    with pytest.raises(DependencyTimeout) as caught:
        asyncio.run(upstream.call("GET", "/items"))
    assert caught.value.error_type == "TimeoutError"
    assert caught.value.status == 504


def test_a_404_is_an_answer_not_a_failure() -> None:
    """A 404 is returned at once and counts as ok for the breaker."""
    recorder = Recorder([404])
    breaker = CircuitBreaker("orders", BreakerConfig(failure_threshold=1))
    upstream, _ = make_upstream(recorder, HARDENED, breaker=breaker)
    assert asyncio.run(upstream.call("GET", "/orders/9")).status == 404
    assert breaker.state is BreakerState.CLOSED


def test_an_open_breaker_rejects_without_sending() -> None:
    """Once the breaker opens, calls are rejected fast (CircuitOpen) and never retried."""
    recorder = Recorder([503])
    breaker = CircuitBreaker("orders", BreakerConfig(failure_threshold=2, open_seconds=60))
    metrics = ShopMetrics("gateway")
    upstream, _ = make_upstream(recorder, FRAGILE, breaker=breaker, metrics=metrics)
    # Three attempts of 503: the breaker opens after two, so the third is rejected.
    with pytest.raises(Rejected) as caught:
        asyncio.run(upstream.call("POST", "/orders", content=b"{}"))
    assert caught.value.error_type == "CircuitOpen"
    assert len(recorder.requests) == 2
    with pytest.raises(Rejected):
        asyncio.run(upstream.call("GET", "/orders/1"))
    assert len(recorder.requests) == 2
    assert metrics.upstream_requests.labels("gateway", "orders", "rejected")._value.get() == 2


def test_no_retry_is_started_past_the_deadline() -> None:
    """A backoff that would end past the call's deadline is not taken."""
    recorder = Recorder([503])
    slow = RetryPolicy(
        max_retries=5,
        retry_non_idempotent=False,
        backoff_base_seconds=10.0,
        backoff_max_seconds=10.0,
        jitter=0.0,
    )
    upstream, sleeps = make_upstream(recorder, slow, deadline=1.0)
    assert asyncio.run(upstream.call("GET", "/items")).status == 503
    assert len(recorder.requests) == 1
    assert sleeps == []
