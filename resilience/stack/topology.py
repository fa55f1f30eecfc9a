"""The built-in stack's topology: which Toxiproxy proxies sit in front of what.

One definition, read by the native supervisor, the compose exporter and the default
target of experiments, so the three cannot drift apart.

    load ──► gateway ──► [toxiproxy: catalog] ──► catalog
                    └──► [toxiproxy: orders]  ──► orders ──► [toxiproxy: postgres] ──► PostgreSQL
"""

from __future__ import annotations

from dataclasses import dataclass

from resilience.stack.config import Ports
from resilience.vocabulary import BUILTIN_PROXIES


@dataclass(frozen=True)
class ProxySpec:
    """A Toxiproxy proxy: its name, where it listens, and the upstream it forwards to."""

    name: str
    listen_port: int
    upstream_port: int
    host: str = "127.0.0.1"

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.listen_port}"

    @property
    def upstream(self) -> str:
        return f"{self.host}:{self.upstream_port}"


def stack_proxies(ports: Ports) -> tuple[ProxySpec, ...]:
    """The proxies the built-in stack creates in Toxiproxy, in creation order."""
    postgres, orders, catalog = BUILTIN_PROXIES
    return (
        ProxySpec(postgres, ports.postgres_proxy, ports.postgres),
        ProxySpec(orders, ports.orders_proxy, ports.orders),
        ProxySpec(catalog, ports.catalog_proxy, ports.catalog),
    )


SHOP_SERVICES: tuple[str, ...] = ("catalog", "orders", "gateway")
"""The shop's services in start order (gateway last: it calls the other two)."""
