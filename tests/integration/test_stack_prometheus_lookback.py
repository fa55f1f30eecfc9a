"""The stack's Prometheus forgets a stopped process's last values within seconds.

Between runs the stack stops the shop and Prometheus within one scrape of each other, so the
TSDB keeps each shop series' last sample with no staleness marker. At Prometheus's default
lookback (5 min) the next run's first seconds read those samples as the new processes'
values: a fragile run right after a hardened one saw its database pool's size as 10 (the
hardened pool's) for 6 s. The stack's Prometheus is started with a lookback of a few scrapes
(``LOOKBACK_DELTA``). This test starts it as the stack does (the component's own launch and
generated config), lets it scrape a gauge on the orders port, stops it while the exporter
still answers (no staleness marker), starts it again with the exporter gone and asks for the
gauge at instants after the last sample: there within the lookback, gone after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from resilience.observe.prometheus import HttpPrometheusSource
from resilience.stack import Ports, StackConfig, StackPaths
from resilience.stack._process import stop_group
from resilience.stack.components import Context, Prometheus
from resilience.stack.config import default_home
from resilience.stack.generate import LOOKBACK_DELTA
from resilience.stack.programs import Programs
from tests.integration._runs import start_component, wait_for
from tests.integration.conftest import port_offset

pytestmark = pytest.mark.integration

SHIFT = 71
SERIES = 'shop_db_pool_size{job="orders"}'


def _values(prometheus: HttpPrometheusSource, at: float | None = None) -> list[float]:
    return [v for series in prometheus.query(SERIES, at) for v in series.values()]


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    config = StackConfig(
        paths=StackPaths(home=default_home(), state=tmp_path / "state"),
        ports=Ports().shifted(port_offset() + SHIFT),
    )
    config.paths.logs.mkdir(parents=True, exist_ok=True)
    with httpx.Client(timeout=2.0, trust_env=False) as http:
        yield Context(config=config, programs=Programs(config), http=http, shop_mode="hardened")


def test_a_restarted_prometheus_does_not_serve_a_stopped_process_s_last_value(
    ctx: Context,
) -> None:
    component = Prometheus()
    prometheus = HttpPrometheusSource(ctx.config.prometheus_url, timeout=2.0)
    registry = CollectorRegistry()
    Gauge("shop_db_pool_size", "The pool's size.", registry=registry).set(10)
    server, thread = start_http_server(ctx.config.ports.orders, "127.0.0.1", registry)
    try:
        pgid = start_component(component, ctx)
        try:
            wait_for(lambda: _values(prometheus) == [10.0], timeout=30, every=0.2)
        finally:
            # Prometheus stops first, the exporter still answering: no failed scrape, no
            # staleness marker.
            stop_group(pgid)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    pgid = start_component(component, ctx)
    try:
        # The raw samples of the last minute (a range selector: no lookback).
        times = [t for series in prometheus.query(f"{SERIES}[1m]") for t, _ in series.points]
        assert times, "the samples scraped before the restart are in the TSDB"
        last = max(times)
        lookback = float(LOOKBACK_DELTA.removesuffix("s"))
        # The last sample is served within the lookback after it...
        assert _values(prometheus, last + 1.0) == [10.0]
        # ...and not as the value at any instant past it: the next run's first seconds.
        assert _values(prometheus, last + lookback + 1.0) == []
    finally:
        stop_group(pgid)
