"""The toolkit's own spans: a client span for every kept request, and a run trace.

The load workers send a W3C ``traceparent`` with ids they made and keep a ``TraceRef``
(ids, endpoint, intended send time, latency, outcome) for the failed, slow and sampled
requests. After the load, this module (in the parent, never in the gevent workers, whose
measured latencies an export would disturb) turns each ``TraceRef`` into a CLIENT span that
IS the ``traceparent``'s span: the same trace id and span id, no parent, start = the
intended send time, end = completion. The target's server span names it as its parent, so
the saved trace's root is the load request and the wait before the target took it shows in
the waterfall.

The run trace has a root ``run <experiment>`` over the load, a span per phase and, under the
fault phase, a span per fault from its apply to its heal. Its trace id is derived from the
run directory's name, so a report can link to it.

Exported over OTLP/HTTP with the OpenTelemetry SDK (the ``otel`` extra; the shop extra has
it too). Without the SDK, or with the backend down, the run goes on: the result says why no
span was exported, and evidence.json records it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resilience.rundir.evidence import SourceEvidence, SourceStatus
from resilience.rundir.journal import JournalData
from resilience.rundir.load import read_trace_refs
from resilience.rundir.records import TraceRef
from resilience.vocabulary import Phase

logger = logging.getLogger(__name__)

CLIENT_SERVICE = "resilience-load"
RUN_SERVICE = "resilience"
BATCH = 512
INSTALL_HINT = "pip install 'resilience[otel]' (the OpenTelemetry SDK and its OTLP exporter)"


@dataclass
class OwnSpans:
    """What was exported: the client spans by trace id (their span ids) and the run trace."""

    evidence: SourceEvidence
    client_spans: dict[str, str] = field(default_factory=dict)
    run_trace_id: str | None = None


def run_trace_id(run_name: str) -> str:
    """A stable trace id for a run (32 hex digits), from its directory's name."""
    return hashlib.sha256(run_name.encode("utf-8")).hexdigest()[:32]


def _split(endpoint: str) -> tuple[str | None, str]:
    method, _, rest = endpoint.partition(" ")
    if rest and method.isupper():
        return method, rest
    return None, endpoint


class _PresetIds:
    """An IdGenerator that hands out the ids set just before ``start_span`` (then random)."""

    def __init__(self) -> None:
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

        self._random = RandomIdGenerator()
        self.trace_id = 0
        self.span_id = 0

    def generate_trace_id(self) -> int:
        tid, self.trace_id = self.trace_id, 0
        return tid or int(self._random.generate_trace_id())

    def generate_span_id(self) -> int:
        sid, self.span_id = self.span_id, 0
        return sid or int(self._random.generate_span_id())

    def is_trace_id_random(self) -> bool:
        # True would add the W3C "random" flag to the span's flags, unlike the "-01" we sent.
        return False


def export_own_spans(
    journal: JournalData,
    phases: Sequence[Phase],
    refs: Sequence[TraceRef],
    otlp_url: str,
    *,
    run_name: str,
    timeout: float = 5.0,
    exporter: Any = None,
) -> OwnSpans:
    """Export a client span per kept request and the run trace to ``otlp_url`` (the full
    ``/v1/traces`` URL). Never raises for a missing SDK or an unreachable backend.

    ``exporter`` replaces the OTLP exporter (tests pass an in-memory one)."""
    try:
        from opentelemetry import context as otel_context
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        reason = f"the OpenTelemetry SDK is not installed: {INSTALL_HINT}"
        logger.warning("no client spans exported: %s", reason)
        return OwnSpans(SourceEvidence(status="unavailable", wanted=len(refs), reason=reason))
    if exporter is None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            reason = f"the OTLP/HTTP exporter is not installed: {INSTALL_HINT}"
            return OwnSpans(SourceEvidence(status="unavailable", wanted=len(refs), reason=reason))
        exporter = OTLPSpanExporter(endpoint=otlp_url, timeout=timeout)
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    ids = _PresetIds()
    memory = InMemorySpanExporter()
    providers = {
        name: TracerProvider(
            resource=Resource.create(
                {"service.name": name, "resilience.run": run_name, "resilience.experiment":
                 journal.experiment}
            ),
            id_generator=ids,  # type: ignore[arg-type]  # the SDK's IdGenerator protocol, duck-typed
        )
        for name in (CLIENT_SERVICE, RUN_SERVICE)
    }  # fmt: skip
    for provider in providers.values():
        # Spans are kept in memory and exported afterwards in batches, with a count of
        # what the backend took.
        provider.add_span_processor(SimpleSpanProcessor(memory))
    empty = otel_context.Context()
    client_spans = _client_spans(providers[CLIENT_SERVICE], ids, empty, journal.t0, refs)
    run_id = run_trace_id(run_name)
    _run_trace(providers[RUN_SERVICE], ids, empty, journal=journal, phases=phases, trace_id=run_id)
    collected = list(memory.get_finished_spans())
    exported, failed = _export(exporter, collected)
    for provider in providers.values():
        provider.shutdown()
    exporter.shutdown()
    wanted = len(collected)
    if exported == 0 and wanted:
        reason = f"the trace backend at {otlp_url} took none of {wanted} spans ({failed})"
        logger.warning("%s", reason)
        return OwnSpans(
            SourceEvidence(status="unavailable", endpoint=otlp_url, wanted=wanted, reason=reason)
        )
    status: SourceStatus = "gathered" if exported == wanted else "partial"
    logger.info("exported %d of %d own spans to %s", exported, wanted, otlp_url)
    return OwnSpans(
        SourceEvidence(
            status=status,
            endpoint=otlp_url,
            wanted=wanted,
            gathered=exported,
            reason=failed or None,
            run_trace_id=run_id,
        ),
        client_spans=client_spans if exported == wanted else {},
        run_trace_id=run_id,
    )


def _ns(t0: float, seconds: float) -> int:
    return int((t0 + seconds) * 1e9)


def _client_spans(
    provider: Any, ids: _PresetIds, empty: Any, t0: float, refs: Sequence[TraceRef]
) -> dict[str, str]:
    from opentelemetry.trace import SpanKind, Status, StatusCode

    tracer = provider.get_tracer("resilience.load")
    made: dict[str, str] = {}
    for ref in refs:
        if not ref.trace_id or not ref.span_id or ref.trace_id in made:
            continue
        try:
            trace_id, span_id = int(ref.trace_id, 16), int(ref.span_id, 16)
        except ValueError:
            continue
        method, template = _split(ref.endpoint)
        attributes: dict[str, Any] = {
            "url.template": template,
            "resilience.outcome": ref.outcome,
            "resilience.kept_because": ref.reason,
            "resilience.worker": ref.worker,
        }
        if method:
            attributes["http.request.method"] = method
        if ref.status:
            attributes["http.response.status_code"] = ref.status
        ids.trace_id, ids.span_id = trace_id, span_id
        span = tracer.start_span(
            ref.endpoint,
            context=empty,
            kind=SpanKind.CLIENT,
            start_time=_ns(t0, ref.t),
            attributes=attributes,
        )
        if ref.outcome != "ok":
            span.set_status(Status(StatusCode.ERROR, ref.outcome))
        span.end(end_time=_ns(t0, ref.t + ref.latency))
        made[ref.trace_id.lower()] = ref.span_id.lower()
    return made


def _run_trace(
    provider: Any,
    ids: _PresetIds,
    empty: Any,
    *,
    journal: JournalData,
    phases: Sequence[Phase],
    trace_id: str,
) -> None:
    from opentelemetry.trace import Status, StatusCode, set_span_in_context

    tracer = provider.get_tracer("resilience.runner")
    t0 = journal.t0
    end = journal.load_end
    if end is None:
        end = max([p.end for p in phases] or [0.0])
    ids.trace_id = int(trace_id, 16)
    root = tracer.start_span(
        f"run {journal.experiment}",
        context=empty,
        start_time=_ns(t0, 0.0),
        attributes={
            "resilience.experiment": journal.experiment,
            "resilience.profile": journal.profile or "",
            "resilience.target": journal.target or "",
        },
    )
    root_ctx = set_span_in_context(root)
    fault_ctx = root_ctx
    for phase in phases:
        span = tracer.start_span(
            f"phase {phase.name}", context=root_ctx, start_time=_ns(t0, phase.start)
        )
        if phase.name == "fault":
            fault_ctx = set_span_in_context(span)
        span.end(end_time=_ns(t0, phase.end))
    for fault in journal.faults:
        if fault.applied_at is None:
            continue
        healed = fault.healed_at if fault.healed_at is not None else end
        span = tracer.start_span(
            f"fault {fault.type} on {fault.proxy}",
            context=fault_ctx,
            start_time=_ns(t0, fault.applied_at),
            attributes={
                "toxiproxy.proxy": fault.proxy,
                "resilience.fault.type": fault.type,
                "resilience.fault.scheduled_at": fault.scheduled_at,
            },
        )
        if fault.error:
            span.set_status(Status(StatusCode.ERROR, fault.error))
        span.end(end_time=_ns(t0, healed))
    for event in journal.events:
        root.add_event(event.kind, {"t": event.t}, timestamp=_ns(t0, event.t))
    root.end(end_time=_ns(t0, end))


def _export(exporter: Any, spans: Sequence[Any]) -> tuple[int, str]:
    """Export in batches; the count taken and the first failure's description."""
    from opentelemetry.sdk.trace.export import SpanExportResult

    exported = 0
    failure = ""
    started = time.monotonic()
    for i in range(0, len(spans), BATCH):
        batch = spans[i : i + BATCH]
        try:
            result = exporter.export(batch)
        except Exception as exc:  # an exporter bug must not cost the run its verdict
            failure = failure or f"{type(exc).__name__}: {exc}"
            break
        if result is SpanExportResult.SUCCESS:
            exported += len(batch)
        else:
            failure = failure or "the exporter reported a failure (see the run log)"
            break
    logger.debug("own spans exported in %.3f s", time.monotonic() - started)
    return exported, failure


def export_for_run(
    run_dir: Path, journal: JournalData, phases: Sequence[Phase], otlp_url: str
) -> OwnSpans:
    """The run's own spans from its directory's kept trace ids, exported to ``otlp_url``."""
    return export_own_spans(
        journal, phases, read_trace_refs(run_dir), otlp_url, run_name=Path(run_dir).name
    )


def jaeger_trace_ui(query_url: str) -> str:
    """Jaeger's UI page of one trace (the query service serves the UI on the same port)."""
    return query_url.rstrip("/") + "/trace/{trace_id}"
