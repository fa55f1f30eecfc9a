"""Live load metrics in Prometheus' text format while a run or a game day is going.

The orchestrator (and a game-day session) serves, on ``127.0.0.1:<Ports.load_metrics>``,
what its load engine measures, so the stack's Prometheus scrapes it beside the target's own
metrics and a dashboard can overlay them:

``resilience_load_requests_total{run, endpoint}``         requests completed (counter)
``resilience_load_errors_total{run, endpoint, outcome}``  failed ones by outcome (counter)
``resilience_load_latency_seconds{run, endpoint}``         latency histogram (buckets, sum, count)
``resilience_load_users{run}``, ``resilience_load_in_flight{run}``   the load's state (gauges)
``resilience_fault_active{run, fault, proxy, type}``      1 while a fault is in effect, else 0
``resilience_run_phase{run, phase}``                      1 for the current phase
``resilience_run_info{run, experiment, profile}``         1 (names the run)

Fed by the load recorder's completion-time stream (``LiveTick``: every worker's completions
of each second), so counters move when requests complete, as any client's metrics do; the
run directory's per-second data stays keyed by send time (docs/architecture.md). A port in
use is logged and the run goes on without the export.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from resilience.faults.timeline import FaultTimeline
from resilience.histogram import Histogram
from resilience.load.recorder import LoadRecorder
from resilience.load.samples import LiveTick, LoadEvent
from resilience.vocabulary import ERROR_OUTCOMES, PHASE_NAMES, Clock, Phase

logger = logging.getLogger(__name__)

BOUNDS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Latency bucket upper bounds, seconds (Prometheus' defaults, extended past the timeouts)."""
DEFAULT_ADDRESS = "127.0.0.1"
ADDRESS_ENV = "RESILIENCE_LOAD_METRICS_ADDRESS"
"""Another address to serve on (compose's Prometheus reaches the host on the Docker bridge)."""


@dataclass(frozen=True)
class FaultState:
    """One fault of the run as the gauge shows it."""

    index: int
    proxy: str
    type: str
    active: bool


class LoadMetrics:
    """A prometheus_client collector over the load's completions (thread-safe)."""

    def __init__(
        self,
        run: str,
        *,
        experiment: str,
        profile: str | None = None,
        faults: Callable[[], Sequence[FaultState]] = list,
        phase: Callable[[], str | None] = lambda: None,
        names: Callable[[str], str] = str,
    ) -> None:
        self.run = run
        self._names = names
        """An endpoint's label (the run's ``Redactor.redact_text``: a name such as ``GET
        /x?token=abc`` must not reach Prometheus, which every local user may query)."""
        self.experiment = experiment
        self.profile = profile or ""
        self._faults = faults
        self._phase = phase
        self._lock = threading.Lock()
        self._requests: dict[str, int] = {}
        self._errors: dict[tuple[str, str], int] = {}
        self._buckets: dict[str, list[int]] = {}
        self._sum_s: dict[str, float] = {}
        self._users: dict[int, int] = {}
        self._in_flight: dict[int, int] = {}

    def on_event(self, event: LoadEvent) -> None:
        """Take a load event (only ``LiveTick`` matters here)."""
        if isinstance(event, LiveTick):
            self.add_tick(event)

    def add_tick(self, tick: LiveTick) -> None:
        with self._lock:
            self._users[tick.worker] = tick.users
            self._in_flight[tick.worker] = tick.in_flight
            for name, data in tick.endpoints.items():
                endpoint = self._names(name)
                n = sum(data.counts.values())
                self._requests[endpoint] = self._requests.get(endpoint, 0) + n
                for outcome in ERROR_OUTCOMES:
                    count = data.counts.get(outcome, 0)
                    if count:
                        key = (endpoint, outcome)
                        self._errors[key] = self._errors.get(key, 0) + count
                if data.histogram:
                    self._add_histogram(endpoint, data.decode())

    def _add_histogram(self, endpoint: str, hist: Histogram) -> None:
        buckets = self._buckets.setdefault(endpoint, [0] * (len(BOUNDS_S) + 1))
        values_s = hist.highest_values_us() / 1e6
        where = np.searchsorted(np.asarray(BOUNDS_S), values_s, side="left")
        for index, count in zip(where.tolist(), hist.counts.tolist(), strict=True):
            buckets[index] += int(count)
        total_s = float(np.dot(hist.counts.astype(np.float64), values_s))
        self._sum_s[endpoint] = self._sum_s.get(endpoint, 0.0) + total_s

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        run = self.run
        with self._lock:
            requests = CounterMetricFamily(
                "resilience_load_requests", "Requests the load engine completed",
                labels=["run", "endpoint"],
            )  # fmt: skip
            for endpoint, n in sorted(self._requests.items()):
                requests.add_metric([run, endpoint], n)
            errors = CounterMetricFamily(
                "resilience_load_errors", "Failed requests by outcome",
                labels=["run", "endpoint", "outcome"],
            )  # fmt: skip
            for (endpoint, outcome), n in sorted(self._errors.items()):
                errors.add_metric([run, endpoint, outcome], n)
            latency = HistogramMetricFamily(
                "resilience_load_latency_seconds", "Client-side latency from the intended send time",
                labels=["run", "endpoint"],
            )  # fmt: skip
            for endpoint, counts in sorted(self._buckets.items()):
                cumulative: list[tuple[str, float]] = []
                acc = 0
                for bound, n in zip(BOUNDS_S, counts, strict=False):
                    acc += n
                    cumulative.append((repr(bound), acc))
                cumulative.append(("+Inf", acc + counts[-1]))
                latency.add_metric([run, endpoint], cumulative, self._sum_s.get(endpoint, 0.0))
            users = sum(self._users.values())
            in_flight = sum(self._in_flight.values())
        yield requests
        yield errors
        yield latency
        yield _gauge("resilience_load_users", "Virtual users running", run, users)
        yield _gauge("resilience_load_in_flight", "Requests sent and not answered", run, in_flight)
        yield self._fault_gauge()
        yield self._phase_gauge()
        info = GaugeMetricFamily(
            "resilience_run_info", "The run being measured", labels=["run", "experiment", "profile"]
        )
        info.add_metric([run, self.experiment, self.profile], 1)
        yield info

    def _fault_gauge(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        gauge = GaugeMetricFamily(
            "resilience_fault_active", "1 while the fault is in effect",
            labels=["run", "fault", "proxy", "type"],
        )  # fmt: skip
        try:
            states = list(self._faults())
        except Exception:  # a scrape must never take the run down
            logger.exception("fault states for the metrics export")
            states = []
        for state in states:
            gauge.add_metric(
                [self.run, str(state.index), state.proxy, state.type], 1 if state.active else 0
            )
        return gauge

    def _phase_gauge(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        gauge = GaugeMetricFamily(
            "resilience_run_phase", "1 for the phase the run is in", labels=["run", "phase"]
        )
        current = self._phase()
        for name in PHASE_NAMES:
            gauge.add_metric([self.run, name], 1 if current == name else 0)
        return gauge


def _gauge(name: str, text: str, run: str, value: float) -> Any:
    from prometheus_client.core import GaugeMetricFamily

    gauge = GaugeMetricFamily(name, text, labels=["run"])
    gauge.add_metric([run], value)
    return gauge


class LiveExport:
    """Serves a ``LoadMetrics`` on ``address:port`` until ``close()``; a no-op when the
    port cannot be had or prometheus_client is missing (logged, never raised)."""

    def __init__(self, metrics: LoadMetrics, port: int, address: str = DEFAULT_ADDRESS) -> None:
        self.metrics = metrics
        self.port = port
        self.address = address
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/metrics"

    def start(self) -> LiveExport:
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            self.error = "prometheus_client is not installed (pip install prometheus-client)"
            logger.warning("no live metrics: %s", self.error)
            return self
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.metrics)
        try:
            self._server, self._thread = start_http_server(
                self.port, addr=self.address, registry=registry
            )
        except OSError as exc:
            self.error = f"cannot serve live metrics on {self.address}:{self.port}: {exc}"
            logger.warning("%s; the run goes on without them", self.error)
            return self
        logger.info("live load metrics on %s", self.url)
        return self

    @property
    def serving(self) -> bool:
        return self._server is not None

    def close(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2.0)


def timeline_phase(
    timeline: FaultTimeline,
    scheduled: Sequence[Phase] | None = None,
    now: float | None = None,
) -> str:
    """The phase a run is in, from its faults: fault while one is in effect, recovery once
    one has ended, baseline before. A run phased by a load spike (no faults; ``scheduled``
    its phases, ``now`` the clock's reading) is in the first scheduled phase not yet over:
    baseline before t0 too, recovery after the plan's end."""
    if scheduled and now is not None and not timeline.states:
        return next((p.name for p in scheduled if now < p.end), scheduled[-1].name)
    if timeline.any_active():
        return "fault"
    if any(s.status in ("healed", "failed") for s in timeline.states.values()):
        return "recovery"
    return "baseline"


def timeline_faults(timeline: FaultTimeline) -> list[FaultState]:
    return [
        FaultState(index, s.spec.proxy, s.spec.type, s.status in ("applying", "active"))
        for index, s in sorted(timeline.states.items())
    ]


def start_for_run(
    port: int,
    run: str,
    *,
    experiment: str,
    profile: str | None,
    timeline: FaultTimeline,
    recorder: LoadRecorder,
    names: Callable[[str], str] = str,
    scheduled: Sequence[Phase] | None = None,
    clock: Clock | None = None,
) -> LiveExport:
    """Serve a run's live metrics (its recorder's completions, its timeline's faults; the
    ``scheduled`` phases by ``clock`` for a run phased by a load spike)."""
    return start_export(
        port,
        run,
        experiment=experiment,
        profile=profile,
        faults=lambda: timeline_faults(timeline),
        phase=lambda: timeline_phase(
            timeline, scheduled, clock.now() if clock is not None else None
        ),
        recorder=recorder,
        names=names,
    )


def start_export(
    port: int,
    run: str,
    *,
    experiment: str,
    profile: str | None,
    faults: Callable[[], Sequence[FaultState]],
    phase: Callable[[], str | None],
    recorder: LoadRecorder,
    names: Callable[[str], str] = str,
) -> LiveExport:
    """Serve live metrics fed by ``recorder`` (a run's, or a game day's) on ``port``;
    ``names`` gives an endpoint's label (masked)."""
    metrics = LoadMetrics(
        run, experiment=experiment, profile=profile, faults=faults, phase=phase, names=names
    )
    recorder.add_listener(metrics.on_event)
    address = os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS
    return LiveExport(metrics, port, address).start()


def record_faults(records: Sequence[Mapping[str, Any]]) -> list[FaultState]:
    """Fault states from journal-shaped fault records (a game day's board)."""
    return [
        FaultState(int(r["index"]), str(r["proxy"]), str(r["type"]),
                   r.get("status") in ("applying", "active"))
        for r in records
    ]  # fmt: skip


def record_phase(records: Sequence[Mapping[str, Any]]) -> str:
    states = [r.get("status") for r in records]
    if any(s in ("applying", "active") for s in states):
        return "fault"
    return "recovery" if any(s in ("healed", "failed") for s in states) else "baseline"
