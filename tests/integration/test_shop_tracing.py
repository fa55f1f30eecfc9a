"""The shop's traces in a real Jaeger (v2, OTLP JSON from /api/v3/traces/<id>): a chosen
W3C trace id sent to the gateway comes back with spans from gateway, orders and the
PostgreSQL client; pool waits and timeouts are visible on spans."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.integration import _shop_harness as h

pytestmark = pytest.mark.integration

HANG = "resilience-shop-tracing-hang"
SERVER, CLIENT = 2, 3  # OTLP span kinds


@pytest.fixture(scope="module")
def infra() -> Iterator[h.Infra]:
    with h.infra() as running:
        yield running


@pytest.fixture(autouse=True)
def _healed(infra: h.Infra) -> Iterator[None]:
    infra.toxiproxy.reset()
    yield
    infra.toxiproxy.reset()


@dataclass(frozen=True)
class SpanView:
    """The parts of an OTLP JSON span these tests look at."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    status_code: int
    seconds: float

    def event_attributes(self, name: str) -> list[dict[str, Any]]:
        return [_attrs(e.get("attributes", [])) for e in self.events if e.get("name") == name]


def _value(value: dict[str, Any]) -> Any:
    for key in ("stringValue", "intValue", "doubleValue", "boolValue"):
        if key in value:
            return int(value[key]) if key == "intValue" else value[key]
    return value


def _attrs(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: _value(item.get("value", {})) for item in items}


def parse_spans(body: dict[str, Any]) -> list[SpanView]:
    spans: list[SpanView] = []
    for resource_spans in body.get("result", {}).get("resourceSpans", []):
        service = _attrs(resource_spans.get("resource", {}).get("attributes", [])).get(
            "service.name", ""
        )
        for scope in resource_spans.get("scopeSpans", []):
            for span in scope.get("spans", []):
                spans.append(
                    SpanView(
                        service=service,
                        name=span.get("name", ""),
                        kind=int(span.get("kind", 0)),
                        trace_id=span.get("traceId", "").lower(),
                        span_id=span.get("spanId", "").lower(),
                        parent_span_id=span.get("parentSpanId", "").lower(),
                        attributes=_attrs(span.get("attributes", [])),
                        events=span.get("events", []),
                        status_code=int(span.get("status", {}).get("code", 0)),
                        seconds=(
                            int(span.get("endTimeUnixNano", 0))
                            - int(span.get("startTimeUnixNano", 0))
                        )
                        / 1e9,
                    )
                )
    return spans


def fetch_trace(infra: h.Infra, trace_id: str) -> list[SpanView]:
    response = httpx.get(f"{infra.jaeger_query_url}/api/v3/traces/{trace_id}", timeout=5)
    if response.status_code != 200:
        return []
    return parse_spans(response.json())


def wait_for_trace(
    infra: h.Infra, trace_id: str, enough: Any, *, timeout: float = 20.0
) -> list[SpanView]:
    """Poll Jaeger until the trace's spans satisfy ``enough`` (export is batched)."""
    return h.wait_until(
        lambda: (spans := fetch_trace(infra, trace_id)) and enough(spans) and spans,
        timeout=timeout,
        interval=0.25,
        what=f"trace {trace_id} complete in jaeger",
    )


def traceparent(trace_id: str, parent: str, *, sampled: bool = True) -> dict[str, str]:
    return {"traceparent": f"00-{trace_id}-{parent}-{'01' if sampled else '00'}"}


def services(spans: list[SpanView]) -> set[str]:
    return {s.service for s in spans}


def has_db_span(spans: list[SpanView]) -> bool:
    return any(
        s.service == "shop-orders" and s.attributes.get("db.system") == "postgresql" for s in spans
    )


def test_a_chosen_trace_id_shows_gateway_orders_and_postgres(infra: h.Infra) -> None:
    """An order with our traceparent yields one trace: gateway, orders and PostgreSQL spans."""
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    with h.shop(infra, "hardened") as shop:
        response = httpx.post(
            f"{shop.gateway}/orders",
            json={"item_id": 4, "quantity": 1},
            headers=traceparent(trace_id, parent),
            timeout=5,
        )
        assert response.status_code == 201
        spans = wait_for_trace(
            infra,
            trace_id,
            # The gateway's server span ends last and may arrive in a later export batch
            # than its children: wait for every span the assertions below look at.
            lambda s: (
                has_db_span(s)
                and any(x.service == "shop-gateway" and x.kind == SERVER for x in s)
                and any(x.service == "shop-orders" and x.kind == SERVER for x in s)
            ),
        )

    assert {s.trace_id for s in spans} == {trace_id}
    gateway_server = [s for s in spans if s.service == "shop-gateway" and s.kind == SERVER]
    assert len(gateway_server) == 1
    assert gateway_server[0].parent_span_id == parent  # our traceparent is the parent
    assert gateway_server[0].attributes.get("http.route") == "/orders"
    assert any(s.service == "shop-gateway" and s.kind == CLIENT for s in spans)
    orders_server = [s for s in spans if s.service == "shop-orders" and s.kind == SERVER]
    assert len(orders_server) == 1
    db = [s for s in spans if s.attributes.get("db.system") == "postgresql"]
    assert db and all(s.kind == CLIENT for s in db)
    assert "INSERT" in str(db[0].attributes.get("db.statement", db[0].name))
    pools = {s.attributes.get("pool") for s in spans if s.name == "pool.acquire"}
    assert pools == {"orders", "orders-db"}


def test_an_unsampled_traceparent_is_respected(infra: h.Infra) -> None:
    """A traceparent with the sampled flag off produces no trace (ParentBased sampling)."""
    unsampled, sampled = secrets.token_hex(16), secrets.token_hex(16)
    with h.shop(infra, "hardened") as shop, httpx.Client(timeout=5) as client:
        url = f"{shop.gateway}/catalog/items/1"
        client.get(url, headers=traceparent(unsampled, secrets.token_hex(8), sampled=False))
        client.get(url, headers=traceparent(sampled, secrets.token_hex(8)))
        # Same process, same exporter, sent later: once it is in, the first would be too.
        wait_for_trace(infra, sampled, lambda s: {"shop-gateway", "shop-catalog"} <= services(s))
    assert fetch_trace(infra, unsampled) == []


def test_timeouts_are_recorded_as_timeout_errors(infra: h.Infra) -> None:
    """Under a hung database the orders spans end in error with exception type TimeoutError."""
    trace_id = secrets.token_hex(16)
    with h.shop(infra, "hardened") as shop, httpx.Client(timeout=10) as client:
        # Open connections first, so the statement (not the connect) is what times out.
        for _ in range(2):
            client.post(f"{shop.gateway}/orders", json={"item_id": 1, "quantity": 1})
        infra.toxiproxy.add_toxic("postgres", HANG, "timeout", {"timeout": 0})
        response = client.post(
            f"{shop.gateway}/orders",
            json={"item_id": 1, "quantity": 1},
            headers=traceparent(trace_id, secrets.token_hex(8)),
        )
        assert response.status_code == 504
        spans = wait_for_trace(
            infra,
            trace_id,
            lambda s: (
                any(x.service == "shop-orders" and x.kind == SERVER for x in s)
                and any(x.service == "shop-gateway" and x.kind == SERVER for x in s)
            ),
        )

    orders_server = next(s for s in spans if s.service == "shop-orders" and s.kind == SERVER)
    assert orders_server.status_code == 2  # STATUS_CODE_ERROR
    assert orders_server.attributes.get("error.type") == "TimeoutError"
    exception_types = {
        attrs.get("exception.type")
        for s in spans
        if s.service == "shop-orders"
        for attrs in s.event_attributes("exception")
    }
    assert "TimeoutError" in exception_types
    upstream = next(s for s in spans if s.name == "upstream orders")
    assert upstream.status_code == 2
