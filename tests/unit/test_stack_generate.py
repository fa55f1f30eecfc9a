"""Unit tests: the configuration files the stack generates (Prometheus, Jaeger, Toxiproxy, shop env)."""

from __future__ import annotations

import pytest
import yaml

from resilience.errors import ExperimentError
from resilience.stack.config import Ports
from resilience.stack.generate import (
    JAEGER_MAX_TRACES,
    PROMETHEUS_JOBS,
    Network,
    database_url,
    jaeger_config,
    prometheus_config,
    separate_shop_metrics,
    shop_env,
    to_yaml,
    toxiproxy_config,
)
from resilience.stack.topology import stack_proxies

PORTS = Ports().shifted(100)


def _targets(config: dict[str, object]) -> dict[str, list[str]]:
    jobs = config["scrape_configs"]
    assert isinstance(jobs, list)
    return {job["job_name"]: job["static_configs"][0]["targets"] for job in jobs}


def test_prometheus_scrapes_every_second_with_a_timeout_within_the_interval() -> None:
    """prometheus.yml scrapes and evaluates every 1s; the timeout does not exceed the interval."""
    config = prometheus_config(PORTS)
    assert config["global"] == {
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "evaluation_interval": "1s",
    }


def test_prometheus_jobs_cover_toxiproxy_jaeger_and_the_three_shop_services() -> None:
    """One job each for toxiproxy, jaeger, catalog, orders and gateway, and one for a run's
    live load metrics (job "resilience"), on the shifted ports."""
    targets = _targets(prometheus_config(PORTS))
    assert targets == {
        "toxiproxy": ["127.0.0.1:8574"],
        "jaeger": ["127.0.0.1:8988"],
        "catalog": ["127.0.0.1:8102"],
        "orders": ["127.0.0.1:8101"],
        "gateway": ["127.0.0.1:8100"],
        "resilience": ["127.0.0.1:9564"],
    }
    assert set(targets) == set(PROMETHEUS_JOBS)


def test_prometheus_config_survives_a_yaml_round_trip() -> None:
    """The YAML written to disk reads back as the same configuration."""
    config = prometheus_config(PORTS)
    assert yaml.safe_load(to_yaml(config)) == config


def test_jaeger_binds_every_endpoint_on_its_configured_port() -> None:
    """Jaeger's receivers, query API, health check and metrics use the ports from Ports."""
    config = jaeger_config(PORTS)
    otlp = config["receivers"]["otlp"]["protocols"]
    assert otlp["grpc"]["endpoint"] == f"127.0.0.1:{PORTS.jaeger_otlp_grpc}"
    assert otlp["http"]["endpoint"] == f"127.0.0.1:{PORTS.jaeger_otlp_http}"
    query = config["extensions"]["jaeger_query"]
    assert query["http"]["endpoint"] == f"127.0.0.1:{PORTS.jaeger_query}"
    assert query["grpc"]["endpoint"] == f"127.0.0.1:{PORTS.jaeger_query_grpc}"
    health = config["extensions"]["healthcheckv2"]
    assert health["http"]["endpoint"] == f"127.0.0.1:{PORTS.jaeger_health}"
    reader = config["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]
    assert reader["prometheus"] == {"host": "127.0.0.1", "port": PORTS.jaeger_metrics}


def test_jaeger_stores_traces_in_memory_and_does_not_trace_itself() -> None:
    """Memory storage with a bounded trace count feeds both the exporter and the query API."""
    config = jaeger_config(PORTS)
    backends = config["extensions"]["jaeger_storage"]["backends"]
    (store,) = backends
    assert backends[store] == {"memory": {"max_traces": JAEGER_MAX_TRACES}}
    assert config["exporters"]["jaeger_storage_exporter"]["trace_storage"] == store
    assert config["extensions"]["jaeger_query"]["storage"]["traces"] == store
    assert config["extensions"]["jaeger_query"]["enable_tracing"] is False
    assert config["service"]["pipelines"]["traces"]["receivers"] == ["otlp"]


def test_jaeger_config_binds_all_interfaces_inside_compose() -> None:
    """With a compose network, Jaeger listens on 0.0.0.0."""
    config = jaeger_config(Ports(), Network(bind="0.0.0.0"))
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "0.0.0.0:4318"


def test_toxiproxy_config_is_the_topology() -> None:
    """The generated proxies are topology.stack_proxies, enabled, in creation order."""
    proxies = toxiproxy_config(PORTS)
    assert [(p["name"], p["listen"], p["upstream"]) for p in proxies] == [
        (spec.name, spec.listen, spec.upstream) for spec in stack_proxies(PORTS)
    ]
    assert all(p["enabled"] for p in proxies)


def test_toxiproxy_upstreams_use_service_names_in_compose() -> None:
    """Inside compose each proxy forwards to its upstream service by name."""
    network = Network(bind="0.0.0.0", hosts={"postgres": "postgres", "orders": "orders"})
    proxies = {p["name"]: p for p in toxiproxy_config(Ports(), network)}
    assert proxies["postgres"]["upstream"] == "postgres:15432"
    assert proxies["postgres"]["listen"] == "0.0.0.0:25432"
    assert proxies["orders"]["upstream"] == "orders:8001"


def test_shop_env_is_the_contract_with_the_shop() -> None:
    """A shop service gets exactly the SHOP_* variables of the contract, through the proxies."""
    env = shop_env("gateway", mode="hardened", options={"db_pool_size": "3"}, ports=PORTS)
    assert env == {
        "SHOP_SERVICE": "gateway",
        "SHOP_MODE": "hardened",
        "SHOP_HOST": "127.0.0.1",
        "SHOP_PORT": "8100",
        "SHOP_CATALOG_URL": "http://127.0.0.1:28102",
        "SHOP_ORDERS_URL": "http://127.0.0.1:28101",
        "SHOP_DATABASE_URL": "postgresql://resilience@127.0.0.1:25532/shop",
        "SHOP_OTLP_ENDPOINT": "http://127.0.0.1:4418",
        "SHOP_OPT_DB_POOL_SIZE": "3",
    }


def test_database_url_goes_through_the_postgres_proxy() -> None:
    """The shop's database URL points at Toxiproxy's postgres proxy, not at PostgreSQL."""
    assert database_url(PORTS).endswith(f"@127.0.0.1:{PORTS.postgres_proxy}/shop")


def test_prometheus_follows_the_shop_to_its_metrics_ports() -> None:
    """With separate_shop_metrics the shop jobs scrape <service>_metrics; job names and the
    other jobs are unchanged."""
    targets = _targets(prometheus_config(PORTS, separate_shop_metrics=True))
    assert targets == {
        "toxiproxy": ["127.0.0.1:8574"],
        "jaeger": ["127.0.0.1:8988"],
        "catalog": [f"127.0.0.1:{PORTS.catalog_metrics}"],
        "orders": [f"127.0.0.1:{PORTS.orders_metrics}"],
        "gateway": [f"127.0.0.1:{PORTS.gateway_metrics}"],
        "resilience": [f"127.0.0.1:{PORTS.load_metrics}"],
    }
    assert PORTS.gateway_metrics == 18100


def test_prometheus_finds_separate_shop_metrics_by_service_name_in_compose() -> None:
    """In a compose network the metrics ports are reached on the shop service's host name."""
    network = Network(bind="0.0.0.0", hosts={"gateway": "gateway"})
    targets = _targets(prometheus_config(Ports(), network, separate_shop_metrics=True))
    assert targets["gateway"] == ["gateway:18000"]


def test_shop_env_names_the_metrics_port_only_when_metrics_are_separate() -> None:
    """SHOP_METRICS_PORT is set (to the service's shifted metrics port) only with the option."""
    plain = shop_env("orders", mode="fragile", options={}, ports=PORTS)
    assert "SHOP_METRICS_PORT" not in plain
    separate = shop_env(
        "orders",
        mode="fragile",
        options={"separate_metrics_port": "true"},
        ports=PORTS,
        separate_metrics=True,
    )
    assert separate["SHOP_METRICS_PORT"] == str(PORTS.orders_metrics)
    assert separate["SHOP_OPT_SEPARATE_METRICS_PORT"] == "true"


def test_separate_shop_metrics_reads_and_validates_the_options() -> None:
    """The stack reads the option as the shop will; a bad option is invalid input naming it."""
    assert separate_shop_metrics("hardened", {}) is False
    assert separate_shop_metrics("fragile", {"separate_metrics_port": "true"}) is True
    assert separate_shop_metrics("fragile", {"separate_metrics_port": "off"}) is False
    with pytest.raises(ExperimentError, match="separate_metrics_port") as caught:
        separate_shop_metrics("fragile", {"separate_metrics_port": "sometimes"})
    assert caught.value.exit_code == 2
    with pytest.raises(ExperimentError, match="unknown shop option"):
        separate_shop_metrics("fragile", {"separate_metric_port": "true"})
