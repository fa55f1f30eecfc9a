"""The gateway's client for one upstream service: pool, breaker, deadline, retries, metrics.

One logical call (``Upstream.call``) makes up to ``1 + retries`` attempts. Each attempt:
ask the breaker (if any) for a permit, wait for a pool slot (bounded by what is left of
the deadline, or unbounded in fragile mode), send the request with the attempt timeout,
then tell the breaker how it went. A server error, a timeout or a transport error is a
failure; any answer below 500 is a success (a 404 is the upstream working). Rejections
(breaker open, pool wait over) are never retried: failing fast is their point.

Metrics are per attempt: ``shop_upstream_requests_total{outcome}`` counts every attempt
(ok | error | timeout) and every rejection (rejected), and the duration histogram times
each attempt from the moment it asked for its pool slot, as its caller experiences it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from resilience.shop.breaker import CircuitBreaker
from resilience.shop.errors import DependencyFailed, DependencyTimeout, Rejected, ShopError
from resilience.shop.metrics import ShopMetrics
from resilience.shop.pools import SlotPool
from resilience.shop.retry import RetryPolicy, is_retryable_status

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class UpstreamResponse:
    """An upstream's answer, read in full."""

    status: int
    content: bytes
    content_type: str


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    params: Mapping[str, str | int] | None
    content: bytes | None
    headers: Mapping[str, str] | None


class Upstream:
    """Calls one upstream service through a (possibly shared) pool."""

    def __init__(
        self,
        name: str,
        base_url: str,
        client: httpx.AsyncClient,
        pool: SlotPool,
        *,
        retry: RetryPolicy,
        deadline_seconds: float | None,
        attempt_timeout_seconds: float | None,
        breaker: CircuitBreaker | None,
        metrics: ShopMetrics,
        tracer: Tracer,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.client = client
        self.pool = pool
        self.retry = retry
        self.deadline_seconds = deadline_seconds
        self.attempt_timeout_seconds = attempt_timeout_seconds
        self.breaker = breaker
        self._metrics = metrics
        self._tracer = tracer
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._outliving: set[asyncio.Future[httpx.Response]] = set()
        """Requests whose caller stopped waiting (deadline, cancellation): held here until
        httpx's own timeouts end them (a task nobody references may be collected)."""

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> UpstreamResponse:
        """Call the upstream; returns its answer (a 5xx too, once retries are spent).

        Raises ``Rejected`` (breaker open, pool wait over), ``DependencyTimeout`` or
        ``DependencyFailed`` when no answer came back.
        """
        request = _Request(method, path, params, content, headers)
        deadline_at = (
            None if self.deadline_seconds is None else self._clock() + self.deadline_seconds
        )
        with self._tracer.start_as_current_span(
            f"upstream {self.name}",
            attributes={"upstream": self.name, "http.request.method": method, "url.path": path},
        ) as span:
            result: UpstreamResponse | ShopError = DependencyFailed("no attempt was made")
            for attempt in range(1, self.retry.max_retries + 2):
                span.set_attribute("upstream.attempts", attempt)
                result = await self._attempt(request, deadline_at, span)
                if isinstance(result, UpstreamResponse) and not is_retryable_status(result.status):
                    span.set_attribute("http.response.status_code", result.status)
                    return result
                retries_done = attempt - 1
                if isinstance(result, Rejected) or not self.retry.should_retry(
                    method, retries_done
                ):
                    break
                delay = self.retry.backoff(retries_done + 1, self._rng)
                if deadline_at is not None and self._clock() + delay >= deadline_at:
                    break
                self._metrics.count_retry(self.name)
                span.add_event("retry", {"retry": retries_done + 1, "backoff_seconds": delay})
                if delay > 0:
                    await self._sleep(delay)
            if isinstance(result, UpstreamResponse):
                span.set_attribute("http.response.status_code", result.status)
                span.set_status(Status(StatusCode.ERROR, f"upstream answered {result.status}"))
                return result
            span.record_exception(result, attributes={"exception.type": result.error_type})
            span.set_attribute("error.type", result.error_type)
            span.set_status(Status(StatusCode.ERROR, str(result)))
            raise result

    async def _attempt(  # noqa: PLR0912 (one branch per outcome of an attempt)
        self, request: _Request, deadline_at: float | None, span: Span
    ) -> UpstreamResponse | ShopError:
        started = self._clock()
        permit = None
        if self.breaker is not None:
            permit = self.breaker.acquire()
            if permit is None:
                state = self.breaker.state.name.lower().replace("_", "-")
                self._metrics.observe_upstream(self.name, "rejected", 0.0)
                span.add_event("breaker.rejected", {"upstream": self.name, "breaker.state": state})
                return Rejected(
                    f"circuit breaker on {self.name} is {state}", error_type="CircuitOpen"
                )
            if permit.probe:
                span.add_event("breaker.probe", {"upstream": self.name})
        remaining = None if deadline_at is None else deadline_at - started
        if remaining is not None and remaining <= 0:
            if self.breaker is not None and permit is not None:
                self.breaker.release(permit)
            self._metrics.observe_upstream(self.name, "timeout", 0.0)
            return DependencyTimeout(f"{self.name}: the call's deadline was spent")

        outcome = "ok"
        result: UpstreamResponse | ShopError
        what = f"{request.method} {request.path}"
        try:
            async with self.pool.slot(remaining):
                timeout = self._attempt_timeout(deadline_at)
                try:
                    result = await self._send(request, timeout)
                except TimeoutError as exc:
                    outcome = "timeout"
                    result = DependencyTimeout(
                        f"{self.name}: no answer within {timeout} s to {what}"
                    )
                    result.__cause__ = exc
                except httpx.TimeoutException as exc:
                    outcome = "timeout"
                    result = DependencyTimeout(f"{self.name}: {type(exc).__name__} on {what}")
                    result.__cause__ = exc
                except httpx.HTTPError as exc:
                    outcome = "error"
                    result = DependencyFailed(f"{self.name}: {type(exc).__name__} on {what}: {exc}")
                    result.__cause__ = exc
        except Rejected as exc:
            if self.breaker is not None and permit is not None:
                self.breaker.release(permit)
            self._metrics.observe_upstream(self.name, "rejected", self._clock() - started)
            return exc
        except BaseException:
            if self.breaker is not None and permit is not None:
                self.breaker.release(permit)
            raise
        if isinstance(result, UpstreamResponse) and is_retryable_status(result.status):
            outcome = "error"
        self._metrics.observe_upstream(self.name, outcome, self._clock() - started)
        if self.breaker is not None and permit is not None:
            self.breaker.record(permit, success=outcome == "ok")
        return result

    def _attempt_timeout(self, deadline_at: float | None) -> float | None:
        limits = [t for t in (self.attempt_timeout_seconds,) if t is not None]
        if deadline_at is not None:
            limits.append(max(deadline_at - self._clock(), 0.0))
        return min(limits) if limits else None

    async def _send(self, request: _Request, timeout: float | None) -> UpstreamResponse:
        """Send one attempt and read its answer within ``timeout`` in all.

        httpx times each phase and each read separately; the wait below makes the budget
        total. The request itself is never cancelled: a cancellation inside httpcore's
        connection pool (1.0.9) can leave a connection it had just made or handed out
        CONNECTING, NEW or ACTIVE for good (encode/httpcore#1093, open), so every deadline
        that strikes there takes a connection for ever, and under a spike the client ends
        up with all its connections taken and the upstream healthy (measured: the full
        spike preset left the gateway's catalog pool 10/10 in use and the catalog idle for
        the 8 minutes after it). A caller that stops waiting gives its pool slot back at
        once, as before; the request it leaves ends by httpx's own timeouts (the same
        budget per phase: pool, connect, write, each read). The upstream sees no
        difference: a server goes on with a request whose client hung up either way.
        """
        call = asyncio.ensure_future(
            self.client.request(
                request.method,
                f"{self.base_url}{request.path}",
                params=request.params,
                content=request.content,
                headers=request.headers,
                timeout=httpx.Timeout(timeout),
            )
        )
        try:
            response = await asyncio.wait_for(asyncio.shield(call), timeout)
        except BaseException:
            if not call.done():
                self._outliving.add(call)
                call.add_done_callback(self._outlived)
            raise
        return UpstreamResponse(
            status=response.status_code,
            content=response.content,
            content_type=response.headers.get("content-type", "application/json"),
        )

    def _outlived(self, call: asyncio.Future[httpx.Response]) -> None:
        """A request its caller stopped waiting for has ended."""
        self._outliving.discard(call)
        if not call.cancelled() and call.exception() is not None:
            logger.debug("%s: a request nobody waited for ended: %r", self.name, call.exception())
