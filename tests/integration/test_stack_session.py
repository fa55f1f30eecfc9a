"""Integration tests on the shared session stack (tests/integration/conftest.py).

Real PostgreSQL, Toxiproxy, Jaeger, Prometheus and the shop, started once by the
``infra_stack`` / ``stack`` fixtures. Every test leaves the stack as it found it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner

from resilience.cli import app
from tests.integration.conftest import StackHandle

pytestmark = pytest.mark.integration

T = TypeVar("T")


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


def cli_env(handle: StackHandle) -> dict[str, str | None]:
    """Environment that points the CLI at ``handle``'s stack."""
    env: dict[str, str | None] = {
        "RESILIENCE_STATE_DIR": str(handle.state),
        "RESILIENCE_HOME": str(handle.config.paths.home),
        "RESILIENCE_PORT_OFFSET": str(handle.config.ports.gateway - 8000),
    }
    env.update(
        {f"RESILIENCE_PORT_{name.upper()}": None for name in handle.config.ports.model_dump()}
    )
    return env


async def _query(dsn: str) -> list[int]:
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        rows = await connection.fetch("SELECT generate_series(1, 3) AS n", timeout=5)
        return [row["n"] for row in rows]
    finally:
        await connection.close(timeout=5)


def test_sql_through_the_postgres_proxy_works_and_fails_when_disabled(
    infra_stack: StackHandle, http: httpx.Client
) -> None:
    """A query through Toxiproxy's postgres proxy returns rows; with the proxy disabled it fails."""
    dsn = infra_stack.proxied_database_url
    assert asyncio.run(_query(dsn)) == [1, 2, 3]
    proxy = f"{infra_stack.toxiproxy_url}/proxies/postgres"
    http.post(proxy, json={"enabled": False}).raise_for_status()
    try:
        with pytest.raises((OSError, asyncpg.PostgresError, TimeoutError)):
            asyncio.run(_query(dsn))
    finally:
        http.post(proxy, json={"enabled": True}).raise_for_status()
    assert asyncio.run(_query(dsn)) == [1, 2, 3]


def _target_health(handle: StackHandle, http: httpx.Client) -> dict[str, str]:
    data = http.get(f"{handle.prometheus_url}/api/v1/targets").raise_for_status().json()
    return {t["labels"]["job"]: t["health"] for t in data["data"]["activeTargets"]}


def test_prometheus_scrapes_toxiproxy_jaeger_and_the_shop(
    stack: StackHandle, http: httpx.Client
) -> None:
    """Prometheus lists toxiproxy, jaeger, gateway, orders and catalog as targets that are up."""
    jobs = ("toxiproxy", "jaeger", "gateway", "orders", "catalog")

    def all_up() -> dict[str, str] | None:
        health = _target_health(stack, http)
        return health if all(health.get(job) == "up" for job in jobs) else None

    health = wait_for("every target up", all_up)
    assert set(jobs) <= set(health)


def test_toxiproxy_has_the_stack_proxies(infra_stack: StackHandle, http: httpx.Client) -> None:
    """Toxiproxy holds the postgres, orders and catalog proxies, listening on the configured ports."""
    proxies = http.get(f"{infra_stack.toxiproxy_url}/proxies").raise_for_status().json()
    ports = infra_stack.config.ports
    assert proxies["postgres"]["listen"] == f"127.0.0.1:{ports.postgres_proxy}"
    assert proxies["postgres"]["upstream"] == f"127.0.0.1:{ports.postgres}"
    assert proxies["orders"]["upstream"] == f"127.0.0.1:{ports.orders}"
    assert proxies["catalog"]["upstream"] == f"127.0.0.1:{ports.catalog}"


def test_jaeger_query_api_answers(infra_stack: StackHandle, http: httpx.Client) -> None:
    """Jaeger's query API answers on its configured port."""
    response = http.get(f"{infra_stack.jaeger_query_url}/api/services")
    assert response.status_code == 200
    assert "data" in response.json()


def test_up_again_starts_nothing_and_keeps_the_processes(stack: StackHandle) -> None:
    """A second `up` with the same mode verifies health and starts nothing."""
    before = {name: r.pid for name, r in stack.stack.records().items()}
    result = stack.stack.up(shop_mode=stack.stack.shop_mode() or "fragile")
    assert result.started == ()
    assert set(result.already_running) == set(before)
    assert {name: r.pid for name, r in stack.stack.records().items()} == before


def test_changing_the_shop_mode_restarts_only_the_shop(stack: StackHandle) -> None:
    """`up --shop-mode` with another mode restarts the three shop services and nothing else."""
    stack.stack.up(shop_mode="fragile")
    before = {name: r.pid for name, r in stack.stack.records().items()}
    result = stack.stack.up(shop_mode="hardened")
    try:
        assert set(result.restarted) == {"catalog", "orders", "gateway"}
        assert stack.stack.shop_mode() == "hardened"
        after = {name: r.pid for name, r in stack.stack.records().items()}
        for name in ("postgres", "toxiproxy", "jaeger", "prometheus"):
            assert after[name] == before[name]
        for name in ("catalog", "orders", "gateway"):
            assert after[name] != before[name]
        health = httpx.get(f"{stack.gateway_url}/health", timeout=5, trust_env=False).json()
        assert health["mode"] == "hardened"
    finally:
        stack.stack.up(shop_mode="fragile")


def test_status_json_reports_every_component_healthy(stack: StackHandle) -> None:
    """`stack status --json` lists all seven components, running, with port, pid and version."""
    result = CliRunner().invoke(app, ["stack", "status", "--json"], env=cli_env(stack))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = {row["name"]: row for row in report["components"]}
    assert list(rows) == [
        "postgres", "toxiproxy", "jaeger", "prometheus", "catalog", "orders", "gateway",
    ]  # fmt: skip
    for name, row in rows.items():
        assert row["state"] == "running", (name, row)
        assert row["healthy"] is True
        assert row["pid"] > 0
        assert row["version"]
    assert rows["gateway"]["port"] == stack.config.ports.gateway
    assert rows["toxiproxy"]["version"] == "v2.12.0"
