"""The gateway's upstream client against a real HTTP server on loopback: deadlines that strike
while calls queue for connections must not take connections for good.

httpcore 1.0.9 leaves a connection it had just made or handed out stuck (CONNECTING, NEW or
ACTIVE) when the request is cancelled inside its pool (encode/httpcore#1093, open). The full
spike preset found it: after 1000 users for 2 minutes the hardened gateway's catalog pool
stayed 10/10 in use, the catalog idle, for the 8 minutes of the recovery phase. The churn
below (40 callers at a time, a 30 ms deadline, a server answering in 0-20 ms) wedged the
old client within seconds: afterwards 0 of 8 calls with a 2 s deadline succeeded.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import httpx
from opentelemetry.trace import NoOpTracerProvider

from resilience.shop.errors import ShopError
from resilience.shop.gateway import Gateway
from resilience.shop.metrics import ShopMetrics
from resilience.shop.pools import PoolAccounting, SlotPool
from resilience.shop.retry import RetryPolicy
from resilience.shop.settings import MODE_DEFAULTS
from resilience.shop.tracing import Tracing
from resilience.shop.upstream import Upstream

TRACER = NoOpTracerProvider().get_tracer("test")
NO_RETRY = RetryPolicy(
    max_retries=0,
    retry_non_idempotent=False,
    backoff_base_seconds=0.0,
    backoff_max_seconds=0.0,
    jitter=0.0,
)
CHURN_SECONDS = 3.0
POOL_SIZE = 4


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 with keep-alive: every request answered ``{}`` after 0-20 ms."""
    try:
        while True:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await reader.read(4096)
                if not chunk:
                    return
                head += chunk
            await asyncio.sleep(random.uniform(0.0, 0.02))
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            )
            await writer.drain()
    except (OSError, asyncio.CancelledError):
        return
    finally:
        writer.close()


def _client() -> httpx.AsyncClient:
    options = MODE_DEFAULTS["hardened"].model_copy(update={"upstream_pool_size": POOL_SIZE})
    return Gateway._client(options, Tracing(provider=NoOpTracerProvider(), enabled=False))


def test_deadlines_under_contention_leave_the_pool_usable() -> None:
    async def scenario() -> tuple[Counter[str], int, Counter[str], int]:
        server = await asyncio.start_server(_answer, "127.0.0.1", 0, backlog=4)
        port = server.sockets[0].getsockname()[1]
        client = _client()
        pool = SlotPool(PoolAccounting("catalog", POOL_SIZE), TRACER)
        upstream = Upstream(
            "catalog",
            f"http://127.0.0.1:{port}",
            client,
            pool,
            retry=NO_RETRY,
            deadline_seconds=0.03,
            attempt_timeout_seconds=0.2,
            breaker=None,
            metrics=ShopMetrics("gateway"),
            tracer=TRACER,
        )
        outcomes: Counter[str] = Counter()

        async def one() -> None:
            try:
                await upstream.call("GET", "/items")
                outcomes["ok"] += 1
            except ShopError as exc:
                outcomes[type(exc).__name__] += 1

        try:
            end = time.monotonic() + CHURN_SECONDS
            while time.monotonic() < end:
                await asyncio.gather(*(one() for _ in range(40)))
            # Requests nobody waits for any more end by httpx's own timeouts (0.2 s).
            deadline = time.monotonic() + 5.0
            while (pool.accounting.in_use or upstream._outliving) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            in_use = pool.accounting.in_use
            upstream.deadline_seconds = 2.0
            after = 0
            for _ in range(8):
                try:
                    await upstream.call("GET", "/items")
                    after += 1
                except ShopError:
                    pass
            states = Counter(
                info.split(", ")[2] if info.count(", ") >= 2 else info
                for info in (c.info() for c in client._transport._pool.connections)  # type: ignore[attr-defined]
            )
            return outcomes, in_use, states, after
        finally:
            await client.aclose()
            server.close()

    outcomes, in_use, states, after = asyncio.run(scenario())
    # The churn did hit the deadline (else it proves nothing) and still got answers.
    assert outcomes["DependencyTimeout"] > 0, outcomes
    assert outcomes["ok"] > 0, outcomes
    assert after == 8, (after, states, outcomes)
    assert in_use == 0
    assert not {"CONNECTING", "NEW", "ACTIVE"} & set(states), states
    assert sum(states.values()) <= POOL_SIZE, states


def test_a_caller_that_stops_waiting_frees_its_slot_and_leaves_the_request_to_end() -> None:
    """The deadline ends the caller's wait and gives its slot back at once (as a cancel
    did); the request itself is not cancelled and ends when the upstream answers."""

    async def scenario() -> tuple[int, int, float]:
        release = asyncio.Event()
        answered = asyncio.Event()

        async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            await release.wait()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
            answered.set()
            writer.close()

        server = await asyncio.start_server(slow, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = _client()
        pool = SlotPool(PoolAccounting("catalog", POOL_SIZE), TRACER)
        upstream = Upstream(
            "catalog",
            f"http://127.0.0.1:{port}",
            client,
            pool,
            retry=NO_RETRY,
            deadline_seconds=0.1,
            attempt_timeout_seconds=5.0,
            breaker=None,
            metrics=ShopMetrics("gateway"),
            tracer=TRACER,
        )
        try:
            started = time.monotonic()
            try:
                await upstream.call("GET", "/slow")
            except ShopError as exc:
                assert type(exc).__name__ == "DependencyTimeout"
            waited = time.monotonic() - started
            in_use_after_deadline = pool.accounting.in_use
            release.set()
            await asyncio.wait_for(answered.wait(), timeout=5.0)
            deadline = time.monotonic() + 5.0
            while upstream._outliving and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            return in_use_after_deadline, len(upstream._outliving), waited
        finally:
            await client.aclose()
            server.close()

    in_use, left, waited = asyncio.run(scenario())
    assert waited < 1.0  # the deadline (0.1 s), not the attempt timeout (5 s)
    assert in_use == 0
    assert left == 0  # the request the caller left ended when the answer came
