"""Starting shop processes the way the supervisor does: exit codes, startup deadline,
database creation, health contract."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.integration import _shop_harness as h

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def infra() -> Iterator[h.Infra]:
    with h.infra(jaeger=False) as running:
        yield running


def run_shop(env: dict[str, str], service: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resilience.shop", service],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=h.REPO,
    )


def test_an_invalid_option_exits_2_naming_the_variable(infra: h.Infra) -> None:
    """A bad SHOP_OPT_* value stops the process at once with exit code 2 and a clear message."""
    env = h.shop_env("orders", "hardened", infra.ports.orders, infra, tracing=False)
    env["SHOP_OPT_DB_ACQUIRE_TIMEOUT_SECONDS"] = "soon"
    done = run_shop(env, "orders", timeout=30)
    assert done.returncode == 2
    assert "SHOP_OPT_DB_ACQUIRE_TIMEOUT_SECONDS" in done.stderr
    assert "'soon'" in done.stderr


def test_an_unreachable_database_fails_start_after_its_deadline(infra: h.Infra) -> None:
    """Orders retries its first connection until the startup deadline, then exits 3."""
    env = h.shop_env("orders", "hardened", infra.ports.orders, infra, tracing=False)
    env["SHOP_DATABASE_URL"] = "postgresql://resilience@127.0.0.1:9/shop"  # nothing listens
    env["SHOP_OPT_DB_STARTUP_DEADLINE_SECONDS"] = "1.5"
    done = run_shop(env, "orders", timeout=30)
    assert done.returncode == 3, done.stderr
    assert "could not reach postgresql://resilience@127.0.0.1:9/shop" in done.stderr
    assert "database not ready (attempt 2)" in done.stderr  # it did retry


def test_orders_waits_for_a_database_that_comes_up_late(infra: h.Infra) -> None:
    """A database that appears within the startup deadline is used once it answers."""
    infra.toxiproxy.reset()
    httpx.post(
        f"{infra.toxiproxy.url}/proxies/postgres", json={"enabled": False}, timeout=5
    ).raise_for_status()
    try:
        proc = h.launch_service("orders", "hardened", infra, tracing=False)
        try:
            h.wait_until(
                lambda: "database not ready" in proc.log_tail(), timeout=20, what="a retry logged"
            )
            assert proc.alive()
            infra.toxiproxy.reset()
            h.wait_healthy(proc, f"http://127.0.0.1:{infra.ports.orders}", timeout=20)
        finally:
            proc.stop()
    finally:
        infra.toxiproxy.reset()


def test_orders_creates_a_missing_database(infra: h.Infra) -> None:
    """A database named in SHOP_DATABASE_URL that does not exist yet is created and migrated."""
    name = f"shop_test_{secrets.token_hex(4)}"
    env = h.shop_env("orders", "fragile", infra.ports.orders, infra, tracing=False)
    env["SHOP_DATABASE_URL"] = f"postgresql://resilience@127.0.0.1:{infra.ports.postgres}/{name}"
    proc = h.spawn(
        "shop-orders-newdb", [sys.executable, "-m", "resilience.shop"], env=env, cwd=h.REPO
    )
    try:
        h.wait_healthy(proc, f"http://127.0.0.1:{infra.ports.orders}")
        with httpx.Client(timeout=5) as client:
            response = client.post(
                f"http://127.0.0.1:{infra.ports.orders}/orders", json={"item_id": 1, "quantity": 1}
            )
        assert response.status_code == 201
    finally:
        proc.stop()
        h.drop_database(infra, name)


def test_health_is_the_supervisor_contract(infra: h.Infra) -> None:
    """/health answers status ok, the service, the mode and the options, for every service."""
    with h.shop(infra, "fragile", {"breaker_recovery_seconds": 7}, tracing=False) as shop:
        for service in ("gateway", "orders", "catalog"):
            body = shop.health(service)
            assert body["status"] == "ok"
            assert body["service"] == service
            assert body["mode"] == "fragile"
            assert body["options"]["breaker_recovery_seconds"] == 7.0
