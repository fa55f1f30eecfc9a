"""OpenTelemetry for one shop process: a tracer provider exporting OTLP/HTTP, or none at all.

``SHOP_OTLP_ENDPOINT`` unset means tracing is off: a no-op provider, no instrumentation.
Otherwise spans go through a bounded ``BatchSpanProcessor`` with a short export timeout
(a slow or absent collector must never slow the shop), and the sampler is
``ParentBased(ALWAYS_ON)``: an incoming W3C ``traceparent`` decides, a root samples.
The provider is passed to each instrumentation explicitly; nothing global is set, so
several apps can live in one test process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

logger = logging.getLogger(__name__)

EXPORT_TIMEOUT_SECONDS = 2.0
MAX_QUEUE_SIZE = 4096
SCHEDULE_DELAY_MILLIS = 500
MAX_EXPORT_BATCH = 512
INSTRUMENTATION_NAME = "resilience.shop"


@dataclass
class Tracing:
    """The provider (SDK or no-op) and the shop's own tracer."""

    provider: trace.TracerProvider
    enabled: bool

    @property
    def tracer(self) -> trace.Tracer:
        return self.provider.get_tracer(INSTRUMENTATION_NAME)

    def shutdown(self) -> None:
        """Flush what is queued (bounded by the export timeout) and stop exporting."""
        if isinstance(self.provider, TracerProvider):
            self.provider.shutdown()


def create_tracing(service_name: str, otlp_endpoint: str | None) -> Tracing:
    """Tracing for ``service_name`` exporting to ``otlp_endpoint`` (http://host:port), or off."""
    if not otlp_endpoint:
        return Tracing(provider=trace.NoOpTracerProvider(), enabled=False)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}),
        sampler=ParentBased(ALWAYS_ON),
    )
    exporter = OTLPSpanExporter(
        endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces", timeout=EXPORT_TIMEOUT_SECONDS
    )
    provider.add_span_processor(
        BatchSpanProcessor(
            exporter,
            max_queue_size=MAX_QUEUE_SIZE,
            schedule_delay_millis=SCHEDULE_DELAY_MILLIS,
            max_export_batch_size=MAX_EXPORT_BATCH,
            export_timeout_millis=EXPORT_TIMEOUT_SECONDS * 1000,
        )
    )
    logger.info("tracing %s to %s", service_name, otlp_endpoint)
    return Tracing(provider=provider, enabled=True)
