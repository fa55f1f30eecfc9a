"""Integration test: a trace backend that keeps only its most recent traces is not taken for
a target that exported no spans.

A long run outlives the stack's Jaeger's memory store (it keeps 200,000 traces, about 17
minutes of the shop at 200 req/s), and the load engine exports its own client spans only
after the load: the early traces looked up then hold nothing but those. This module starts
a real Jaeger v2 (port offset 430) whose store keeps 100 traces, sends it 150 requests'
server spans oldest first and then the client spans, as a run does, and gathers the run's
traces as ``resilience run`` does.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from resilience.observe import JaegerTraceSource
from resilience.rundir.layout import RunDir
from resilience.rundir.load import LoadFiles
from resilience.rundir.records import TraceRef
from resilience.runner import evidence
from resilience.runner.own_spans import CLIENT_SERVICE
from resilience.stack.config import Ports
from resilience.testing.analysis import T0, fault_phases, ref
from tests.integration.test_observe_jaeger import ChosenIds, Jaeger, run_jaeger, wait_for

pytestmark = pytest.mark.integration

KEEPS = 100
REQUESTS = 150
CHOSEN = 24
CHUNK = 10
ENDPOINT = "GET /items"


@pytest.fixture(scope="module")
def small_jaeger() -> Iterator[Jaeger]:
    with run_jaeger(Ports().shifted(430), max_traces=KEEPS) as started:
        yield started


def send(jaeger: Jaeger, service: str, kind: SpanKind, ids: list[int]) -> None:
    """One span per trace id, exported in chunks of ``CHUNK``, each chunk stored before the
    next is sent: the store evicts by the order traces arrive, and Jaeger's batch processor
    stores one batch's traces in no particular order."""
    chosen = ChosenIds()
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}), id_generator=chosen
    )
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(jaeger.otlp_url, timeout=5)))
    tracer = provider.get_tracer("resilience-tests")
    try:
        with JaegerTraceSource(jaeger.query_url, timeout=5.0) as source:
            for at in range(0, len(ids), CHUNK):
                chunk = ids[at : at + CHUNK]
                for trace_id in chunk:
                    chosen.next_trace_id = trace_id
                    with tracer.start_as_current_span(ENDPOINT, kind=kind):
                        pass

                def stored(chunk: list[int] = chunk) -> bool:
                    traces = [source.get(f"{tid:032x}") for tid in chunk]
                    return all(t is not None and service in t.services() for t in traces)

                wait_for(f"{service} spans of {len(chunk)} traces to be stored", stored)
    finally:
        provider.shutdown()


def test_traces_dropped_by_a_full_store_are_the_backends_loss_not_the_targets_silence(
    small_jaeger: Jaeger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """150 requests' server spans into a store keeping 100, then the load generator's client
    spans of the kept ones, as a run exports them after its load: the early chosen traces
    hold only client spans, the later ones and the run's latest the target's. The evidence
    says the backend dropped the early ones (indexed as such, not saved as requests that
    reached no service), saves the latest in their place, and does not say the target
    exported no spans."""
    monkeypatch.setattr(evidence, "MAX_TRACES", CHOSEN)
    monkeypatch.setattr(evidence, "MIN_STORE_TRACES", KEEPS)  # the store at hand
    ids = [(0xABC << 64) | (i + 1) for i in range(REQUESTS)]
    refs: list[TraceRef] = [
        ref(f"{tid:032x}", ENDPOINT, 40.0 * i / REQUESTS) for i, tid in enumerate(ids)
    ]
    latest = refs[-16:]
    kept = refs[:CHOSEN] + latest
    files = LoadFiles(tmp_path, t0=T0)
    for r in kept:
        files.write_trace(r)
    files.close()
    per_second = Counter(
        int(r.t) for r in refs
    )  # each request once (all of them, not only the kept)
    (tmp_path / "load.jsonl").write_text(
        "".join(
            json.dumps({"second": second, "endpoint": ENDPOINT, "n": n}) + "\n"
            for second, n in sorted(per_second.items())
        )
    )

    send(small_jaeger, "gateway", SpanKind.SERVER, ids)
    send(small_jaeger, CLIENT_SERVICE, SpanKind.CLIENT, [int(r.trace_id, 16) for r in kept])

    with JaegerTraceSource(small_jaeger.query_url, timeout=5.0) as source:
        early = source.get(refs[0].trace_id)
        assert early is not None
        assert early.services() == {CLIENT_SERVICE}, "the store did not drop the early trace"
        got = evidence.gather_traces(
            RunDir(tmp_path),
            fault_phases(end=40, fault=(10, 20)),
            evidence.Sources(prometheus=None, traces=source, target_url=None),
        )
    assert got.status == "partial", got
    assert got.reason is not None
    assert "no longer holds the target's spans of " in got.reason, got.reason
    assert "exported no spans" not in got.reason
    assert (got.model_extra or {}).get("target_spans") is not False
    saved = {p.stem for p in (tmp_path / "traces").glob("*.json")} - {"index"}
    assert {r.trace_id for r in latest[-evidence.LATEST_PER_ENDPOINT :]} <= saved
    assert saved <= {r.trace_id for r in latest}
    assert got.gathered == len(saved)
    index = json.loads((tmp_path / "traces" / "index.json").read_text())["traces"]
    dropped = {tid for tid, e in index.items() if e["status"] == "missing"}
    assert dropped
    assert dropped <= {r.trace_id for r in refs[:CHOSEN]}
    assert all(index[tid]["reason"].startswith("dropped by the trace backend") for tid in dropped)
