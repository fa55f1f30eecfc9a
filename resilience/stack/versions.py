"""Pinned versions of every program the stack installs — the one place they are set.

Jaeger: the issue asks for v2.20.0 (commit 798e4b0f...). The Go module proxy reachable
from these machines refuses that commit and every v2 tag ("403 This module version is not
available"); the newest version it serves is module version v1.76.0, which is Jaeger's
dual tag for the v2.13.0 release (Jaeger tags each release as v1.N and v2.M on the same
commit; ``cmd/jaeger`` is the v2 binary in both). ``go install pkg@version`` refuses that
module because its go.mod has a ``replace`` directive (Shopify/sarama), so the installer
builds it from a tiny tool module that carries the same replace. See docs/architecture.md.
"""

from __future__ import annotations

from typing import Final

TOXIPROXY_PACKAGE: Final = "github.com/Shopify/toxiproxy/v2/cmd/server"
TOXIPROXY_VERSION: Final = "v2.12.0"

JAEGER_MODULE: Final = "github.com/jaegertracing/jaeger"
JAEGER_PACKAGE: Final = "github.com/jaegertracing/jaeger/cmd/jaeger"
JAEGER_VERSION: Final = "v1.76.0"
"""Module version; the binary is the Jaeger v2.13.0 release built from the same commit."""
JAEGER_RELEASE: Final = "v2.13.0"
JAEGER_REPLACES: Final = ("github.com/Shopify/sarama => github.com/Shopify/sarama v1.33.0",)

# Debian bookworm packages (PostgreSQL 15, Prometheus 2.42).
DEBIAN_PACKAGES: Final = ("postgresql", "prometheus")
POSTGRES_MAJOR: Final = 15

# Container images for docker-compose.yml: the same programs, official images.
IMAGES: Final = {
    "postgres": "postgres:15",
    "toxiproxy": "ghcr.io/shopify/toxiproxy:2.12.0",
    "prometheus": "prom/prometheus:v2.42.0",
    "jaeger": "jaegertracing/jaeger:2.20.0",
    # Compose only (not run natively): the run dashboard over the stack's Prometheus.
    "grafana": "grafana/grafana:11.4.0",
}
