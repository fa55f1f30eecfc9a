"""After the load: gather into the run directory everything the analysis will judge from.

The analysis reads only the run directory (``resilience.analysis.analyse``), so whatever
needs the network is fetched here, once, right after the load stops:

- **Prometheus**: every expression the run's checks and detectors read, range-queried over
  the whole run at one-second steps (``prometheus/`` and its index);
- **traces**: the failed and slow requests' trace ids first, spread over endpoints and
  phases, plus baseline samples of every endpoint (the dependency footprint is learned
  from those), fetched from the trace backend (``traces/``);
- **read-back**: every acknowledged write read back from the target (``readback.json``).

Each source that does not answer is recorded with its reason in ``evidence.json``; the
run still gets a verdict, and the checks and findings that needed the source say "not
evaluated" and why. Every call has a timeout and every step a time budget.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import httpx

from resilience.analysis.checks import builtin_shop_checks
from resilience.analysis.pipeline import DETECTORS
from resilience.analysis.resources import resource_promql
from resilience.errors import ObserveError
from resilience.experiment.captures import MISSING, parse_capture
from resilience.experiment.detector_params import declared
from resilience.experiment.model import Experiment, WriteSpec
from resilience.load.plan import RequestPlan, request_plan
from resilience.load.template import (
    Answer,
    OffTarget,
    Rendered,
    Send,
    StepFailure,
    Steps,
    UserState,
    compile_request_templates,
    compile_template,
)
from resilience.observe.prometheus import PrometheusSource
from resilience.observe.spans import Trace
from resilience.observe.traces import TraceCollection, TraceSource, collect_traces
from resilience.redact import Redactor
from resilience.rundir.evidence import Evidence, SourceEvidence, SourceStatus
from resilience.rundir.journal import Journal, JournalData
from resilience.rundir.layout import RunDir
from resilience.rundir.load import iter_trace_refs, read_writes, requests_per_second
from resilience.rundir.readback import EndpointReadBack, ReadAnswer, ReadBack
from resilience.rundir.records import TraceRef, WriteAck
from resilience.rundir.series import SeriesStore
from resilience.rundir.traces import save_collection
from resilience.runner.own_spans import CLIENT_SERVICE, OwnSpans, export_for_run, jaeger_trace_ui
from resilience.runner.parts import Parts
from resilience.stack import StackConfig
from resilience.tls import system_tls
from resilience.vocabulary import Phase, iso_utc, stress_phase

logger = logging.getLogger(__name__)

MAX_TRACES = 240
"""Traces fetched per run: enough for evidence, bounded so the gathering stays quick."""
BASELINE_TRACES_PER_ENDPOINT = 8
TRACE_DEADLINE = 8.0
"""Seconds to wait for traces the backend has not ingested. The shop exports spans within a
second or two; a trace still missing after this belongs to a request the target has not
finished yet (it is still queued or stuck) and will not help the verdict."""
LATEST_PER_ENDPOINT = 4
LATEST_TRACES = 64
"""Trace ids of the run's last requests (the ``LATEST_PER_ENDPOINT`` newest of each
endpoint, at most ``LATEST_TRACES``), looked up when chosen ones hold no span of the target:
a backend that keeps only its most recent traces (the stack's Jaeger keeps 200,000, about
17 minutes of the shop at 200 req/s) has dropped a long run's early ones, and that is the
backend's loss, not the target's silence."""
MIN_STORE_TRACES = 10_000
"""No trace store worth the name keeps fewer traces (Jaeger's memory store: 1,000,000 by
default, 200,000 in the stack): a trace followed by fewer requests cannot have been pushed
out, and one without the target's spans then says something about the target (its tracing
not started yet, an endpoint it does not trace), never about the store."""
LATEST_DEADLINE = 3.0
"""Seconds to wait for the latest requests' traces (they ended when the load did)."""
SERIES_MARGIN_S = 2.0
"""Seconds gathered before the load's start and after its end."""
MAX_POINTS = 10_000
"""Prometheus refuses range queries of more than 11,000 points: longer runs get a wider step."""
_LIST_KEYS = ("ids", "items", "data", "results")


@dataclass(frozen=True)
class Sources:
    """Where the evidence comes from (each None when the run has no such source)."""

    prometheus: PrometheusSource | None
    traces: TraceSource | None
    target_url: str | None
    prometheus_endpoint: str | None = None
    traces_endpoint: str | None = None
    trace_ui: str | None = None
    """The trace UI's URL for one trace (``{trace_id}`` in it), recorded for the reports."""
    own_spans: SourceEvidence | None = None
    """What the load engine's own spans export did (recorded in evidence.json)."""
    client_spans: Mapping[str, str] = field(default_factory=dict)
    """Trace id -> the client span exported for it: the trace fetch waits for it."""


def gather(
    run_dir: Path,
    experiment: Experiment,
    journal: JournalData,
    phases: Sequence[Phase],
    sources: Sources,
    *,
    say: Callable[[str], None] = lambda _m: None,
    redactor: Redactor | None = None,
) -> Evidence:
    """Fetch the run's evidence into ``run_dir``; returns (and saves) the manifest. Every
    file is written through ``redactor`` (the run's; the rules alone when None)."""
    layout = RunDir(Path(run_dir))
    redactor = redactor or Redactor()
    evidence = Evidence(trace_ui=sources.trace_ui, client_spans=sources.own_spans)
    say("gathering Prometheus series")
    evidence.prometheus = gather_series(
        layout, experiment, journal, phases, sources, redactor=redactor
    )
    say("fetching traces")
    evidence.traces = gather_traces(layout, phases, sources, redactor=redactor)
    writes = read_writes(layout.path)
    if writes:
        say(f"reading back {len(writes)} acknowledged writes")
    evidence.readback = gather_readback(
        layout, experiment, writes, phases, sources, redactor=redactor
    )
    evidence.gathered_at = iso_utc(time.time())
    evidence.save(layout.path, redactor=redactor)
    return evidence


def gather_from_parts(
    run_dir: Path,
    experiment: Experiment,
    journal: Journal,
    phases: Sequence[Phase],
    parts: Parts,
    *,
    config: StackConfig,
    target_url: str,
    say: Callable[[str], None] = lambda _m: None,
    redactor: Redactor | None = None,
) -> Evidence:
    """``gather`` from the run's Prometheus and trace backend (the stack's or the user's),
    after exporting the load engine's own client spans to the stack's Jaeger (so the trace
    fetch finds the load request as each trace's root; the journal as written goes into
    the run span: it must not carry the target URL's password). Every file through
    ``redactor``. What a run and a game-day session both do once their load has stopped."""
    own = _export_own_spans(run_dir, journal.written(), phases, parts, config)
    prometheus = parts.prometheus_source()
    traces = parts.trace_source()
    try:
        return gather(
            run_dir,
            experiment,
            journal.data,
            phases,
            Sources(
                prometheus=prometheus,
                traces=traces,
                target_url=target_url,
                prometheus_endpoint=parts.prometheus.url,
                traces_endpoint=parts.traces.url,
                trace_ui=trace_ui_of(experiment, parts),
                own_spans=own.evidence,
                client_spans=own.client_spans,
            ),
            say=say,
            redactor=redactor,
        )
    finally:
        prometheus.close()
        traces.close()


def trace_ui_of(experiment: Experiment, parts: Parts) -> str | None:
    """Where a person opens a trace: the experiment's ``observe.trace_ui``, else the Jaeger
    UI beside the query API the run used (the stack's or the user's); Tempo has none."""
    observe = experiment.observe
    if observe is not None and observe.trace_ui:
        return observe.trace_ui
    return jaeger_trace_ui(parts.traces.url) if parts.traces.kind == "jaeger" else None


def _export_own_spans(
    run_dir: Path, journal: JournalData, phases: Sequence[Phase], parts: Parts, config: StackConfig
) -> OwnSpans:
    """The load's client spans go to the stack's Jaeger (OTLP/HTTP); a trace backend of the
    user's is known by its query URL only, so nothing is exported there."""
    if parts.traces.own:
        reason = (
            f"not exported: your trace backend ({parts.traces.where()}) is known by its query "
            "URL only, not by an OTLP endpoint"
        )
        return OwnSpans(SourceEvidence(status="unavailable", reason=reason))
    return export_for_run(run_dir, journal, phases, config.url("jaeger_otlp_http") + "/v1/traces")


# -- Prometheus ---------------------------------------------------------------------------


def expressions(experiment: Experiment, builtin: bool) -> dict[str, str]:
    """PromQL -> a name for every series the run's checks and detectors read."""
    wanted: dict[str, str] = {}
    for check in experiment.checks:
        wanted.setdefault(check.promql, check.name)
    if builtin:
        for builtin_check in builtin_shop_checks():
            wanted.setdefault(builtin_check.promql, builtin_check.name)
    for kind, cls in DETECTORS.items():
        settings = next((v for k, v in experiment.detectors.items() if k == kind), None)
        if settings is not None and not settings.enabled:
            continue
        for name, promql in cls().promql(experiment, builtin).items():
            wanted.setdefault(promql, name)
    # The resources behind the load (pools, process metrics): the breaking point reads them
    # whichever detectors are on.
    for name, promql in resource_promql(experiment, builtin).items():
        wanted.setdefault(promql, name)
    return wanted


def gather_series(
    layout: RunDir,
    experiment: Experiment,
    journal: JournalData,
    phases: Sequence[Phase],
    sources: Sources,
    *,
    redactor: Redactor | None = None,
) -> SourceEvidence:
    wanted = expressions(experiment, bool(journal.builtin))
    if not wanted:
        return SourceEvidence(status="not_needed")
    store = SeriesStore(layout.path, redactor=redactor)
    start_t = min((p.start for p in phases), default=0.0)
    end_t = max((p.end for p in phases), default=journal.load_end or 0.0)
    start = journal.t0 + min(start_t, 0.0) - SERIES_MARGIN_S
    end = journal.t0 + end_t + SERIES_MARGIN_S
    step = max(1.0, math.ceil((end - start) / MAX_POINTS))
    source = sources.prometheus
    if source is None:
        reason = "no Prometheus for this run"
        for promql, name in wanted.items():
            store.failed(name, promql, start=start, end=end, reason=reason)
        return SourceEvidence(status="unavailable", wanted=len(wanted), reason=reason)
    try:
        # The query API, not /api/v1/targets: a user's Prometheus-compatible backend (Mimir,
        # an authenticating gateway) may serve queries only.
        source.query("1")
    except ObserveError as exc:
        reason = f"Prometheus at {source.endpoint} did not answer: {exc}"
        for promql, name in wanted.items():
            store.failed(name, promql, start=start, end=end, reason=reason)
        return SourceEvidence(
            status="unavailable", endpoint=source.endpoint, wanted=len(wanted), reason=reason
        )
    gathered = 0
    errors: list[str] = []
    for promql, name in wanted.items():
        try:
            series = source.query_range(promql, start, end, step)
        except ObserveError as exc:
            logger.warning("series %r not gathered: %s", name, exc)
            store.failed(name, promql, start=start, end=end, reason=str(exc))
            errors.append(f"{name}: {exc}")
            continue
        store.add(name, promql, series, start=start, end=end, step=step)
        gathered += 1
    status = "gathered" if not errors else "partial" if gathered else "unavailable"
    return SourceEvidence(
        status=status,
        endpoint=source.endpoint,
        wanted=len(wanted),
        gathered=gathered,
        reason="; ".join(errors[:3]) or None,
    )


# -- traces -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceSelection:
    """The trace ids to look up (id -> endpoint), and the run's latest requests besides
    them (newest last), asked for only when the chosen ones hold nothing of the target."""

    chosen: dict[str, str]
    latest: tuple[TraceRef, ...] = ()
    times: dict[str, float] = field(default_factory=dict)
    """Each chosen id's request: its second of the run."""


def select_traces(refs: Iterable[TraceRef], phases: Sequence[Phase]) -> TraceSelection:
    """Failed and slow requests first, spread over endpoints and phases (a game day's
    phases repeat per window: each gets its share), plus baseline samples of every
    endpoint (the dependency footprint is learned from those).

    One pass, bounded: no bucket can give more than ``MAX_TRACES`` ids to the round-robin,
    so each keeps only its first ones (with room for those the baseline samples take);
    a long run keeps hundreds of thousands of trace ids. Each endpoint's
    ``LATEST_PER_ENDPOINT`` latest requests are kept aside in a bounded heap."""
    chosen: dict[str, str] = {}
    latest: dict[str, list[tuple[float, int, TraceRef]]] = {}
    times: dict[str, float] = {}
    baselines = [p for p in phases if p.name == "baseline"]
    per_endpoint: dict[str, int] = {}
    buckets: dict[tuple[str, str, str], list[TraceRef]] = {}
    for seq, ref in enumerate(refs):
        newest = latest.setdefault(ref.endpoint, [])
        if len(newest) < LATEST_PER_ENDPOINT:
            heapq.heappush(newest, (ref.t, seq, ref))
        elif ref.t > newest[0][0]:
            heapq.heapreplace(newest, (ref.t, seq, ref))
        in_baseline = any(b.contains(ref.t) for b in baselines)
        taken = per_endpoint.get(ref.endpoint, 0)
        if in_baseline and ref.outcome == "ok" and taken < BASELINE_TRACES_PER_ENDPOINT:
            per_endpoint[ref.endpoint] = taken + 1
            chosen[ref.trace_id] = ref.endpoint
            times[ref.trace_id] = ref.t
            continue
        # By the phase's place, not its name: a game day's windows each get examples.
        phase = next(
            (f"{i:04d} {p.name}" for i, p in enumerate(phases) if p.contains(ref.t)), "other"
        )
        bucket = buckets.setdefault((phase, ref.endpoint, ref.reason), [])
        if len(bucket) < _BUCKET_KEEP:
            bucket.append(ref)
    picked = set(chosen)  # a trace id taken as a baseline sample is no bucket's example
    queues = sorted(
        (
            (key, [r for r in refs_of if r.trace_id not in picked])
            for key, refs_of in buckets.items()
        ),
        key=lambda kv: (kv[0][2] == "sample", kv[0]),
    )
    # Round-robin over the buckets so every (phase, endpoint, reason) gets examples.
    depth = 0
    while len(chosen) < MAX_TRACES and any(depth < len(q) for _, q in queues):
        for _, queue in queues:
            if depth < len(queue) and len(chosen) < MAX_TRACES:
                chosen[queue[depth].trace_id] = queue[depth].endpoint
                times[queue[depth].trace_id] = queue[depth].t
        depth += 1
    aside = sorted(
        (item for heap in latest.values() for item in heap if item[2].trace_id not in chosen),
        reverse=True,
    )[:LATEST_TRACES]
    return TraceSelection(chosen, tuple(ref for _, _, ref in reversed(aside)), times)


_BUCKET_KEEP = MAX_TRACES + 64 * BASELINE_TRACES_PER_ENDPOINT
"""Refs a bucket keeps: what the round-robin could take, plus what baseline samples (of up
to 64 endpoints) may remove from it."""


def gather_traces(
    layout: RunDir, phases: Sequence[Phase], sources: Sources, *, redactor: Redactor | None = None
) -> SourceEvidence:
    selection = select_traces(iter_trace_refs(layout.path), phases)
    wanted = selection.chosen
    if not wanted:
        return SourceEvidence(status="not_needed", reason="the load engine kept no trace ids")
    if sources.traces is None:
        return SourceEvidence(
            status="unavailable", wanted=len(wanted), reason="no trace backend for this run"
        )
    collection = collect_traces(
        sources.traces,
        dict(wanted),
        concurrency=8,
        deadline_s=TRACE_DEADLINE,
        require_spans={t: s for t, s in sources.client_spans.items() if t in wanted},
    )
    dropped = _dropped_by_backend(
        sources, selection, collection, lambda: requests_per_second(layout.path)
    )
    if dropped is not None:
        return _with_latest(layout, selection, sources, collection, dropped, redactor=redactor)
    save_collection(collection, dict(wanted), layout.traces, redactor=redactor)
    got = len(collection.traces)
    # The load generator exports its own client span for each kept request: a trace that
    # holds nothing else says nothing about the target.
    from_target = sum(1 for trace in collection.traces.values() if _of_target(trace))
    reason: str | None
    status: SourceStatus
    if got and not from_target:
        return SourceEvidence(
            status="unavailable",
            endpoint=sources.traces_endpoint,
            wanted=len(wanted),
            gathered=got,
            reason=f"the target exported no spans: none of {len(wanted)} trace ids looked up "
            f"holds a span of the target (only the load generator's own {CLIENT_SERVICE} "
            "spans)",
            target_spans=False,
        )
    if collection.unavailable and not got:
        reason = next(iter(collection.missing.values()), "trace backend unavailable")
        status = "unavailable"
    elif got == 0:
        reason = (
            f"the target exported no spans: none of {len(wanted)} trace ids looked up was found"
        )
        status = "unavailable"
    else:
        reason = None if got == len(wanted) else f"{len(wanted) - got} of {len(wanted)} missing"
        status = "gathered" if got == len(wanted) else "partial"
    return SourceEvidence(
        status=status,
        endpoint=sources.traces_endpoint,
        wanted=len(wanted),
        gathered=got,
        reason=reason,
    )


def _of_target(trace: Trace) -> bool:
    return any(span.service != CLIENT_SERVICE for span in trace.spans)


@dataclass(frozen=True)
class _Dropped:
    """Chosen traces the backend no longer holds, and the run's latest that it does."""

    ids: tuple[str, ...]
    latest: TraceCollection
    """The latest requests' traces that hold a span of the target."""


def _dropped_by_backend(
    sources: Sources,
    selection: TraceSelection,
    chosen: TraceCollection,
    per_second: Callable[[], Mapping[int, int]],
) -> _Dropped | None:
    """The chosen traces a backend that keeps only its most recent ones has dropped.

    A store with a fixed capacity (Jaeger's memory store is a ring) drops its oldest traces
    as new ones come, and the load engine exports its own client spans only after the load,
    so a long run's early traces come back holding only those, or not at all. Suspected:
    every chosen trace without a span of the target, requested before the first chosen one
    that has some. The run's latest requests of each endpoint are then looked up; a suspect
    counts as dropped only if a later trace of its own endpoint holds the target's spans
    (an endpoint the target does not trace stays what it is: requests that left no span),
    and at least ``MIN_STORE_TRACES`` requests were sent after it (``per_second``: the
    run's requests in each second). ``None`` when no suspect is confirmed."""
    assert sources.traces is not None
    if chosen.unavailable:
        return None
    holding = [
        selection.times[tid]
        for tid, trace in chosen.traces.items()
        if _of_target(trace) and tid in selection.times
    ]
    before = min(holding, default=math.inf)
    suspects = [
        tid
        for tid in selection.chosen
        if selection.times.get(tid, math.inf) < before
        and not (tid in chosen.traces and _of_target(chosen.traces[tid]))
    ]
    if suspects:
        suspects = _followed_by(suspects, selection.times, per_second(), MIN_STORE_TRACES)
    if not suspects:
        return None
    probe = (
        collect_traces(
            sources.traces,
            {r.trace_id: r.endpoint for r in selection.latest},
            concurrency=8,
            deadline_s=LATEST_DEADLINE,
            require_spans={
                r.trace_id: sources.client_spans[r.trace_id]
                for r in selection.latest
                if r.trace_id in sources.client_spans
            },
        )
        if selection.latest
        else TraceCollection()
    )
    latest = TraceCollection(
        traces={tid: t for tid, t in probe.traces.items() if _of_target(t)},
        partial=probe.partial & {tid for tid, t in probe.traces.items() if _of_target(t)},
    )
    # The last second of each endpoint whose trace holds the target's spans.
    last_held: dict[str, float] = {}
    for r in selection.latest:
        if r.trace_id in latest.traces:
            last_held[r.endpoint] = max(last_held.get(r.endpoint, -math.inf), r.t)
    for tid, trace in chosen.traces.items():
        endpoint = selection.chosen.get(tid)
        if endpoint is not None and _of_target(trace) and tid in selection.times:
            last_held[endpoint] = max(last_held.get(endpoint, -math.inf), selection.times[tid])
    dropped = tuple(
        tid
        for tid in suspects
        if last_held.get(selection.chosen[tid], -math.inf) > selection.times[tid]
    )
    if not dropped:
        return None
    latest.missing.update(probe.missing)
    for tid in probe.traces.keys() - latest.traces.keys():
        latest.missing[tid] = f"only the load generator's own {CLIENT_SERVICE} span"
    return _Dropped(dropped, latest)


def _followed_by(
    ids: list[str], times: Mapping[str, float], per_second: Mapping[int, int], least: int
) -> list[str]:
    """The ``ids`` whose request was followed by at least ``least`` requests of the run."""
    after: dict[int, int] = {}
    total = 0
    for second in sorted(per_second, reverse=True):
        after[second] = total  # sent in the seconds after this one
        total += per_second[second]
    return [tid for tid in ids if after.get(int(times[tid]), 0) >= least]


def _with_latest(
    layout: RunDir,
    selection: TraceSelection,
    sources: Sources,
    chosen: TraceCollection,
    dropped: _Dropped,
    *,
    redactor: Redactor | None,
) -> SourceEvidence:
    """Save the chosen traces the backend still holds and the latest in place of the
    dropped ones (indexed as missing, with why), and say what happened."""
    why = (
        "dropped by the trace backend: it keeps only its most recent traces, and the run's "
        "latest hold the target's spans"
    )
    kept = TraceCollection(
        traces={
            tid: t
            for tid, t in {**chosen.traces, **dropped.latest.traces}.items()
            if tid not in dropped.ids
        },
        missing={**chosen.missing, **dropped.latest.missing},
        partial=(chosen.partial | dropped.latest.partial) - set(dropped.ids),
    )
    for tid in dropped.ids:
        kept.missing[tid] = why
    asked = {**selection.chosen, **{r.trace_id: r.endpoint for r in selection.latest}}
    save_collection(kept, asked, layout.traces, redactor=redactor)
    times = [selection.times[tid] for tid in dropped.ids]
    n_latest = len(dropped.latest.traces)
    whose = (
        f"the {len(selection.chosen)} trace ids chosen"
        if len(dropped.ids) == len(selection.chosen)
        else f"{len(dropped.ids)} of the {len(selection.chosen)} trace ids chosen"
    )
    saved = (
        f"; {n_latest} of the run's last {len(selection.latest)} requests' traces, looked up "
        "besides, are saved in their place"
        if selection.latest
        else ""
    )
    logger.warning("the trace backend no longer holds %s%s", whose, saved)
    return SourceEvidence(
        status="partial",
        endpoint=sources.traces_endpoint,
        wanted=len(asked),
        gathered=len(kept.traces),
        reason=f"the trace backend no longer holds the target's spans of {whose} (requests "
        f"from {min(times):.0f} s to {max(times):.0f} s of the run), while later requests' "
        "traces of the same endpoints hold them: it keeps only its most recent traces and a "
        f"run this long outlived them (the target did export spans){saved}",
    )


# -- read-back ----------------------------------------------------------------------------

HttpGet = Callable[[str], tuple[int, Any]]


def gather_readback(
    layout: RunDir,
    experiment: Experiment,
    writes: Sequence[WriteAck],
    phases: Sequence[Phase],
    sources: Sources,
    *,
    redactor: Redactor | None = None,
) -> SourceEvidence:
    if not writes:
        return SourceEvidence(status="not_needed")
    # Endpoint names as the run directory writes them (masked): the acknowledged writes
    # were read from there, the paths and headers to read with come from the experiment.
    names = (redactor or Redactor()).redact_text
    if sources.target_url is None:
        reason = "no target to read back from"
        ReadBack(error=reason).save(layout.path, redactor=redactor)
        return SourceEvidence(status="unavailable", wanted=len(writes), reason=reason)
    started = time.monotonic()
    with httpx.Client(
        base_url=sources.target_url, timeout=5.0, trust_env=False, verify=system_tls()
    ) as http:

        def getter(headers: Mapping[str, str]) -> HttpGet:
            def http_get(path: str) -> tuple[int, Any]:
                response = http.get(path, headers=dict(headers))
                try:
                    body = response.json()
                except ValueError:
                    body = None
                return response.status_code, body

            return http_get

        headers, notes = readback_headers(experiment, httpx_sender(http), target=sources.target_url)
        readers = {names(endpoint): getter(h) for endpoint, h in headers.items() if h}
        readback = read_back(
            experiment,
            writes,
            phases,
            getter({}),
            readers=readers,
            names=names,
            target=sources.target_url,
        )
        shown_notes = {names(endpoint): lines for endpoint, lines in notes.items()}
        for endpoint, recorded in readback.endpoints.items():
            recorded.notes[:0] = shown_notes.get(endpoint, [])
    readback.seconds = round(time.monotonic() - started, 3)
    readback.save(layout.path, redactor=redactor)
    planned = sum(len(e.planned) for e in readback.endpoints.values())
    answered = sum(
        1 for e in readback.endpoints.values() for r in e.reads.values() if r.status is not None
    )
    if planned and not answered:
        return SourceEvidence(
            status="unavailable",
            endpoint=sources.target_url,
            wanted=planned,
            reason="the target answered none of the read-backs",
        )
    return SourceEvidence(
        status="gathered" if answered == planned else "partial",
        endpoint=sources.target_url,
        wanted=planned,
        gathered=answered,
    )


def httpx_sender(http: httpx.Client) -> Send:
    """Send a rendered step with httpx: its status, JSON (or None) and headers."""

    def send(rendered: Rendered) -> Answer:
        response = http.request(
            rendered.method,
            rendered.path,
            headers=rendered.headers,
            json=rendered.json,
            content=rendered.content,
        )
        try:
            body = response.json()
        except ValueError:
            body = None
        return Answer(response.status_code, body, response.headers.get)

    return send


def readback_headers(
    experiment: Experiment, send: Send, *, target: str | None = None
) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
    """Per writing endpoint, the headers its read-back GETs carry (``write.headers``, or by
    default the writing request's own), resolved with the captures of the workload's setup
    and on_start steps, which are run once here (a log-in with the same credentials); and
    per endpoint the notes on what could not be resolved."""
    workload = experiment.load.workload
    wanted = {
        r.endpoint: dict(r.write.headers if r.write.headers is not None else r.headers)
        for r in workload.requests or []
        if r.write is not None
    }
    templates = {
        endpoint: {name: compile_template(value) for name, value in headers.items()}
        for endpoint, headers in wanted.items()
    }
    needed = {v for headers in templates.values() for t in headers.values() for v in t.needs}
    state = UserState(rng=random.Random(0))
    step_failure = None
    if needed and (workload.setup or workload.on_start):
        steps = Steps.compile(
            [request_plan(s) for s in (*workload.setup, *workload.on_start)], target
        )
        try:
            step_failure = steps.run(state, send)
        except OffTarget as exc:  # the load refused it too: never sent
            step_failure = StepFailure("steps", str(exc))
        if step_failure is None:
            logger.info("read-back: the setup steps captured %s", ", ".join(sorted(state.captured)))
    resolved: dict[str, dict[str, str]] = {}
    notes: dict[str, list[str]] = {}
    for endpoint, headers in templates.items():
        resolved[endpoint] = {}
        for name, template in headers.items():
            missing = sorted(template.needs - state.captured)
            if not missing:
                resolved[endpoint][name] = template.render(state)
                continue
            why = (
                f"the steps failed ({step_failure})"
                if step_failure is not None
                else "only a weighted request captures it (set write.headers)"
            )
            notes.setdefault(endpoint, []).append(
                f"read back without the {name} header: {{{', '.join(missing)}}} not captured: {why}"
            )
    return resolved, notes


def _setting(experiment: Experiment, name: str) -> float:
    """A ``data_loss`` parameter: the experiment's, else its declared default."""
    settings = next((v for k, v in experiment.detectors.items() if k == "data_loss"), None)
    if settings is None or name not in settings.params:
        return float(declared("data_loss", name).default or 0)
    return float(settings.params[name])


def read_back(
    experiment: Experiment,
    writes: Sequence[WriteAck],
    phases: Sequence[Phase],
    http_get: HttpGet,
    *,
    readers: Mapping[str, HttpGet] | None = None,
    names: Callable[[str], str] = str,
    target: str | None = None,
) -> ReadBack:
    """Read back every acknowledged write through its request's ``list`` and ``read_back``
    paths, within the ``data_loss`` detector's budget (``budget_s``, ``max_reads``,
    ``concurrency``); records answers, judges nothing. ``readers`` replace ``http_get``
    for some endpoints (their read-backs carry headers). ``names`` gives a request's
    endpoint name as the writes (and ``readers``) name it: masked, as the run directory
    writes it. ``target`` bounds where a ``read_back`` that starts with ``{id}`` (the id
    is the record's URL) may go: an id off the target's host is not read."""
    specs = {names(r.endpoint): r.write for r in experiment.load.workload.requests or [] if r.write}
    deadline = time.monotonic() + _setting(experiment, "budget_s")
    budget = int(_setting(experiment, "max_reads"))
    workers = max(1, int(_setting(experiment, "concurrency")))
    fault = stress_phase(phases)
    by_endpoint: dict[str, list[WriteAck]] = {}
    for ack in writes:
        by_endpoint.setdefault(ack.endpoint, []).append(ack)
    result = ReadBack()
    for endpoint, acks in sorted(by_endpoint.items()):
        spec = specs.get(endpoint)
        if spec is None:
            continue
        get = (readers or {}).get(endpoint, http_get)
        recorded = _read_endpoint(
            endpoint,
            spec,
            acks,
            fault,
            get,
            budget=budget,
            deadline=deadline,
            workers=workers,
            target=target,
        )
        budget -= len(recorded.planned)
        result.endpoints[endpoint] = recorded
    return result


def _read_endpoint(
    endpoint: str,
    spec: WriteSpec,
    acks: Sequence[WriteAck],
    fault: Phase | None,
    http_get: HttpGet,
    *,
    budget: int,
    deadline: float,
    workers: int,
    target: str | None = None,
) -> EndpointReadBack:
    recorded = EndpointReadBack(endpoint=endpoint, id_field=spec.id_field, list_path=spec.list)
    first_ack: dict[str, WriteAck] = {}
    for ack in acks:
        first_ack.setdefault(str(ack.id), ack)
    listed: set[str] | None = None
    if spec.list is not None:
        answered = _read_all(
            http_get, [(spec.list, spec.list)], spec.id_field, deadline, workers
        ).get(spec.list)
        listing, body = answered if answered is not None else (None, None)
        recorded.listing = listing
        if listing is None or not listing.present:
            why = (
                "not read within the time budget"
                if listing is None
                else listing.error or f"HTTP {listing.status}"
            )
            recorded.notes.append(f"list {spec.list} failed ({why}): read back one by one")
        else:
            ids = parse_listing(body, spec.id_field)
            if ids is None:
                recorded.notes.append(
                    f"list {spec.list} answered a shape not understood: read back one by one"
                )
            else:
                recorded.listed_ids = ids
                listed = {str(i) for i in ids}
    if listed is not None:
        to_read = [k for k in first_ack if k not in listed]
    else:
        # Faulted-window writes first: the likeliest to be lost if the budget runs out.
        order = sorted(
            first_ack.values(),
            key=lambda a: (not (fault is not None and a.t >= fault.start), a.t),
        )
        to_read = [str(a.id) for a in order]
    if len(to_read) > budget:
        recorded.notes.append(
            f"read back {max(budget, 0)} of {len(to_read)} writes (max_reads reached)"
        )
        to_read = to_read[: max(budget, 0)]
    recorded.planned = to_read
    path_of = _read_back_path(spec.read_back, target)
    paths = []
    for key in to_read:
        try:
            paths.append((key, path_of(key)))
        except OffTarget as exc:
            recorded.notes.append(f"not read back: {exc}")
    recorded.reads = {
        key: answer
        for key, (answer, _) in _read_all(http_get, paths, spec.id_field, deadline, workers).items()
    }
    return recorded


def _read_back_path(read_back: str, target: str | None) -> Callable[[str], str]:
    """The GET path (or URL) of one id: ``{id}`` is filled in URL-quoted, or as it is
    (resolved against the target, which it may not leave) when ``read_back`` starts with it."""
    plan = RequestPlan(name="read-back", path=read_back)
    compiled = compile_request_templates([plan], target)[0]

    def path_of(key: str) -> str:
        return compiled.render_path(UserState(rng=random.Random(0), variables={"id": key}))

    return path_of


def parse_listing(body: Any, id_field: str) -> list[Any] | None:
    """The ids a list endpoint answered, or ``None`` when the shape is not understood."""
    source = parse_capture(id_field)
    items = body
    if isinstance(body, dict):
        items = next((body[k] for k in _LIST_KEYS if isinstance(body.get(k), list)), None)
    if not isinstance(items, list):
        return None
    ids: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            value = source.read(item)
            if value is MISSING:
                return None
            ids.append(value)
        elif isinstance(item, str | int) and not isinstance(item, bool):
            ids.append(item)
        else:
            return None
    return ids


def _read_all(
    http_get: HttpGet,
    paths: Sequence[tuple[str, str]],
    id_field: str,
    deadline: float,
    workers: int,
) -> dict[str, tuple[ReadAnswer, Any]]:
    """Read ``(key, path)`` pairs on a small pool until done or ``deadline``: per key the
    answer as recorded and the body."""
    if not paths:
        return {}
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="read-back")
    results: dict[str, tuple[ReadAnswer, Any]] = {}
    try:
        pending: dict[Future[tuple[ReadAnswer, Any]], str] = {}
        queue = iter(paths)
        # Keep at most twice as many reads as workers queued so a stop leaves little to cancel.
        for key, path in _take(queue, 2 * workers):
            pending[pool.submit(_read_twice, http_get, path, id_field)] = key
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            done, _ = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
            for future in done:
                results[pending.pop(future)] = future.result()
            for key, path in _take(queue, len(done)):
                pending[pool.submit(_read_twice, http_get, path, id_field)] = key
    finally:
        # Do not wait for a read stuck past the budget: its thread ends with its timeout.
        pool.shutdown(wait=False, cancel_futures=True)
    return results


def _take(iterator: Iterator[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    return list(islice(iterator, max(n, 0)))


def _read(http_get: HttpGet, path: str, id_field: str) -> tuple[ReadAnswer, Any]:
    """One GET: the answer as recorded, and the body; any failure means "not verified"."""
    try:
        status, body = http_get(path)
    except Exception as exc:
        return ReadAnswer(None, f"{type(exc).__name__}: {exc}"), None
    source = parse_capture(id_field)
    record_id = source.read(body) if source.from_body and isinstance(body, dict) else None
    if record_id is MISSING:
        record_id = None
    ref = body.get("client_ref") if isinstance(body, dict) else None
    answer = ReadAnswer(
        status, record_id=record_id, client_ref=ref if isinstance(ref, str) and ref else None
    )
    return answer, body


def _read_twice(http_get: HttpGet, path: str, id_field: str) -> tuple[ReadAnswer, Any]:
    """One retry for a read that neither found nor missed the record (a transient error)."""
    read, body = _read(http_get, path, id_field)
    if read.present or read.absent:
        return read, body
    return _read(http_get, path, id_field)
