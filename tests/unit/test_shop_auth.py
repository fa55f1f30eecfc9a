"""The gateway's login (option auth_login), in process: the token store with a fake clock, the
form parsing, and every gateway route behind the bearer check."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from resilience.shop.app import build_app
from resilience.shop.auth import AuthProblem, TokenStore, parse_login_form
from resilience.shop.settings import settings_from_env

FORM = {"content-type": "application/x-www-form-urlencoded"}
CREDENTIALS = {"username": "shopper", "password": "s3cret"}
UNPROTECTED = {"/health", "/metrics", "/login"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port nobody listens on while the test runs (bound, never listening: refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def gateway_env(closed_port: int, **options: str) -> dict[str, str]:
    env = {
        "SHOP_SERVICE": "gateway",
        "SHOP_MODE": "hardened",
        "SHOP_PORT": "8200",
        "SHOP_CATALOG_URL": f"http://127.0.0.1:{closed_port}",
        "SHOP_ORDERS_URL": f"http://127.0.0.1:{closed_port}",
    }
    env.update({f"SHOP_OPT_{name.upper()}": value for name, value in options.items()})
    return env


@asynccontextmanager
async def client_of(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
        yield client


def run(app: FastAPI, body: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    """Run ``body`` with a client of ``app`` on one event loop."""

    async def main() -> None:
        async with client_of(app) as client:
            await body(client)

    asyncio.run(main())


def login_app(closed_port: int, **options: str) -> FastAPI:
    return build_app(settings_from_env(gateway_env(closed_port, auth_login="true", **options)))


async def login(client: httpx.AsyncClient) -> str:
    response = await client.post("/login", data=CREDENTIALS)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert isinstance(token, str)
    return token


def business_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, concrete path) of every gateway route but /health, /metrics and /login."""
    routes = []
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path not in UNPROTECTED:
            path = route.path.replace("{item_id}", "3").replace("{order_id}", "7")
            routes.extend((method, path) for method in sorted(route.methods))
    return routes


# -- the token store -----------------------------------------------------------------


def test_login_hands_out_distinct_random_tokens_that_check() -> None:
    """Each login gets a new token of 32 random bytes; each one is accepted."""
    store = TokenStore("shopper", "s3cret", None)
    first, second = store.login("shopper", "s3cret"), store.login("shopper", "s3cret")
    assert first.access_token != second.access_token
    assert len(first.access_token) >= 43  # 32 bytes, URL-safe base64
    store.check(f"Bearer {first.access_token}")
    store.check(f"bearer {second.access_token}")  # the scheme is case-insensitive
    assert first.to_json() == {"access_token": first.access_token, "token_type": "bearer"}


@pytest.mark.parametrize(("user", "password"), [("shopper", "wrong"), ("admin", "s3cret")])
def test_bad_credentials_are_401(user: str, password: str) -> None:
    """A wrong user or password is refused with 401 InvalidCredentials and a Bearer challenge."""
    with pytest.raises(AuthProblem) as caught:
        TokenStore("shopper", "s3cret", None).login(user, password)
    assert caught.value.status == 401
    assert caught.value.error_type == "InvalidCredentials"
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_expires_after_its_ttl() -> None:
    """With a TTL a token checks until TTL seconds have passed, then is refused (and forgotten)."""
    clock = FakeClock()
    store = TokenStore("shopper", "s3cret", 60.0, clock=clock)
    token = store.login("shopper", "s3cret")
    assert token.to_json()["expires_in"] == 60
    clock.now += 59.9
    store.check(f"Bearer {token.access_token}")
    clock.now += 0.1
    with pytest.raises(AuthProblem, match="expired") as caught:
        store.check(f"Bearer {token.access_token}")
    assert 'error="invalid_token"' in caught.value.headers["WWW-Authenticate"]
    assert len(store) == 0


def test_expired_tokens_are_dropped_at_the_next_login() -> None:
    """Logins prune expired tokens, so a TTL bounds the store's size."""
    clock = FakeClock()
    store = TokenStore("shopper", "s3cret", 10.0, clock=clock)
    for _ in range(5):
        store.login("shopper", "s3cret")
    clock.now += 11
    store.login("shopper", "s3cret")
    assert len(store) == 1


@pytest.mark.parametrize(
    ("header", "error_type", "bearer_error"),
    [
        (None, "Unauthorized", None),
        ("", "Unauthorized", None),
        ("Basic c2hvcHBlcjpzM2NyZXQ=", "Unauthorized", "invalid_request"),
        ("Bearer", "Unauthorized", "invalid_request"),
        ("Bearer not-a-token-we-issued", "InvalidToken", "invalid_token"),
    ],
)
def test_missing_or_bad_authorization_is_401(
    header: str | None, error_type: str, bearer_error: str | None
) -> None:
    """No header, another scheme, no token or an unknown token: 401 with a Bearer challenge."""
    store = TokenStore("shopper", "s3cret", None)
    store.login("shopper", "s3cret")
    with pytest.raises(AuthProblem) as caught:
        store.check(header)
    assert caught.value.status == 401
    assert caught.value.error_type == error_type
    challenge = caught.value.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="shop"')
    assert (f'error="{bearer_error}"' in challenge) if bearer_error else ("error=" not in challenge)


# -- the form ------------------------------------------------------------------------


def test_form_parsing_decodes_percent_encoding_and_accepts_the_password_grant() -> None:
    """username/password are percent-decoded; grant_type=password is accepted."""
    body = b"grant_type=password&username=sh%C3%B6pper&password=a%26b%3Dc+d"
    assert parse_login_form(body) == ("shöpper", "a&b=c d")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "needs username and password (got fields: none)"),
        (b"username=shopper", "needs password (got fields: username)"),
        (b"username=&password=x", "needs username"),
        (b"username=a&password=b&grant_type=client_credentials", "grant_type must be 'password'"),
        ("username=shöpper&password=x".encode(), "ASCII"),
    ],
)
def test_bad_forms_are_422_naming_the_problem(body: bytes, needle: str) -> None:
    """A form without its fields, with another grant or raw non-ASCII bytes is 422."""
    with pytest.raises(AuthProblem) as caught:
        parse_login_form(body)
    assert caught.value.status == 422
    assert needle in caught.value.detail


# -- the gateway -----------------------------------------------------------------------


def test_login_answers_a_bearer_token_that_opens_every_endpoint(closed_port: int) -> None:
    """POST /login gives 200 {access_token, token_type, expires_in}; the token passes the
    check on every business route (the upstreams are down here, so they answer 5xx, not 401)."""
    app = login_app(closed_port)
    routes = business_routes(app)
    assert {path for _, path in routes} == {
        "/catalog/items", "/catalog/items/3", "/orders", "/orders/ids", "/orders/7",
    }  # fmt: skip

    async def body(client: httpx.AsyncClient) -> None:
        response = await client.post("/login", data=CREDENTIALS)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        token = response.json()
        assert set(token) == {"access_token", "token_type", "expires_in"}
        assert token["token_type"] == "bearer"
        assert token["expires_in"] == 86400
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        for method, path in routes:
            answer = await client.request(method, path, headers=headers, json={})
            assert answer.status_code >= 500, (method, path, answer.status_code, answer.text)
            assert answer.json()["error"] in ("ConnectionError", "CircuitOpen"), answer.text

    run(app, body)


def test_every_endpoint_but_health_and_metrics_wants_a_token(closed_port: int) -> None:
    """Without a token, or with one the gateway did not issue, every business route is 401."""
    app = login_app(closed_port)

    async def body(client: httpx.AsyncClient) -> None:
        await login(client)
        for headers in ({}, {"Authorization": "Bearer forged"}):
            for method, path in business_routes(app):
                answer = await client.request(method, path, headers=headers, json={})
                assert answer.status_code == 401, (method, path, headers)
                assert answer.headers["www-authenticate"].startswith("Bearer")
                assert answer.json()["error"] in ("Unauthorized", "InvalidToken")
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200

    run(app, body)


def test_login_refuses_bad_credentials_wrong_types_and_big_bodies(closed_port: int) -> None:
    """Bad credentials 401; JSON or no content type 415 naming the form type; >4 KB 413;
    a missing field 422."""
    app = login_app(closed_port)

    async def body(client: httpx.AsyncClient) -> None:
        bad = await client.post("/login", data={"username": "shopper", "password": "nope"})
        assert bad.status_code == 401
        assert bad.json()["error"] == "InvalidCredentials"
        assert bad.headers["www-authenticate"].startswith("Bearer")

        as_json = await client.post("/login", json=CREDENTIALS)
        assert as_json.status_code == 415
        assert "application/x-www-form-urlencoded" in as_json.json()["detail"]
        assert "'application/json'" in as_json.json()["detail"]
        bare = await client.post("/login", content=b"username=shopper&password=s3cret")
        assert bare.status_code == 415

        huge = await client.post("/login", content=b"x" * 5000, headers=FORM)
        assert huge.status_code == 413
        missing = await client.post("/login", data={"username": "shopper"})
        assert missing.status_code == 422
        assert "password" in missing.json()["detail"]

    run(app, body)


def test_configured_user_and_ttl_none(closed_port: int) -> None:
    """auth_username/auth_password replace the demo user; with TTL none expires_in is absent."""
    app = login_app(
        closed_port, auth_username="alice", auth_password="pw", auth_token_ttl_seconds="none"
    )

    async def body(client: httpx.AsyncClient) -> None:
        old = await client.post("/login", data=CREDENTIALS)
        assert old.status_code == 401
        new = await client.post("/login", data={"username": "alice", "password": "pw"})
        assert new.status_code == 200
        assert set(new.json()) == {"access_token", "token_type"}
        health = (await client.get("/health")).json()
        assert health["options"]["auth_password"] == "**********"

    run(app, body)


def test_without_the_option_there_is_no_login_and_no_check(closed_port: int) -> None:
    """Default options: /login does not exist and routes need no token (today's behaviour)."""
    app = build_app(settings_from_env(gateway_env(closed_port)))
    assert all(getattr(r, "path", "") != "/login" for r in app.routes)

    async def body(client: httpx.AsyncClient) -> None:
        assert (await client.post("/login", data=CREDENTIALS)).status_code == 404
        answer = await client.get("/catalog/items")
        assert answer.status_code >= 500  # upstream down, but no 401

    run(app, body)
