"""The live load metrics: what a scrape of the run's exporter shows, in Prometheus' format."""

from __future__ import annotations

import socket

import httpx
from prometheus_client.parser import text_string_to_metric_families

from resilience import histogram as hist
from resilience.load.samples import EndpointSecond, LiveTick, empty_counts
from resilience.runner.live_export import FaultState, LiveExport, LoadMetrics
from resilience.stack.config import Ports

PORT = Ports().shifted(420).load_metrics


def _tick(worker: int, second: int, ok: int, timeouts: int, latency_ms: float) -> LiveTick:
    counts = empty_counts()
    counts["ok"], counts["timeout"] = ok, timeouts
    values = [int(latency_ms * 1000)] * (ok + timeouts)
    data = EndpointSecond(counts=counts, histogram=hist.encode(hist.from_values(values)))
    return LiveTick(worker, second, {}, None, None, None, in_flight=3, users=5,
                    endpoints={"GET /catalog/items": data})  # fmt: skip


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=3.0).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_scrape_shows_requests_errors_latency_faults_and_phase() -> None:
    """Counters add up the workers' completions; the fault gauge and the phase follow the
    callables; the latency histogram puts 40 ms requests under le=0.05."""
    faults = [FaultState(0, "postgres", "hang", active=True)]
    metrics = LoadMetrics("run-a", experiment="db-hang", faults=lambda: faults,
                          phase=lambda: "fault")  # fmt: skip
    metrics.on_event(_tick(0, 5, ok=10, timeouts=0, latency_ms=40))
    metrics.on_event(_tick(1, 5, ok=7, timeouts=3, latency_ms=40))
    export = LiveExport(metrics, PORT).start()
    try:
        assert export.serving, export.error
        got = _scrape(export.url)
    finally:
        export.close()
    run, endpoint = ("run", "run-a"), ("endpoint", "GET /catalog/items")
    assert got[("resilience_load_requests_total", (endpoint, run))] == 20
    assert got[("resilience_load_errors_total", (endpoint, ("outcome", "timeout"), run))] == 3
    assert got[("resilience_load_latency_seconds_bucket", (endpoint, ("le", "0.025"), run))] == 0
    assert got[("resilience_load_latency_seconds_bucket", (endpoint, ("le", "0.05"), run))] == 20
    assert got[("resilience_load_latency_seconds_count", (endpoint, run))] == 20
    assert got[("resilience_load_users", (run,))] == 10
    fault = (("fault", "0"), ("proxy", "postgres"), run, ("type", "hang"))
    assert got[("resilience_fault_active", fault)] == 1
    assert got[("resilience_run_phase", (("phase", "fault"), run))] == 1
    assert got[("resilience_run_phase", (("phase", "baseline"), run))] == 0


def test_a_port_in_use_is_reported_not_raised() -> None:
    """When the port is taken the export says why and serves nothing; the run goes on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", PORT + 1))
        taken.listen()
        export = LiveExport(LoadMetrics("r", experiment="x"), PORT + 1).start()
        assert not export.serving
        assert export.error and str(PORT + 1) in export.error
        export.close()


def test_endpoint_labels_go_through_the_run_redactor() -> None:
    """An endpoint named after a request with a token is labelled masked: Prometheus, which
    every local user may query, never gets the token."""
    from resilience.redact import Redactor

    metrics = LoadMetrics("r", experiment="x", names=Redactor().redact_text)
    tick = _tick(0, 1, ok=2, timeouts=0, latency_ms=10)
    tick.endpoints["GET /x?token=t0k3n-abc"] = tick.endpoints.pop("GET /catalog/items")
    metrics.on_event(tick)
    samples = [s for family in metrics.collect() for s in family.samples]
    labels = {s.labels.get("endpoint") for s in samples} - {None}
    assert labels == {"GET /x?token=***"}


def test_the_live_phase_follows_a_load_spike_by_the_clock_and_faults_by_their_state() -> None:
    """A run without faults phased by a spike at 12-20 s says baseline, spike, recovery by
    its clock (it said baseline throughout); a fault run's phase comes from its faults."""
    from resilience.faults.catalogue import FaultSpec
    from resilience.faults.timeline import FaultTimeline
    from resilience.runner.live_export import timeline_phase
    from resilience.testing.toxiproxy_fake import FakeToxiproxy
    from resilience.vocabulary import FakeClock, phases_from_spike

    api, clock = FakeToxiproxy(), FakeClock()
    api.create_proxy("db", "127.0.0.1:20000", "127.0.0.1:21000")
    calm = FaultTimeline([], api, clock)
    spiked = phases_from_spike((12.0, 20.0), start=0.0, end=40.0)
    phases = [timeline_phase(calm, spiked, t) for t in (0.0, 11.9, 12.0, 19.9, 20.0, 39.0)]
    assert phases == ["baseline", "baseline", "spike", "spike", "recovery", "recovery"]
    # Before t0 (the export answers scrapes while the workers start) and after the plan.
    assert [timeline_phase(calm, spiked, t) for t in (-2.0, 41.0)] == ["baseline", "recovery"]
    assert timeline_phase(calm) == "baseline"

    faulty = FaultTimeline([FaultSpec(0, 5, 5, "db", "outage")], api, clock)
    seen = []
    for t in (1.0, 6.0, 11.0):
        clock.t = t
        faulty.tick()
        seen.append(timeline_phase(faulty, spiked, t))
    assert seen == ["baseline", "fault", "recovery"]
