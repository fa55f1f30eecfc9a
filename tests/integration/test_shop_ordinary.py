"""The shop as an ordinary third-party service, on the real session stack: a login in front of
the gateway (auth_login), no traces at all (tracing: false) and /metrics on ports of their
own that Prometheus follows (separate_metrics_port).

The module's tests share one restart into the options (fragile + ``OPTIONS``) and one back
to the session's default at the end (in file order: the tracing test's control needs the
default shop, so it comes first).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from tests.integration.conftest import StackHandle

pytestmark = pytest.mark.integration

T = TypeVar("T")

OPTIONS = {
    "auth_login": "true",
    "auth_username": "shopper",
    "auth_password": "s3cret",
    "tracing": "false",
    "separate_metrics_port": "true",
}
SHOP = ("gateway", "orders", "catalog")
CREDENTIALS = {"username": "shopper", "password": "s3cret"}


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 20.0) -> T:
    """Poll ``probe`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        yield client


@pytest.fixture(scope="module")
def _restore_default_shop(stack: StackHandle) -> Iterator[None]:
    """Puts the session's default shop (fragile, default options) back after the module."""
    yield
    stack.stack.up(shop_mode="fragile")


@pytest.fixture
def ordinary_shop(stack: StackHandle, _restore_default_shop: None) -> StackHandle:
    """The stack with the shop fragile + OPTIONS (restarted only when it runs otherwise)."""
    stack.stack.up(shop_mode="fragile", shop_options=OPTIONS)
    return stack


def login(http: httpx.Client, handle: StackHandle) -> dict[str, str]:
    """Log in as the demo user; the Authorization header to send."""
    response = http.post(f"{handle.gateway_url}/login", data=CREDENTIALS)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


# -- no traces -----------------------------------------------------------------------------


def _traceparent(trace_id: str) -> dict[str, str]:
    return {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}


def _trace_found(http: httpx.Client, handle: StackHandle, trace_id: str) -> bool:
    response = http.get(f"{handle.jaeger_query_url}/api/v3/traces/{trace_id}")
    return response.status_code == 200 and bool(response.json()["result"]["resourceSpans"])


def _shop_spans_since(http: httpx.Client, handle: StackHandle, since: float) -> list[str]:
    """Trace ids Jaeger holds from any shop service with spans that started after ``since``."""
    found = []
    for service in SHOP:
        response = http.get(
            f"{handle.jaeger_query_url}/api/traces",
            params={
                "service": f"shop-{service}",
                "start": int(since * 1e6),
                "end": int(time.time() * 1e6) + 1_000_000,
                "limit": 100,
            },
        )
        assert response.status_code == 200, response.text
        found += [trace["traceID"] for trace in response.json().get("data") or []]
    return found


def test_with_tracing_off_jaeger_receives_no_spans_from_the_shop(
    stack: StackHandle, _restore_default_shop: None, http: httpx.Client
) -> None:
    """Control first: the default shop's trace reaches Jaeger within T. Then, tracing off:
    requests with a sampled traceparent (and without) are served, and in 3 T (at least 5 s)
    Jaeger gets no span from any shop service."""
    stack.stack.up(shop_mode="fragile")  # tracing on (the default)
    control = secrets.token_hex(16)
    control_since = time.time()
    sent = time.monotonic()
    assert http.get(f"{stack.gateway_url}/catalog/items/1", headers=_traceparent(control))
    wait_for("the control trace in jaeger", lambda: _trace_found(http, stack, control), 30.0)
    control_seconds = time.monotonic() - sent
    # The search below does find shop spans when there are some.
    assert control in _shop_spans_since(http, stack, control_since)

    stack.stack.up(shop_mode="fragile", shop_options=OPTIONS)
    for service in SHOP:
        health = http.get(f"{stack.url(service)}/health").json()
        assert health["options"]["tracing"] is False, service
    since = time.time()
    auth = login(http, stack)
    trace_ids = [secrets.token_hex(16) for _ in range(3)]
    for trace_id in trace_ids:
        headers = {**auth, **_traceparent(trace_id)}
        order = http.post(
            f"{stack.gateway_url}/orders", json={"item_id": 2, "quantity": 1}, headers=headers
        )
        assert order.status_code == 201, order.text
        assert http.get(f"{stack.gateway_url}/catalog/items/2", headers=headers).is_success
    # A malformed traceparent is ignored like a well-formed one.
    odd = http.get(f"{stack.gateway_url}/catalog/items", headers={**auth, "traceparent": "x-y"})
    assert odd.status_code == 200

    window = max(3 * control_seconds, 5.0)
    deadline = time.monotonic() + window
    while time.monotonic() < deadline:
        assert not [t for t in trace_ids if _trace_found(http, stack, t)]
        assert _shop_spans_since(http, stack, since) == []
        time.sleep(0.5)


# -- the login -------------------------------------------------------------------------


def test_login_returns_a_bearer_token(ordinary_shop: StackHandle, http: httpx.Client) -> None:
    """POST /login with the form answers 200 {access_token, token_type: bearer, expires_in}."""
    response = http.post(f"{ordinary_shop.gateway_url}/login", data=CREDENTIALS)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 86400
    assert len(body["access_token"]) >= 43
    again = http.post(f"{ordinary_shop.gateway_url}/login", data=CREDENTIALS).json()
    assert again["access_token"] != body["access_token"]


def test_the_token_works_on_every_endpoint_read_backs_included(
    ordinary_shop: StackHandle, http: httpx.Client
) -> None:
    """With the token: catalog reads, an order write (201) and its read-backs (by id, in the
    ids list, in the paged list) all answer as without the option."""
    url = ordinary_shop.gateway_url
    auth = login(http, ordinary_shop)
    assert http.get(f"{url}/catalog/items", headers=auth).json()["count"] == 50
    assert http.get(f"{url}/catalog/items/3", headers=auth).json()["id"] == 3
    ref = secrets.token_hex(8)
    created = http.post(
        f"{url}/orders", json={"item_id": 3, "quantity": 2, "client_ref": ref}, headers=auth
    )
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    read = http.get(f"{url}/orders/{order_id}", headers=auth)
    assert read.status_code == 200
    assert read.json()["client_ref"] == ref
    assert order_id in http.get(f"{url}/orders/ids", headers=auth).json()["ids"]
    page = http.get(f"{url}/orders", params={"after_id": order_id - 1, "limit": 1}, headers=auth)
    assert [o["id"] for o in page.json()["orders"]] == [order_id]


def test_every_endpoint_is_401_without_or_with_a_bad_token(
    ordinary_shop: StackHandle, http: httpx.Client
) -> None:
    """No token, a forged token or a Basic header: 401 with a Bearer challenge on every
    business endpoint; /health stays open."""
    url = ordinary_shop.gateway_url
    login(http, ordinary_shop)  # a token exists, but none of these requests carries it
    endpoints = [
        ("GET", "/catalog/items"),
        ("GET", "/catalog/items/3"),
        ("POST", "/orders"),
        ("GET", "/orders/1"),
        ("GET", "/orders/ids"),
        ("GET", "/orders"),
    ]
    bad_headers: list[dict[str, str]] = [
        {},
        {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"},
        {"Authorization": "Basic c2hvcHBlcjpzM2NyZXQ="},
    ]
    for headers in bad_headers:
        for method, path in endpoints:
            body: dict[str, Any] | None = (
                {"item_id": 1, "quantity": 1} if method == "POST" else None
            )
            response = http.request(method, f"{url}{path}", headers=headers, json=body)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
    assert http.get(f"{url}/health").status_code == 200


def test_bad_credentials_and_a_json_login_are_refused(
    ordinary_shop: StackHandle, http: httpx.Client
) -> None:
    """A wrong password is 401; the right credentials sent as JSON are 415 naming the form."""
    url = ordinary_shop.gateway_url
    wrong = http.post(f"{url}/login", data={"username": "shopper", "password": "guess"})
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "InvalidCredentials"
    as_json = http.post(f"{url}/login", json=CREDENTIALS)
    assert as_json.status_code == 415
    assert "application/x-www-form-urlencoded" in as_json.json()["detail"]


# -- metrics on their own ports ------------------------------------------------------------


def _scrape_targets(http: httpx.Client, handle: StackHandle) -> dict[str, tuple[str, str]]:
    """job -> (scrape URL, health) of Prometheus' active targets."""
    data = http.get(f"{handle.prometheus_url}/api/v1/targets").raise_for_status().json()
    return {
        t["labels"]["job"]: (t["scrapeUrl"], t["health"]) for t in data["data"]["activeTargets"]
    }


def _scraped_on(
    http: httpx.Client, handle: StackHandle, port_of: Callable[[str], int]
) -> dict[str, tuple[str, str]] | None:
    targets = _scrape_targets(http, handle)
    wanted = {s: (f"http://127.0.0.1:{port_of(s)}/metrics", "up") for s in SHOP}
    return targets if all(targets.get(s) == wanted[s] for s in SHOP) else None


def _query(http: httpx.Client, handle: StackHandle, promql: str) -> list[dict[str, Any]]:
    response = http.get(f"{handle.prometheus_url}/api/v1/query", params={"query": promql})
    result: list[dict[str, Any]] = response.raise_for_status().json()["data"]["result"]
    return result


def test_metrics_answer_on_their_own_port_and_prometheus_scrapes_them(
    ordinary_shop: StackHandle, http: httpx.Client
) -> None:
    """/metrics answers on each service's metrics port and 404 on its app port; Prometheus
    scrapes the metrics ports (up == 1, same job names) and has the shop's request metrics."""
    ports = ordinary_shop.config.ports
    for service in SHOP:
        metrics_port = getattr(ports, f"{service}_metrics")
        metrics = http.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert metrics.status_code == 200, service
        assert f'service="{service}"' in metrics.text
        assert http.get(f"{ordinary_shop.url(service)}/metrics").status_code == 404, service

    wait_for(
        "prometheus scraping the metrics ports",
        lambda: _scraped_on(http, ordinary_shop, lambda s: getattr(ports, f"{s}_metrics")),
    )
    auth = login(http, ordinary_shop)
    assert http.get(f"{ordinary_shop.gateway_url}/catalog/items", headers=auth).is_success
    up = wait_for(
        "up{job=gateway} on the metrics port",
        lambda: _query(http, ordinary_shop, 'up{job="gateway"} == 1'),
    )
    assert [r["metric"]["instance"] for r in up] == [f"127.0.0.1:{ports.gateway_metrics}"]
    wait_for(
        "the gateway's request metric by job",
        lambda: _query(
            http,
            ordinary_shop,
            'shop_http_request_duration_seconds_count{job="gateway",route="/catalog/items"}',
        ),
    )


def test_without_the_option_prometheus_scrapes_the_app_ports_again(
    stack: StackHandle, _restore_default_shop: None, http: httpx.Client
) -> None:
    """Back to default options: the metrics ports are closed, /metrics is on the app ports
    again and Prometheus (reloaded) scrapes those, every target up."""
    stack.stack.up(shop_mode="fragile", shop_options=OPTIONS)
    stack.stack.up(shop_mode="fragile")
    ports = stack.config.ports
    for service in SHOP:
        assert http.get(f"{stack.url(service)}/metrics").status_code == 200
        with pytest.raises(httpx.ConnectError):
            http.get(f"http://127.0.0.1:{getattr(ports, f'{service}_metrics')}/metrics")
    wait_for(
        "prometheus scraping the app ports",
        lambda: _scraped_on(http, stack, lambda s: int(getattr(ports, s))),
    )
