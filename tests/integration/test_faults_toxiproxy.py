"""Integration tests of the Toxiproxy client against a real toxiproxy-server (v2.12).

Each toxic type is applied and removed, and observed on traffic through a TCP echo
upstream where that is cheap: latency delays a round trip, timeout 0 hangs it, a disabled
proxy refuses, reset_peer resets, limit_data cuts, bandwidth slows.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from resilience.errors import FaultError
from resilience.faults.toxiproxy import (
    TOXIC_ATTRIBUTES,
    Toxic,
    ToxiproxyClient,
    ToxiproxyConflict,
    ToxiproxyNotFound,
)
from resilience.testing.toxiproxy_server import EchoServer, ToxiproxyServer

pytestmark = pytest.mark.integration

OFFSET = int(os.environ.get("RESILIENCE_FAULTS_TEST_OFFSET", "300"))
API_PORT = 8474 + OFFSET  # 8774
PROXY_PORT = 8475 + OFFSET  # 8775
SPARE_PROXY_PORT = 8476 + OFFSET
ECHO_PORT = 8490 + OFFSET  # 8790
STATE_DIR = Path(os.environ.get("RESILIENCE_FAULTS_TEST_STATE", "/tmp/res-faults"))


@pytest.fixture(scope="module")
def server() -> Iterator[ToxiproxyServer]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with (
        pytest.MonkeyPatch.context() as env,
        ToxiproxyServer(API_PORT, log_path=STATE_DIR / "toxiproxy-client-tests.log") as srv,
    ):
        env.setenv("RESILIENCE_PORT_OFFSET", str(OFFSET))
        env.setenv("RESILIENCE_STATE_DIR", str(STATE_DIR))
        yield srv


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    with EchoServer(ECHO_PORT) as srv:
        yield srv


@pytest.fixture
def api(server: ToxiproxyServer, echo: EchoServer) -> Iterator[ToxiproxyClient]:
    with ToxiproxyClient(server.url) as client:
        client.ensure_proxy("echo", f"127.0.0.1:{PROXY_PORT}", f"127.0.0.1:{ECHO_PORT}")
        yield client
        client.reset()


def connect(timeout: float = 2.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", PROXY_PORT), timeout=timeout)


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> tuple[bytes, float]:
    """Send and read until the echo is complete or the peer closes; return data and seconds."""
    started = time.monotonic()
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received, time.monotonic() - started


def test_version_answers(api: ToxiproxyClient) -> None:
    """/version answers a non-empty string (a source build says 'git')."""
    assert api.version()


def test_proxy_lifecycle_and_its_errors(api: ToxiproxyClient) -> None:
    """Create (201), duplicate (409), ensure (idempotent), disable, delete, unknown (404)."""
    listen, upstream = f"127.0.0.1:{SPARE_PROXY_PORT}", f"127.0.0.1:{ECHO_PORT}"
    created = api.create_proxy("spare", listen, upstream)
    assert (created.name, created.listen, created.enabled) == ("spare", listen, True)
    with pytest.raises(ToxiproxyConflict, match="already exists"):
        api.create_proxy("spare", listen, upstream)
    assert api.ensure_proxy("spare", listen, upstream) == created
    assert api.set_enabled("spare", False).enabled is False
    assert api.ensure_proxy("spare", listen, upstream).enabled is True
    assert "spare" in api.proxies()
    assert api.delete_proxy("spare") is True
    assert api.delete_proxy("spare") is False
    with pytest.raises(ToxiproxyNotFound, match="proxy not found"):
        api.proxy("spare")


SAMPLE_ATTRIBUTES: dict[str, dict[str, int]] = {
    "latency": {"latency": 10, "jitter": 1},
    "bandwidth": {"rate": 1000},
    "slow_close": {"delay": 10},
    "timeout": {"timeout": 100},
    "reset_peer": {"timeout": 0},
    "slicer": {"average_size": 64, "size_variation": 8, "delay": 10},
    "limit_data": {"bytes": 4096},
}


@pytest.mark.parametrize("toxic_type", sorted(TOXIC_ATTRIBUTES))
def test_every_toxic_type_is_applied_and_removed(api: ToxiproxyClient, toxic_type: str) -> None:
    """Each toxic type is created with exactly our attributes, listed, removed, then gone."""
    toxic = Toxic(
        f"resilience-0-{toxic_type}", toxic_type, "upstream", 0.75, SAMPLE_ATTRIBUTES[toxic_type]
    )
    added = api.add_toxic("echo", toxic)
    assert added == toxic
    assert api.toxics("echo") == [toxic]
    assert api.proxy("echo").toxics == (toxic,)
    assert api.remove_toxic("echo", toxic.name) is True
    assert api.toxics("echo") == []
    assert api.remove_toxic("echo", toxic.name) is False


def test_duplicate_toxic_is_a_conflict(api: ToxiproxyClient) -> None:
    """A second toxic with the same name is refused with 409."""
    toxic = Toxic("resilience-0-latency", "latency", attributes={"latency": 5})
    api.add_toxic("echo", toxic)
    with pytest.raises(ToxiproxyConflict, match="toxic already exists"):
        api.add_toxic("echo", toxic)


def test_update_toxic_changes_only_what_is_given(api: ToxiproxyClient) -> None:
    """PATCH keeps unspecified attributes, and toxicity can change alone."""
    api.add_toxic(
        "echo", Toxic("resilience-0-latency", "latency", attributes={"latency": 100, "jitter": 5})
    )
    updated = api.update_toxic("echo", "resilience-0-latency", attributes={"latency": 250})
    assert updated.attributes == {"latency": 250, "jitter": 5}
    updated = api.update_toxic("echo", "resilience-0-latency", toxicity=0.5)
    assert updated.toxicity == 0.5 and updated.attributes["latency"] == 250
    with pytest.raises(ToxiproxyNotFound):
        api.update_toxic("echo", "missing", toxicity=0.5)


def test_unknown_attribute_is_rejected_by_us_not_ignored(api: ToxiproxyClient) -> None:
    """Toxiproxy would accept 'latncy' and add a 0 ms latency; we refuse before sending."""
    with pytest.raises(FaultError, match="unknown attribute 'latncy'"):
        api.add_toxic("echo", Toxic("resilience-0-latency", "latency", attributes={"latncy": 500}))
    with pytest.raises(FaultError, match="unknown attribute 'rate'"):
        api.update_toxic("echo", "whatever", attributes={"rate": 1}, toxic_type="latency")
    assert api.toxics("echo") == []


def test_latency_adds_delay_to_a_round_trip(api: ToxiproxyClient) -> None:
    """A 300 ms latency toxic makes an echo round trip take at least ~300 ms, then not."""
    with connect() as sock:
        _, baseline = round_trip(sock)
        api.add_toxic("echo", Toxic("resilience-0-latency", "latency", attributes={"latency": 300}))
        data, delayed = round_trip(sock)
        assert data == b"ping"
        api.remove_toxic("echo", "resilience-0-latency")
        _, after = round_trip(sock)
    assert baseline < 0.1
    assert delayed >= 0.28
    assert after < 0.2


def test_timeout_zero_hangs_and_healing_closes_the_connection(api: ToxiproxyClient) -> None:
    """timeout 0 holds the request forever; removing the toxic closes the connection at once."""
    with connect(timeout=0.5) as sock:
        round_trip(sock)
        api.add_toxic("echo", Toxic("resilience-0-hang", "timeout", attributes={"timeout": 0}))
        with pytest.raises(TimeoutError):
            round_trip(sock)
        api.remove_toxic("echo", "resilience-0-hang")
        sock.settimeout(2.0)
        started = time.monotonic()
        try:
            closed = sock.recv(100) == b""
        except ConnectionResetError:
            closed = True
        assert closed
        assert time.monotonic() - started < 1.0


def test_disabled_proxy_refuses_and_recovers(api: ToxiproxyClient) -> None:
    """A disabled proxy refuses connections and closes open ones; enabling restores it."""
    with connect() as open_conn:
        round_trip(open_conn)
        api.set_enabled("echo", False)
        data, _ = round_trip(open_conn)
        assert data == b""
    with pytest.raises(ConnectionRefusedError):
        connect(timeout=1.0)
    api.set_enabled("echo", True)
    with connect() as sock:
        assert round_trip(sock)[0] == b"ping"


def test_reset_peer_resets_new_connections_and_closes_existing_ones(api: ToxiproxyClient) -> None:
    """reset_peer: connections opened after it get a TCP RST; older ones a plain close (EOF).

    Toxiproxy sets SO_LINGER 0 (which makes close send RST) only on links it starts
    while a reset_peer toxic exists; older links see the toxic close their stream.
    Either way the in-flight request is lost.
    """
    with connect() as old:
        round_trip(old)
        api.add_toxic(
            "echo", Toxic("resilience-0-reset_peer", "reset_peer", attributes={"timeout": 0})
        )
        data, _ = round_trip(old)
        assert data == b""
    with connect() as new, pytest.raises(ConnectionResetError):
        round_trip(new)
        round_trip(new)


def test_limit_data_closes_after_the_limit(api: ToxiproxyClient) -> None:
    """limit_data lets `bytes` through, then closes the connection."""
    api.add_toxic("echo", Toxic("resilience-0-limit_data", "limit_data", attributes={"bytes": 10}))
    with connect() as sock:
        data, _ = round_trip(sock, b"x" * 100)
    assert len(data) <= 10


def test_bandwidth_slows_a_transfer(api: ToxiproxyClient) -> None:
    """A 50 KB/s bandwidth toxic makes a 40 KB echo take well over half a second."""
    payload = b"y" * 40_000
    with connect(timeout=5) as sock:
        _, baseline = round_trip(sock, payload)
        api.add_toxic("echo", Toxic("resilience-0-bandwidth", "bandwidth", attributes={"rate": 50}))
        data, slowed = round_trip(sock, payload)
    assert data == payload
    assert baseline < 0.2
    assert slowed >= 0.5
