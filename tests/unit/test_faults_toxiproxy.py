"""Unit tests for the Toxiproxy client (over httpx.MockTransport) and the in-memory fake."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from resilience.errors import FaultError
from resilience.faults.toxiproxy import (
    Toxic,
    ToxiproxyApi,
    ToxiproxyClient,
    ToxiproxyConflict,
    ToxiproxyError,
    ToxiproxyNotFound,
)
from resilience.testing.toxiproxy_fake import FakeToxiproxy

Handler = Callable[[httpx.Request], httpx.Response]

PROXY_JSON: dict[str, Any] = {
    "name": "db",
    "listen": "127.0.0.1:25432",
    "upstream": "127.0.0.1:15432",
    "enabled": True,
    "toxics": [
        {
            "name": "resilience-0-latency",
            "type": "latency",
            "stream": "downstream",
            "toxicity": 1,
            "attributes": {"latency": 100, "jitter": 0},
        }
    ],
}


def client_with(
    handler: Handler, *, retries: int = 2
) -> tuple[ToxiproxyClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = ToxiproxyClient(
        "http://toxiproxy.test",
        transport=httpx.MockTransport(record),
        retries=retries,
        sleep=lambda s: None,
    )
    return client, seen


def error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, text=json.dumps({"error": message, "status": status}))


def test_every_call_has_a_connect_and_total_timeout() -> None:
    """The httpx client is built with a 1 s connect timeout and a ~3 s total."""
    client = ToxiproxyClient()
    timeout = client._http.timeout
    assert timeout.connect == 1.0
    assert timeout.read == 3.0 and timeout.write == 3.0 and timeout.pool == 3.0
    client.close()


def test_proxies_are_parsed_into_typed_results() -> None:
    """GET /proxies becomes Proxy objects carrying their Toxic objects."""
    client, _ = client_with(lambda r: httpx.Response(200, json={"db": PROXY_JSON}))
    proxies = client.proxies()
    assert set(proxies) == {"db"}
    proxy = proxies["db"]
    assert proxy.enabled and proxy.upstream == "127.0.0.1:15432"
    assert proxy.toxics == (
        Toxic("resilience-0-latency", "latency", "downstream", 1.0, {"latency": 100, "jitter": 0}),
    )


def test_add_toxic_accepts_200_and_sends_the_full_toxic() -> None:
    """Toxiproxy answers 200 (not 201) on toxic creation; the body has every field."""
    toxic = Toxic("resilience-1-timeout", "timeout", "upstream", 0.5, {"timeout": 0})

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=json.loads(request.content))

    client, seen = client_with(handler)
    assert client.add_toxic("db", toxic) == toxic
    assert seen[0].method == "POST" and seen[0].url.path == "/proxies/db/toxics"
    assert json.loads(seen[0].content) == {
        "name": "resilience-1-timeout",
        "type": "timeout",
        "stream": "upstream",
        "toxicity": 0.5,
        "attributes": {"timeout": 0},
    }


def test_create_proxy_accepts_201_and_409_is_a_conflict() -> None:
    """Proxy creation answers 201; a duplicate answers 409, raised as ToxiproxyConflict."""
    answers = iter(
        [httpx.Response(201, json={**PROXY_JSON, "toxics": []}), error(409, "proxy already exists")]
    )
    client, _ = client_with(lambda r: next(answers))
    assert client.create_proxy("db", "127.0.0.1:25432", "127.0.0.1:15432").name == "db"
    with pytest.raises(ToxiproxyConflict) as info:
        client.create_proxy("db", "127.0.0.1:25432", "127.0.0.1:15432")
    assert info.value.status == 409
    assert "proxy already exists" in str(info.value)


def test_unknown_attribute_is_refused_before_anything_is_sent() -> None:
    """Toxiproxy would ignore 'latncy'; the client refuses it and never calls the server."""
    client, seen = client_with(lambda r: httpx.Response(200, json={}))
    with pytest.raises(FaultError, match="unknown attribute 'latncy'"):
        client.add_toxic("db", Toxic("resilience-0-latency", "latency", attributes={"latncy": 5}))
    with pytest.raises(FaultError, match="must be an integer"):
        bad: Any = {"latency": 5.5}
        client.add_toxic("db", Toxic("resilience-0-latency", "latency", attributes=bad))
    with pytest.raises(FaultError, match="unknown toxic type"):
        client.add_toxic("db", Toxic("x", "corrupt"))
    with pytest.raises(FaultError, match="toxicity"):
        client.add_toxic("db", Toxic("x", "latency", toxicity=2.0))
    assert seen == []


def test_update_toxic_checks_names_against_the_type_and_sends_only_changes() -> None:
    """update_toxic PATCHes only the given fields, after checking names for the type."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        return httpx.Response(200, json={**PROXY_JSON["toxics"][0], **body})

    client, seen = client_with(handler)
    with pytest.raises(FaultError, match="unknown attribute 'rate'"):
        client.update_toxic("db", "t", attributes={"rate": 1}, toxic_type="latency")
    assert seen == []
    client.update_toxic("db", "t", attributes={"latency": 300}, toxic_type="latency")
    client.update_toxic("db", "t", toxicity=0.2)
    assert [r.method for r in seen] == ["PATCH", "PATCH"]
    assert json.loads(seen[0].content) == {"attributes": {"latency": 300}}
    assert json.loads(seen[1].content) == {"toxicity": 0.2}


def test_update_toxic_without_type_reads_the_toxic_first() -> None:
    """Without toxic_type the client GETs the toxic to learn its type before checking."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=PROXY_JSON["toxics"][0])

    client, seen = client_with(handler)
    with pytest.raises(FaultError, match="unknown attribute 'timeout'"):
        client.update_toxic("db", "resilience-0-latency", attributes={"timeout": 1})
    assert [r.method for r in seen] == ["GET"]


def test_remove_toxic_treats_404_as_already_gone() -> None:
    """A 404 on delete means the toxic is gone: success (False), not an error."""
    answers = iter([httpx.Response(204), error(404, "toxic not found")])
    client, _ = client_with(lambda r: next(answers))
    assert client.remove_toxic("db", "t") is True
    assert client.remove_toxic("db", "t") is False


def test_server_errors_are_retried_a_bounded_number_of_times() -> None:
    """5xx answers are retried (retries + 1 attempts in all) and then raised with context."""
    client, seen = client_with(lambda r: error(503, "busy"), retries=2)
    with pytest.raises(ToxiproxyError) as info:
        client.remove_toxic("db", "resilience-0-hang")
    assert len(seen) == 3
    message = str(info.value)
    assert "remove toxic 'resilience-0-hang' from proxy 'db'" in message
    assert "DELETE http://toxiproxy.test/proxies/db/toxics/resilience-0-hang" in message
    assert "busy" in message
    assert info.value.status == 503


def test_transport_errors_are_retried_then_succeed() -> None:
    """A stalled delete (read timeout) is retried, and the retry's answer counts."""
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ReadTimeout("stalled", request=request)
        return httpx.Response(204)

    client, _ = client_with(handler)
    assert client.remove_toxic("db", "t") is True
    assert calls["n"] == 2


def test_connection_refused_becomes_fault_error_with_endpoint() -> None:
    """When nothing listens, the error is a FaultError naming the endpoint and the action."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    client, seen = client_with(handler, retries=1)
    with pytest.raises(FaultError) as info:
        client.set_enabled("db", False)
    assert len(seen) == 2
    assert "disable proxy 'db'" in str(info.value)
    assert "PATCH http://toxiproxy.test/proxies/db" in str(info.value)
    assert "ConnectError" in str(info.value)


def test_retried_create_that_landed_is_accepted() -> None:
    """A POST whose first attempt landed but timed out gets 409 on retry: read back, accept."""
    toxic = Toxic("resilience-0-hang", "timeout", attributes={"timeout": 0})
    state = {"posts": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            state["posts"] += 1
            if state["posts"] == 1:
                raise httpx.ReadTimeout("lost answer", request=request)
            return error(409, "toxic already exists")
        return httpx.Response(200, json=toxic.to_json())

    client, seen = client_with(handler)
    assert client.add_toxic("db", toxic) == toxic
    assert [r.method for r in seen] == ["POST", "POST", "GET"]


def test_first_attempt_conflict_is_an_error() -> None:
    """A 409 on the first attempt is someone else's toxic: raised, not adopted."""
    client, _ = client_with(lambda r: error(409, "toxic already exists"))
    with pytest.raises(ToxiproxyConflict):
        client.add_toxic("db", Toxic("resilience-0-hang", "timeout", attributes={"timeout": 0}))


def test_not_json_answer_is_reported() -> None:
    """An answer that is not JSON is a ToxiproxyError, not a ValueError."""
    client, _ = client_with(lambda r: httpx.Response(200, text="<html>"))
    with pytest.raises(ToxiproxyError, match="not JSON"):
        client.proxies()


def test_proxy_404_is_not_found() -> None:
    """An unknown proxy raises ToxiproxyNotFound (a FaultError)."""
    client, _ = client_with(lambda r: error(404, "proxy not found"))
    with pytest.raises(ToxiproxyNotFound, match="proxy not found"):
        client.proxy("nope")


def test_ensure_proxy_creates_when_missing_and_is_idempotent() -> None:
    """ensure_proxy creates a missing proxy and leaves a matching one untouched."""
    store: dict[str, dict[str, object]] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            name = request.url.path.rsplit("/", 1)[1]
            if name not in store:
                return error(404, "proxy not found")
            return httpx.Response(200, json=store[name])
        if request.method == "POST":
            body = json.loads(request.content)
            store[body["name"]] = {**body, "toxics": []}
            return httpx.Response(201, json=store[body["name"]])
        return error(500, "unexpected")

    client, seen = client_with(handler)
    first = client.ensure_proxy("db", "127.0.0.1:25432", "127.0.0.1:15432")
    second = client.ensure_proxy("db", "127.0.0.1:25432", "127.0.0.1:15432")
    assert first == second
    assert [r.method for r in seen] == ["GET", "POST", "GET"]


def test_fake_behaves_like_the_real_api() -> None:
    """The fake raises 409 on duplicates, 404 on unknowns, merges updates, resets."""
    fake: ToxiproxyApi = FakeToxiproxy()
    fake.create_proxy("db", "127.0.0.1:1", "127.0.0.1:2")
    with pytest.raises(ToxiproxyConflict):
        fake.create_proxy("db", "127.0.0.1:1", "127.0.0.1:2")
    with pytest.raises(ToxiproxyNotFound):
        fake.proxy("nope")
    with pytest.raises(ToxiproxyNotFound):
        fake.add_toxic("nope", Toxic("t", "latency", attributes={"latency": 1}))
    fake.add_toxic("db", Toxic("t", "latency", attributes={"latency": 1, "jitter": 0}))
    with pytest.raises(ToxiproxyConflict):
        fake.add_toxic("db", Toxic("t", "latency", attributes={"latency": 1}))
    with pytest.raises(FaultError, match="unknown attribute"):
        fake.add_toxic("db", Toxic("u", "latency", attributes={"lat": 1}))
    updated = fake.update_toxic("db", "t", attributes={"jitter": 5})
    assert updated.attributes == {"latency": 1, "jitter": 5}
    with pytest.raises(ToxiproxyNotFound):
        fake.update_toxic("db", "missing", toxicity=0.5)
    fake.set_enabled("db", False)
    assert fake.remove_toxic("db", "t") is True
    assert fake.remove_toxic("db", "t") is False
    assert fake.remove_toxic("gone", "t") is False
    fake.add_toxic("db", Toxic("v", "timeout", attributes={"timeout": 0}))
    fake.reset()
    proxy = fake.proxy("db")
    assert proxy.enabled and proxy.toxics == ()
    assert fake.version() == "git"


def test_fake_failure_injection_hits_only_matching_calls() -> None:
    """fail_on makes the chosen calls raise a 503 ToxiproxyError, the given number of times."""
    fake = FakeToxiproxy()
    fake.create_proxy("db", "a", "b")
    fake.fail_on("set_enabled", times=1, when=lambda args: args[1] is True)
    fake.set_enabled("db", False)
    with pytest.raises(ToxiproxyError) as info:
        fake.set_enabled("db", True)
    assert info.value.status == 503
    assert fake.set_enabled("db", True).enabled
