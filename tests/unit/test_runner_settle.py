"""A run waits (bounded) for the built-in shop to settle: not while orders is still in a
reconnect pause left by an earlier fault (runner/target.py, ``wait_for_settled_shop``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from resilience.runner.target import wait_for_settled_shop
from resilience.stack import Ports, StackConfig, StackPaths
from resilience.testing.loopback import LoopbackServer, QuietHandler
from resilience.vocabulary import FakeClock

OFFSET = 2290  # orders on 10291: outside the ephemeral range, unused by other tests


class Health:
    """An orders /health on loopback that says it reconnects for its first ``busy`` calls."""

    def __init__(self, port: int, busy: int, body: bytes | None = None) -> None:
        self.busy = busy
        self.calls = 0
        self.body = body
        health = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                health.calls += 1
                payload = (
                    health.body
                    or json.dumps(
                        {"status": "ok", "db_reconnecting": health.calls <= health.busy}
                    ).encode()
                )
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = LoopbackServer(Handler, port)
        self.port = self.server.port

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def make(tmp_path: Path) -> Iterator[object]:
    servers: list[Health] = []

    def build(busy: int, body: bytes | None = None) -> tuple[Health, StackConfig]:
        ports = Ports().shifted(OFFSET)
        health = Health(ports.orders, busy, body)
        servers.append(health)
        config = StackConfig(
            paths=StackPaths(home=tmp_path / "home", state=tmp_path / "state"), ports=ports
        )
        return health, config

    yield build
    for server in servers:
        server.close()


def test_a_settled_shop_is_not_waited_for(make) -> None:  # type: ignore[no-untyped-def]
    health, config = make(busy=0)
    said: list[str] = []
    clock = FakeClock()
    assert wait_for_settled_shop(config, said.append, clock=clock) == 0.0
    assert health.calls == 1 and said == []


def test_a_reconnecting_shop_is_waited_for_and_said(make) -> None:  # type: ignore[no-untyped-def]
    health, config = make(busy=5)
    said: list[str] = []
    clock = FakeClock()
    waited = wait_for_settled_shop(config, said.append, clock=clock)
    assert health.calls == 6
    assert waited == pytest.approx(1.0)
    assert "orders is reconnecting to its database" in said[0]
    assert said[-1] == "orders reconnected after 1.0s"


def test_the_wait_is_bounded(make) -> None:  # type: ignore[no-untyped-def]
    _health, config = make(busy=10_000)
    said: list[str] = []
    clock = FakeClock()
    waited = wait_for_settled_shop(config, said.append, limit=3.0, clock=clock)
    assert 3.0 <= waited < 3.3
    assert "still reconnecting" in said[-1] and "starting anyway" in said[-1]


def test_an_answer_that_is_not_the_shops_is_not_waited_for(make) -> None:  # type: ignore[no-untyped-def]
    health, config = make(busy=0, body=b"not json")
    clock = FakeClock()
    assert wait_for_settled_shop(config, clock=clock) == 0.0
    assert health.calls == 1
