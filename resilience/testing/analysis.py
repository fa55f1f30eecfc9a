"""Builders for synthetic analysis contexts: per-second load data, traces, trace refs.

Detectors are unit-tested (and the ground-truth matrix can be reasoned about) on contexts
built from these instead of a real run: ``LoadBuilder`` fills a ``MemoryLoadView`` second
by second, ``TraceBuilder`` assembles a trace span by span on the wall clock, ``ref`` makes
the load engine's record of a kept trace, and ``make_context`` puts it all in an
``AnalysisContext`` with the defaults of a run that started at ``T0``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hdrh.histogram import HdrHistogram

from resilience.analysis.context import AnalysisContext
from resilience.analysis.data import MemoryLoadView
from resilience.analysis.pipeline import DETECTORS
from resilience.analysis.recovery import RecoveryResult
from resilience.analysis.resources import Resources
from resilience.experiment.model import Experiment
from resilience.histogram import new_histogram
from resilience.observe.prometheus import PrometheusSource, Series
from resilience.observe.spans import AttrValue, Span, SpanEvent, SpanKind, Trace
from resilience.rundir.readback import ReadBack
from resilience.rundir.records import TraceReason, TraceRef, WriteAck, WriteSummary
from resilience.rundir.rig import RigSample
from resilience.rundir.series import RecordedPrometheus, SeriesStore
from resilience.testing.observe_fakes import FakePrometheusSource
from resilience.vocabulary import FaultWindow, Phase, phases_from_faults

T0 = 1_700_000_000.0
"""Wall-clock epoch of experiment-clock 0 in synthetic contexts."""


def histogram(latencies_ms: Iterable[float]) -> HdrHistogram:
    hist = new_histogram()
    for value in latencies_ms:
        hist.record_value(max(1, int(value * 1000)))
    return hist


@dataclass
class LoadBuilder:
    """Per-second load data: ``add`` a stretch of seconds of one endpoint at a time."""

    view: MemoryLoadView = field(default_factory=MemoryLoadView)

    def add(
        self,
        endpoint: str,
        seconds: Iterable[int],
        *,
        ok: int = 10,
        latency_ms: float = 10.0,
        errors: Mapping[str, int] | None = None,
        error_latency_ms: float | None = None,
    ) -> LoadBuilder:
        """``ok`` requests at ``latency_ms`` and ``errors`` (outcome → count) at
        ``error_latency_ms`` (default ``latency_ms``) in each of ``seconds``."""
        failed = dict(errors or {})
        bad_latency = latency_ms if error_latency_ms is None else error_latency_ms
        for second in seconds:
            n_errors = sum(failed.values())
            hist = histogram([latency_ms] * ok + [bad_latency] * n_errors)
            self.view.add(endpoint, second, hist, {"ok": ok, **failed})
        return self


def fault_phases(
    *, end: float, fault: tuple[float, float] | None = None, start: float = 0.0
) -> list[Phase]:
    """Phases of a run from ``start`` to ``end`` with one fault (applied, healed) or none."""
    windows = [FaultWindow(0, "", "", fault[0], fault[1])] if fault else []
    return phases_from_faults(windows, start=start, end=end)


_ids = itertools.count(1)


def new_trace_id() -> str:
    return f"{next(_ids):032x}"


class TraceBuilder:
    """One trace, span by span; times are seconds on the experiment clock (``T0`` + t)."""

    def __init__(self, trace_id: str | None = None, *, t0: float = T0) -> None:
        self.trace_id = trace_id or new_trace_id()
        self.t0 = t0
        self.spans: list[Span] = []
        self._n = itertools.count(1)

    def add(
        self,
        service: str,
        name: str,
        start: float,
        end: float,
        *,
        kind: SpanKind = "internal",
        parent: Span | str | None = None,
        error: str | None = None,
        attributes: Mapping[str, AttrValue] | None = None,
    ) -> Span:
        """A span; ``parent`` is a span or a span id (e.g. the load engine's, not in the
        trace); ``error`` marks it failed with that status message."""
        parent_id = parent.span_id if isinstance(parent, Span) else parent
        events: tuple[SpanEvent, ...] = ()
        if error is not None:
            events = (
                SpanEvent(
                    "exception",
                    int((self.t0 + end) * 1e9),
                    {"exception.type": "Error", "exception.message": error},
                ),
            )
        span = Span(
            trace_id=self.trace_id,
            span_id=f"{next(self._n):016x}",
            parent_id=parent_id,
            service=service,
            name=name,
            kind=kind,
            start_ns=int((self.t0 + start) * 1e9),
            end_ns=int((self.t0 + end) * 1e9),
            status_code="error" if error is not None else "unset",
            status_message=error or "",
            attributes=dict(attributes or {}),
            events=events,
        )
        self.spans.append(span)
        return span

    def build(self) -> Trace:
        return Trace(self.trace_id, tuple(self.spans))


def ref(
    trace: Trace | str,
    endpoint: str,
    t: float,
    *,
    latency: float = 0.01,
    outcome: str = "ok",
    status: int = 200,
    reason: TraceReason | None = None,
    span_id: str = "ffffffffffffffff",
) -> TraceRef:
    """The load engine's record of a kept trace (``reason`` follows the outcome)."""
    trace_id = trace.trace_id if isinstance(trace, Trace) else trace
    why: TraceReason = reason or ("sampled" if outcome == "ok" else "failed")
    return TraceRef(0, trace_id, span_id, endpoint, t, latency, outcome, status, why)


def write_ack(record_id: object, endpoint: str = "POST /orders", t: float = 1.0) -> WriteAck:
    return WriteAck(0, record_id, endpoint, t, 201)


def make_context(
    experiment: Experiment,
    view: MemoryLoadView,
    phases: Sequence[Phase],
    *,
    run_dir: Path,
    faults: Sequence[FaultWindow] | None = None,
    trace_refs: Sequence[TraceRef] = (),
    traces: Iterable[Trace] = (),
    traces_unavailable: str | None = None,
    prometheus: PrometheusSource | None = None,
    prometheus_unavailable: str | None = None,
    writes: Sequence[WriteAck] = (),
    readback: ReadBack | None = None,
    readback_unavailable: str | None = None,
    series_files: Mapping[str, str] | None = None,
    recovery: RecoveryResult | None = None,
    builtin_shop: bool = False,
    faulted_dependencies: Mapping[str, set[str]] | None = None,
    t0: float = T0,
    resources: Resources | None = None,
    spike: bool = False,
) -> AnalysisContext:
    """An ``AnalysisContext``; ``faults`` default to one per experiment fault, stamped
    at the fault phase's start and end."""
    if faults is None:
        fault = next((p for p in phases if p.name == "fault"), None)
        faults = [
            FaultWindow(i, f.proxy, f.type, fault.start, fault.end)
            for i, f in enumerate(experiment.faults)
            if fault is not None
        ]
    files = dict(series_files or {})
    if (
        isinstance(prometheus, FakePrometheusSource)
        and prometheus.error is None
        and (prometheus.responder is None)
    ):
        # What the runner does after a run: the series saved under prometheus/, then read
        # back by the analysis through the recorded source.
        store = SeriesStore(run_dir)
        declared = {
            promql
            for cls in DETECTORS.values()
            for promql in cls().promql(experiment, builtin_shop).values()
        }
        series: dict[str, Sequence[Series]] = {key: [] for key in declared}
        series.update(prometheus.series)
        for promql, found in series.items():
            times = [t for one in found for t, _ in one.points] or [t0]
            files[promql] = store.add(
                promql, promql, found, start=min(times), end=max(times), step=1.0
            )
        prometheus = RecordedPrometheus(run_dir)
    return AnalysisContext(
        experiment=experiment,
        run_dir=run_dir,
        t0=t0,
        phases=list(phases),
        faults=list(faults),
        load=view,
        trace_refs=list(trace_refs),
        traces={t.trace_id: t for t in traces},
        traces_unavailable=traces_unavailable,
        prometheus=prometheus,
        prometheus_unavailable=prometheus_unavailable,
        writes=WriteSummary.from_acks(writes),
        readback=readback,
        readback_unavailable=readback_unavailable,
        series_files=files,
        recovery=recovery,
        builtin_shop=builtin_shop,
        faulted_dependencies={k: set(v) for k, v in (faulted_dependencies or {}).items()},
        resources=resources,
        spike=spike,
    )


def rig_samples(
    seconds: int, procs: Mapping[str, Mapping[int, Mapping[str, object]]], *, busy: float = 0.5
) -> list[RigSample]:
    """``seconds`` rig samples; ``procs[name][second]`` gives that process's figures in that
    second (role, cpu, cores, throttled, backends, ...), carried over to later seconds until
    changed."""
    out: list[RigSample] = []
    current: dict[str, dict[str, object]] = {}
    for second in range(seconds):
        for name, by_second in procs.items():
            if second in by_second:
                current[name] = {**current.get(name, {}), **by_second[second]}
        out.append(
            RigSample.model_validate(
                {
                    "t": second + 0.1,
                    "second": second,
                    "cores": 2,
                    "busy": busy,
                    "idle": 1 - busy,
                    "procs": {name: dict(fields) for name, fields in current.items()},
                }
            )
        )
    return out


LOAD_SPAN_ID = "ffffffffffffffff"
"""The span id the load engine puts in ``traceparent`` (the parent of the target's first span)."""
SHOP_PORTS = {"catalog": 28002, "orders": 28001, "postgres": 25432}
"""The built-in stack's default proxy listen ports (resilience/stack/config.py)."""


def shop_trace(
    endpoint: str,
    send_t: float,
    duration: float = 0.01,
    *,
    upstream: str = "catalog",
    pool_wait: float = 0.0,
    pool: str = "shared",
    pool_size: int = 10,
    pool_error: str | None = None,
    pool_in_use: int | None = None,
    attempts: int = 1,
    callee: bool = True,
    db: bool | None = None,
    error: str | None = None,
    trace_id: str | None = None,
) -> Trace:
    """A trace shaped like the shop's: gateway server span, ``upstream X`` span, its
    ``pool.acquire`` wait, one HTTP client span per attempt and (``callee``) the upstream's
    server span, which for orders (``db`` defaults to ``upstream == "orders"``) holds the
    database pool wait and an ``INSERT`` span on the postgres proxy. ``pool_error`` fails
    the ``pool.acquire`` span with that message; ``pool_in_use`` records its in-use count."""
    b = TraceBuilder(trace_id)
    method, _, route = endpoint.partition(" ")
    end = send_t + duration
    root = b.add(
        "shop-gateway",
        endpoint,
        send_t,
        end,
        kind="server",
        parent=LOAD_SPAN_ID,
        error=error,
        attributes={"http.request.method": method, "http.route": route},
    )
    up = b.add("shop-gateway", f"upstream {upstream}", send_t + 0.0005, end - 0.0005, parent=root)
    b.add(
        "shop-gateway",
        "pool.acquire",
        send_t + 0.0006,
        send_t + 0.0006 + pool_wait,
        parent=up,
        error=pool_error,
        attributes={
            "pool": pool,
            "pool.size": pool_size,
            **({} if pool_in_use is None else {"pool.in_use": pool_in_use}),
        },
    )
    first = send_t + 0.001 + pool_wait
    slot = max(end - 0.001 - first, 0.0) / max(attempts, 1)
    with_db = upstream == "orders" if db is None else db
    for i in range(attempts):
        start, stop = first + i * slot, first + (i + 1) * slot
        client = b.add(
            "shop-gateway",
            method,
            start,
            stop,
            kind="client",
            parent=up,
            attributes={
                "http.request.method": method,
                "server.address": "127.0.0.1",
                "server.port": SHOP_PORTS.get(upstream, 28000),
            },
        )
        if not callee:
            continue
        server = b.add(
            f"shop-{upstream}",
            endpoint,
            start + 0.0002,
            stop - 0.0002,
            kind="server",
            parent=client,
            attributes={"http.request.method": method, "http.route": route},
        )
        if with_db:
            b.add(
                f"shop-{upstream}",
                "pool.acquire",
                start + 0.0003,
                start + 0.0004,
                parent=server,
                attributes={"pool": "orders-db", "pool.size": 4},
            )
            b.add(
                f"shop-{upstream}",
                "INSERT orders",
                start + 0.0005,
                stop - 0.0003,
                kind="client",
                parent=server,
                attributes={
                    "db.system": "postgresql",
                    "net.peer.name": "127.0.0.1",
                    "net.peer.port": SHOP_PORTS["postgres"],
                },
            )
    return b.build()


SHOP_EXPERIMENT = """
name: synthetic
load:
  stages: [{duration: 38s, users: 10, spawn_rate: 10}]
  client_timeout: 5s
  workload:
    requests:
      - {name: GET /catalog/items, path: /catalog/items, weight: 4}
      - {name: "GET /catalog/items/{item_id}", path: "/catalog/items/{int:1:50}", weight: 3}
      - name: POST /orders
        method: POST
        path: /orders
        weight: 2
        json: {item_id: 1, quantity: 1, client_ref: "{uuid}"}
        expect: [201]
        capture: {order_id: id}
        write: {id_field: id, read_back: "/orders/{id}", list: /orders/ids}
      - {name: "GET /orders/{order_id}", path: "/orders/{order_id}", weight: 1}
"""
"""The db-hang smoke workload against the shop, without faults (``shop_experiment`` adds)."""

SHOP_ENDPOINTS = (
    "GET /catalog/items",
    "GET /catalog/items/{item_id}",
    "POST /orders",
    "GET /orders/{order_id}",
)


def shop_experiment(extra: str = "", *, fault: bool = True) -> Experiment:
    """The shop workload, with a hang on the postgres proxy from 10 s to 22 s when
    ``fault``, plus ``extra`` YAML (top-level keys such as ``detectors:`` or ``slo:``)."""
    from resilience.experiment.loader import parse_experiment

    text = SHOP_EXPERIMENT
    if fault:
        text += "faults:\n  - {at: 10s, duration: 12s, proxy: postgres, type: hang}\n"
    return parse_experiment(text + extra, file="<synthetic>")
