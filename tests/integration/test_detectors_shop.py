"""Detectors on the real stack without the load engine: the shop under a hung database, lost writes.

The hardened and control cases run end to end through the load engine in
test_ground_truth.py and test_run_contract.py; these two keep an independent driver.

A small threaded HTTP driver stands in for the load engine: closed-model users against the
gateway, one trace id per request in ``traceparent``, per-second histograms and counts per
endpoint on an experiment clock, the trace ids of failed, slow and sampled requests and
the acknowledged writes. Faults are real Toxiproxy toxics (removed in ``finally``), traces
come back from the real Jaeger, pool gauges and counters from the real Prometheus. Timing
stays honest for a shared 2-core machine: a handful of users, second-scale phases, and
assertions on what the shop's design guarantees (a hung database hangs order calls; the
fragile gateway's shared pool then starves the catalog), not on exact counts.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from resilience.analysis.context import AnalysisContext
from resilience.analysis.data import MemoryLoadView
from resilience.analysis.detectors.cascading_failure import CascadingFailureDetector
from resilience.analysis.detectors.data_loss import DataLossDetector
from resilience.analysis.detectors.pool_exhaustion import PoolExhaustionDetector
from resilience.analysis.detectors.retry_amplification import RetryAmplificationDetector
from resilience.analysis.detectors.timeout import TimeoutDetector
from resilience.analysis.recovery import measure_recovery
from resilience.faults.toxiproxy import Toxic, ToxiproxyClient
from resilience.observe.prometheus import HttpPrometheusSource
from resilience.observe.traces import JaegerTraceSource, collect_traces
from resilience.rundir.journal import JournalData
from resilience.rundir.layout import RunDir
from resilience.rundir.readback import ReadBack
from resilience.rundir.records import TraceReason, TraceRef, WriteAck, WriteSummary
from resilience.rundir.series import RecordedPrometheus
from resilience.rundir.traces import save_collection
from resilience.runner.evidence import Sources, gather_series, read_back
from resilience.testing.analysis import SHOP_ENDPOINTS, histogram, shop_experiment
from resilience.vocabulary import FaultWindow, Phase
from tests.integration.conftest import StackHandle

pytestmark = pytest.mark.integration

T = TypeVar("T")
ITEMS, ITEM, POST, ORDER = SHOP_ENDPOINTS
CLIENT_TIMEOUT = 3.0
SLOW_S = 1.0
SAMPLE = 0.1
TOXIC = "detectors-test-hang"


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 20.0) -> T:
    """Poll ``probe`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class Traffic:
    """What the driver recorded, on an experiment clock starting at ``t0`` (wall time)."""

    t0: float
    latencies: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    counts: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)
    refs: list[TraceRef] = field(default_factory=list)
    writes: list[WriteAck] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return time.time() - self.t0

    def record(
        self,
        *,
        endpoint: str,
        send_t: float,
        latency: float,
        outcome: str,
        status: int,
        ids: tuple[str, str],
        rng: random.Random,
    ) -> None:
        reason: TraceReason | None = None
        if outcome != "ok":
            reason = "failed"
        elif latency > SLOW_S:
            reason = "slow"
        elif rng.random() < SAMPLE:
            reason = "sampled"
        key = (endpoint, int(send_t))
        with self.lock:
            self.latencies.setdefault(key, []).append(latency * 1000)
            per = self.counts.setdefault(key, {})
            per[outcome] = per.get(outcome, 0) + 1
            if reason is not None:
                self.refs.append(
                    TraceRef(0, ids[0], ids[1], endpoint, send_t, latency, outcome, status, reason)
                )

    def view(self) -> MemoryLoadView:
        view = MemoryLoadView()
        for (endpoint, second), values in sorted(self.latencies.items()):
            view.add(endpoint, second, histogram(values), self.counts[(endpoint, second)])
        return view


def user(base_url: str, traffic: Traffic, stop: threading.Event, seed: str) -> None:
    """One closed-model user: the db-hang workload's mix, short think time."""
    rng = random.Random(seed)
    order_id: int | None = None
    with httpx.Client(base_url=base_url, timeout=CLIENT_TIMEOUT, trust_env=False) as client:
        for _ in range(100_000):  # bounded; the stop event ends it long before
            if stop.is_set():
                return
            pick = rng.choices((ITEMS, ITEM, POST, ORDER), weights=(4, 3, 2, 1))[0]
            if pick == ORDER and order_id is None:
                pick = POST
            ids = (f"{rng.getrandbits(128) or 1:032x}", f"{rng.getrandbits(64) or 1:016x}")
            headers = {"traceparent": f"00-{ids[0]}-{ids[1]}-01"}
            method, path, expect = "GET", "/catalog/items", 200
            body: dict[str, Any] | None = None
            if pick == ITEM:
                path = f"/catalog/items/{rng.randint(1, 50)}"
            elif pick == POST:
                method, path, expect = "POST", "/orders", 201
                body = {"item_id": rng.randint(1, 50), "quantity": 1, "client_ref": f"{ids[0]}"}
            elif pick == ORDER:
                path = f"/orders/{order_id}"
            send_t = traffic.now()
            status = 0
            try:
                response = client.request(method, path, json=body, headers=headers)
                status = response.status_code
                outcome = "ok" if status == expect else ("4xx" if status < 500 else "5xx")
            except httpx.TimeoutException:
                outcome = "timeout"
            except httpx.HTTPError:
                outcome = "connection_error"
            latency = traffic.now() - send_t
            traffic.record(
                endpoint=pick,
                send_t=send_t,
                latency=latency,
                outcome=outcome,
                status=status,
                ids=ids,
                rng=rng,
            )
            if pick == POST and outcome == "ok":
                order_id = int(response.json()["id"])
                with traffic.lock:
                    traffic.writes.append(WriteAck(0, order_id, POST, send_t, status))
            stop.wait(rng.uniform(0.05, 0.15))


@dataclass
class Run:
    """A finished run: the traffic and when the fault was applied and healed (clock s)."""

    traffic: Traffic
    end: float
    applied: float | None = None
    healed: float | None = None

    def phases(self) -> list[Phase]:
        if self.applied is None or self.healed is None:
            return [Phase("baseline", 0.0, self.end)]
        return [
            Phase("baseline", 0.0, self.applied),
            Phase("fault", self.applied, self.healed),
            Phase("recovery", self.healed, self.end),
        ]


def drive(
    handle: StackHandle,
    *,
    users: int = 8,
    baseline_s: float = 8.0,
    fault_s: float = 0.0,
    recovery_s: float = 10.0,
) -> Run:
    """Run the users; with ``fault_s`` a timeout-0 toxic hangs the postgres proxy mid-run."""
    traffic = Traffic(t0=time.time())
    stop = threading.Event()
    threads = [
        # Seeds differ per run: the same trace ids in two runs would merge their traces.
        threading.Thread(
            target=user,
            args=(handle.gateway_url, traffic, stop, f"{time.time_ns()}-{i}"),
            daemon=True,
        )
        for i in range(users)
    ]
    for thread in threads:
        thread.start()
    run = Run(traffic, end=0.0)
    toxiproxy = ToxiproxyClient(handle.toxiproxy_url)
    try:
        stop.wait(baseline_s)
        if fault_s > 0:
            toxiproxy.add_toxic("postgres", Toxic(TOXIC, "timeout", attributes={"timeout": 0}))
            run.applied = traffic.now()
            try:
                stop.wait(fault_s)
            finally:
                toxiproxy.remove_toxic("postgres", TOXIC)
                run.healed = traffic.now()
            stop.wait(recovery_s)
    finally:
        if any(t.name == TOXIC for t in toxiproxy.toxics("postgres")):
            toxiproxy.remove_toxic("postgres", TOXIC)
        toxiproxy.close()
        run.end = traffic.now()
        stop.set()
        for thread in threads:
            thread.join(timeout=CLIENT_TIMEOUT + 5)
    # Only seconds every user has finished sending count: trim the last partial one.
    run.end = float(int(run.end))
    return run


@contextlib.contextmanager
def http_reader(base_url: str) -> Iterator[Callable[[str], tuple[int, Any]]]:
    """``ctx.http_get`` for the gateway: (status, JSON or None), 5 s timeout per call."""
    with httpx.Client(base_url=base_url, timeout=5.0, trust_env=False) as client:

        def get(path: str) -> tuple[int, Any]:
            response = client.get(path)
            try:
                return response.status_code, response.json()
            except ValueError:
                return response.status_code, None

        yield get


@contextlib.contextmanager
def analysis_context(
    handle: StackHandle, run: Run, tmp_path: Path, *, extra: str = ""
) -> Iterator[AnalysisContext]:
    """Traces from Jaeger for the kept ids, Prometheus and the gateway live, recovery
    measured; the live clients are closed on exit."""
    phases = run.phases()
    refs = [r for r in run.traffic.refs if r.t < run.end]
    wanted: dict[str, str | None] = {r.trace_id: r.endpoint for r in refs}
    with JaegerTraceSource(handle.jaeger_query_url) as jaeger:
        collected = collect_traces(jaeger, wanted, deadline_s=20.0)
    save_collection(collected, wanted, tmp_path / "traces")
    unavailable = None
    if collected.unavailable:
        unavailable = "; ".join(sorted(set(collected.missing.values())))[:300]
    view = run.traffic.view()
    faults: list[FaultWindow] = []
    dependencies: dict[str, set[str]] = {}
    if run.applied is not None:
        faults = [FaultWindow(0, "postgres", "hang", run.applied, run.healed)]
        pg_proxy = f"127.0.0.1:{handle.config.ports.postgres_proxy}"
        dependencies = {"postgres": {pg_proxy, "postgresql"}}
    experiment = shop_experiment("slo: {recovery: {within: 10s}}\n" + extra, fault=bool(faults))
    journal = JournalData(
        experiment="detectors", started_at="", t0=run.traffic.t0, builtin=True, load_end=run.end
    )
    with (
        HttpPrometheusSource(handle.prometheus_url) as prometheus,
        http_reader(handle.gateway_url) as http_get,
    ):
        # What the runner does after a run: gather into the run directory, then judge.
        gather_series(
            RunDir(tmp_path), experiment, journal, phases, Sources(prometheus, None, None)
        )
        writes = list(run.traffic.writes)
        read_back(experiment, writes, phases, http_get).save(tmp_path)
        recorded = RecordedPrometheus(tmp_path)
        yield AnalysisContext(
            experiment=experiment,
            run_dir=tmp_path,
            t0=run.traffic.t0,
            phases=phases,
            faults=faults,
            load=view,
            trace_refs=refs,
            traces=collected.traces,
            traces_unavailable=unavailable,
            prometheus=recorded,
            series_files={k: g.file for k, g in recorded.store.index().items() if g.file},
            writes=WriteSummary.from_acks(writes),
            readback=ReadBack.load(tmp_path),
            recovery=measure_recovery(view, phases, budget_seconds=10.0),
            builtin_shop=True,
            shop_mode=handle.stack.shop_mode(),
            faulted_dependencies=dependencies,
        )


def settle_prometheus() -> None:
    """Prometheus scrapes every second: give it two scrapes past the end of the run."""
    time.sleep(2.5)


@pytest.fixture
def quiet_postgres(stack: StackHandle) -> Iterator[None]:
    """No toxic of ours and the postgres proxy enabled, before and after the test."""
    with ToxiproxyClient(stack.toxiproxy_url) as client:
        client.set_enabled("postgres", True)
    yield
    with ToxiproxyClient(stack.toxiproxy_url) as client:
        if any(t.name == TOXIC for t in client.toxics("postgres")):
            client.remove_toxic("postgres", TOXIC)
        client.set_enabled("postgres", True)


def summaries(findings: list[Any]) -> str:
    return "\n".join(f"{f.kind} [{f.status}] {f.summary}" for f in findings)


def test_fragile_shop_under_a_hung_database(
    fragile_shop: StackHandle, quiet_postgres: None, tmp_path: Path
) -> None:
    """Catalog endpoints time out behind the gateway's shared pool: a cascade explained by
    traces, client timeouts, and exhausted pools in the real Prometheus gauges."""
    run = drive(fragile_shop, fault_s=12.0, recovery_s=8.0)
    settle_prometheus()
    # factor 0: any measured ratio is reported, to see the real counters and PromQL at work.
    retry_params = "detectors: {retry_amplification: {params: {factor: 0, min_requests: 5}}}\n"
    with analysis_context(fragile_shop, run, tmp_path, extra=retry_params) as ctx:
        cascade = CascadingFailureDetector().detect(ctx)
        timeouts = TimeoutDetector().detect(ctx)
        pools = PoolExhaustionDetector().detect(ctx)
        [retries] = RetryAmplificationDetector().detect(ctx)
    everything = summaries(cascade + timeouts + pools)
    [finding] = cascade
    assert finding.status == "found", everything
    assert set(finding.evidence["endpoints"]) & {ITEMS, ITEM}, everything
    assert not set(finding.evidence["endpoints"]) & {POST, ORDER}
    assert finding.evidence["trace_ids"], everything
    assert "span" in finding.evidence or "untraced" in finding.evidence, finding.evidence
    assert any(f.evidence["numbers"].get("client timeouts", 0) >= 3 for f in timeouts), everything
    pools_found = {f.evidence["pool"] for f in pools if f.status == "found"}
    assert {"db pool 'orders-db'", "upstream pool 'shared'"} & pools_found, everything
    pointers = [ref for f in pools for ref in f.evidence.get("series", [])]
    assert all((tmp_path / "prometheus" / ref["file"]).is_file() for ref in pointers)
    numbers = retries.evidence["numbers"]
    assert numbers["calls per request baseline"] > 0.5, numbers
    assert "ratio (metrics)" in numbers and "ratio (traces)" in numbers, numbers


def test_lost_writes_with_ack_before_commit(
    stack: StackHandle, quiet_postgres: None, tmp_path: Path
) -> None:
    """Orders acknowledged before commit while the database is unreachable are lost, and
    the read-back finds exactly those; writes acknowledged while it was up are all there."""
    stack.stack.up(shop_mode="fragile", shop_options={"ack_before_commit": "true"})
    orders_health = f"{stack.url('orders')}/health"
    toxiproxy = ToxiproxyClient(stack.toxiproxy_url)
    writes: list[WriteAck] = []
    try:
        with httpx.Client(base_url=stack.gateway_url, timeout=5.0, trust_env=False) as client:

            def post(n: int) -> list[int]:
                ids = []
                for i in range(n):
                    response = client.post(
                        "/orders", json={"item_id": 1, "quantity": 1, "client_ref": f"r{i}"}
                    )
                    assert response.status_code == 201, response.text
                    ids.append(int(response.json()["id"]))
                return ids

            def queue() -> dict[str, int]:
                return dict(
                    httpx.get(orders_health, timeout=5, trust_env=False).json()["ack_queue"]
                )

            kept = post(10)
            wait_for(
                "first batch committed",
                lambda: queue()["pending"] == 0 and queue()["committed"] >= 10,
            )
            toxiproxy.set_enabled("postgres", False)
            try:
                dropped = post(10)
                wait_for(
                    "batch commits to fail",
                    lambda: queue()["pending"] == 0 and queue()["lost"] >= 1,
                )
            finally:
                toxiproxy.set_enabled("postgres", True)
            lost_by_shop = queue()["lost"]
        writes = [WriteAck(0, i, POST, 1.0, 201) for i in kept + dropped]
        phases = [Phase("baseline", 0, 1), Phase("fault", 1, 2), Phase("recovery", 2, 3)]
        with http_reader(stack.gateway_url) as http_get:
            read_back(shop_experiment(), writes, phases, http_get).save(tmp_path)
        ctx = AnalysisContext(
            experiment=shop_experiment(),
            run_dir=tmp_path,
            t0=time.time(),
            phases=phases,
            faults=[FaultWindow(0, "postgres", "outage", 1, 2)],
            load=MemoryLoadView(),
            writes=WriteSummary.from_acks(writes),
            readback=ReadBack.load(tmp_path),
            builtin_shop=True,
        )
        [finding] = DataLossDetector().detect(ctx)
        assert finding.status == "found" and finding.fails_run
        lost = set(finding.evidence["lost_ids"])
        assert len(lost) == lost_by_shop
        assert lost <= set(dropped)
        assert not lost & set(kept)
        assert finding.evidence["numbers"]["checked"] == 20
    finally:
        toxiproxy.set_enabled("postgres", True)
        toxiproxy.close()
        stack.stack.up(shop_mode="fragile")
