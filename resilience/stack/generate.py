"""Configuration the stack's programs read, generated from one set of definitions.

The native supervisor and the compose exporter call the same functions; only the
``Network`` differs (everything on 127.0.0.1 natively; service names and 0.0.0.0 inside
compose), so the two stacks cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlsplit

import yaml

from resilience.stack.config import Ports
from resilience.stack.topology import SHOP_SERVICES, stack_proxies
from resilience.vocabulary import SHOP_MODES

SCRAPE_INTERVAL = "1s"
LOOKBACK_DELTA = "5s"
"""How far back the stack's Prometheus looks for a gauge's last sample (its default: 5 min).

Five scrapes. A stack stopped between runs leaves its processes' last samples in the TSDB
with no staleness marker (the shop and Prometheus stop within one scrape of each other); at
the default, the next run's first seconds read them as the new processes' values until the
first scrape: a fragile run right after a hardened one saw its database pool's size as 10,
the hardened pool's, for 6 s, and called the fragile pool of 4 "drained, not exhausted".
"""


def prometheus_flags(config_file: str, data_dir: str, listen: str) -> list[str]:
    """The stack's Prometheus command-line flags, native and in compose alike.

    No --web.enable-lifecycle: POST /-/quit would let any local user stop it.
    """
    return [
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data_dir}",
        "--storage.tsdb.retention.time=2d",
        f"--query.lookback-delta={LOOKBACK_DELTA}",
        f"--web.listen-address={listen}",
    ]


JAEGER_MAX_TRACES = 200_000
JAEGER_STORAGE = "memstore"
DATABASE_ROLE = "resilience"
DATABASE_NAME = "shop"

PROMETHEUS_JOBS: dict[str, str] = {
    "toxiproxy": "toxiproxy",
    "jaeger": "jaeger_metrics",
    **{service: service for service in SHOP_SERVICES},
    "resilience": "load_metrics",
}
"""Prometheus job name → the port (a ``Ports`` field) it scrapes ``/metrics`` on."""

SHOP_METRICS_PORTS: dict[str, str] = {service: f"{service}_metrics" for service in SHOP_SERVICES}
"""Shop job → its port when the shop runs with ``separate_metrics_port``."""

_JOB_HOST = {"jaeger_metrics": "jaeger", **{port: job for job, port in SHOP_METRICS_PORTS.items()}}


@dataclass(frozen=True)
class Network:
    """How programs find each other: the address they bind and the host of each component."""

    bind: str = "127.0.0.1"
    hosts: dict[str, str] = field(default_factory=dict)

    def host(self, component: str) -> str:
        return self.hosts.get(component, self.bind)


NATIVE = Network()


def prometheus_config(
    ports: Ports,
    network: Network = NATIVE,
    *,
    separate_shop_metrics: bool = False,
    extra_jobs: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """prometheus.yml: every job scraped each second.

    ``separate_shop_metrics``: the shop runs with ``separate_metrics_port``, so its jobs
    scrape the ``<service>_metrics`` ports instead of the app ports (job names unchanged).
    ``extra_jobs``: an experiment's own jobs (``observe.scrape``), job name -> /metrics URL,
    after the stack's (a name of the stack's own is refused: ``ValueError``).
    """
    jobs: list[dict[str, object]] = []
    for job, app_port in PROMETHEUS_JOBS.items():
        port_name = SHOP_METRICS_PORTS.get(job, app_port) if separate_shop_metrics else app_port
        host = network.host(_JOB_HOST.get(port_name, port_name))
        jobs.append(
            {
                "job_name": job,
                "static_configs": [{"targets": [f"{host}:{getattr(ports, port_name)}"]}],
            }
        )
    for job, url in sorted((extra_jobs or {}).items()):
        if job in PROMETHEUS_JOBS:
            raise ValueError(f"scrape job {job!r} is one of the stack's own")
        parts = urlsplit(url)
        extra: dict[str, object] = {
            "job_name": job,
            "scheme": parts.scheme,
            "metrics_path": parts.path or "/metrics",
            "static_configs": [{"targets": [parts.netloc]}],
        }
        if parts.query:
            extra["params"] = {k: [v] for k, v in parse_qsl(parts.query)}
        jobs.append(extra)
    return {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            # Prometheus rejects a timeout longer than the interval (its default is 10s).
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "scrape_configs": jobs,
    }


def jaeger_config(ports: Ports, network: Network = NATIVE) -> dict[str, object]:
    """Jaeger v2 configuration: OTLP in, memory storage, query API, health and metrics."""
    bind = network.bind
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            "telemetry": {
                "resource": {"service.name": "jaeger"},
                "metrics": {
                    "level": "basic",
                    "readers": [
                        {
                            "pull": {
                                "exporter": {
                                    "prometheus": {"host": bind, "port": ports.jaeger_metrics}
                                }
                            }
                        }
                    ],
                },
                "logs": {"level": "info"},
            },
        },
        "extensions": {
            "healthcheckv2": {
                "use_v2": True,
                "http": {"endpoint": f"{bind}:{ports.jaeger_health}"},
            },
            "jaeger_query": {
                # On by default in v2: Jaeger would send its own spans to the default
                # OTLP port, which may be another stack's collector.
                "enable_tracing": False,
                "storage": {"traces": JAEGER_STORAGE},
                "http": {"endpoint": f"{bind}:{ports.jaeger_query}"},
                "grpc": {"endpoint": f"{bind}:{ports.jaeger_query_grpc}"},
            },
            "jaeger_storage": {
                "backends": {JAEGER_STORAGE: {"memory": {"max_traces": JAEGER_MAX_TRACES}}}
            },
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"{bind}:{ports.jaeger_otlp_grpc}"},
                    "http": {"endpoint": f"{bind}:{ports.jaeger_otlp_http}"},
                }
            }
        },
        "processors": {"batch": {}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": JAEGER_STORAGE}},
    }


def toxiproxy_config(ports: Ports, network: Network = NATIVE) -> list[dict[str, object]]:
    """Toxiproxy's proxies as its ``-config`` file and ``/populate`` expect them."""
    return [
        {
            "name": spec.name,
            "listen": f"{network.bind}:{spec.listen_port}",
            "upstream": f"{network.host(spec.name)}:{spec.upstream_port}",
            "enabled": True,
        }
        for spec in stack_proxies(ports)
    ]


def database_url(ports: Ports, network: Network = NATIVE, password: str | None = None) -> str:
    """The shop's database, reached through the Toxiproxy ``postgres`` proxy, as the
    ``resilience`` role with ``password`` (the stack's, or a compose variable)."""
    host = network.host("toxiproxy")
    user = DATABASE_ROLE if password is None else f"{DATABASE_ROLE}:{quote(password, safe='${}')}"
    return f"postgresql://{user}@{host}:{ports.postgres_proxy}/{DATABASE_NAME}"


def separate_shop_metrics(mode: str, options: Mapping[str, str]) -> bool:
    """Whether a shop in ``mode`` with ``options`` serves /metrics on its own port.

    Validates the options as the shop will (``ExperimentError`` naming the option), so a
    bad option stops ``stack up`` before anything starts.
    """
    from resilience.shop.settings import options_for  # the shop's table is the truth

    if mode not in SHOP_MODES:
        return False
    return options_for(mode, options).separate_metrics_port


def shop_env(
    service: str,
    *,
    mode: str,
    options: dict[str, str],
    ports: Ports,
    network: Network = NATIVE,
    separate_metrics: bool = False,
    database_password: str | None = None,
) -> dict[str, str]:
    """The environment one shop service is configured by (its whole interface)."""
    proxy_host = network.host("toxiproxy")
    env = {
        "SHOP_SERVICE": service,
        "SHOP_MODE": mode,
        "SHOP_HOST": network.bind,
        "SHOP_PORT": str(getattr(ports, service)),
        "SHOP_CATALOG_URL": f"http://{proxy_host}:{ports.catalog_proxy}",
        "SHOP_ORDERS_URL": f"http://{proxy_host}:{ports.orders_proxy}",
        "SHOP_DATABASE_URL": database_url(ports, network, database_password),
        "SHOP_OTLP_ENDPOINT": f"http://{network.host('jaeger')}:{ports.jaeger_otlp_http}",
    }
    if separate_metrics:
        env["SHOP_METRICS_PORT"] = str(getattr(ports, SHOP_METRICS_PORTS[service]))
    env.update({f"SHOP_OPT_{name.upper()}": value for name, value in sorted(options.items())})
    return env


def to_yaml(data: object) -> str:
    """YAML in the order given (configs read top-down like the docs that explain them)."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)
