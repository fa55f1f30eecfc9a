"""Integration tests: the Prometheus source, checks and guards against a real Prometheus.

The module starts its own /usr/bin/prometheus (port offset 400, state under
/tmp/res-observe) scraping a prometheus_client exporter run by the test every second, and
kills its process group at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from resilience.analysis.checks import Check, builtin_shop_checks, evaluate_checks
from resilience.experiment.expectation import Expectation
from resilience.observe import GuardMonitor, HttpPrometheusSource, PrometheusQueryError, PromqlGuard
from resilience.rundir.series import RecordedPrometheus, SeriesStore
from resilience.stack.config import Ports
from resilience.vocabulary import Phase

pytestmark = pytest.mark.integration

OFFSET = 400
PORTS = Ports().shifted(OFFSET)
STATE = Path(os.environ.get("RESILIENCE_OBSERVE_STATE", "/tmp/res-observe"))
PROMETHEUS = Path("/usr/bin/prometheus")
EXPORTER_PORT = PORTS.gateway  # no shop runs at this offset: the test's exporter uses it
DOWN_PORT = PORTS.orders  # nothing listens: a target that is down
SPARE_PROMETHEUS_PORT = PORTS.jaeger_metrics  # our Jaeger exports no metrics

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll ``probe`` until it returns a truthy value, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class Exporter:
    value: Gauge
    requests: Counter
    url: str


@dataclass
class Prom:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


def start_prometheus(port: int, directory: Path, targets: dict[str, list[int]]) -> Prom:
    directory.mkdir(parents=True, exist_ok=True)
    jobs = "\n".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: "
        f"[{', '.join(repr(f'127.0.0.1:{p}') for p in ports)}]"
        for job, ports in targets.items()
    )
    config = directory / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n{jobs}\n"
    )
    log = directory / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for("prometheus to be ready", ready)
    return Prom(url, proc, log)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGCONT)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@pytest.fixture(scope="module")
def state_dir() -> Path:
    STATE.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="prom-", dir=STATE))


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    registry = CollectorRegistry()
    value = Gauge("observe_test_value", "A value the test sets.", ["kind"], registry=registry)
    requests = Counter("observe_test_requests", "Requests the test counts.", registry=registry)
    value.labels("a").set(0)
    server, thread = start_http_server(EXPORTER_PORT, addr="127.0.0.1", registry=registry)
    try:
        yield Exporter(value, requests, f"http://127.0.0.1:{EXPORTER_PORT}/metrics")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def prometheus(state_dir: Path, exporter: Exporter) -> Iterator[Prom]:
    prom = start_prometheus(
        PORTS.prometheus,
        state_dir / "main",
        {"exporter": [EXPORTER_PORT], "prometheus": [PORTS.prometheus], "down": [DOWN_PORT]},
    )
    try:
        yield prom
    finally:
        stop_group(prom.proc)


@pytest.fixture
def source(prometheus: Prom) -> Iterator[HttpPrometheusSource]:
    with HttpPrometheusSource(prometheus.url, timeout=5.0) as src:
        yield src


def scraped_value(source: HttpPrometheusSource, expected: float) -> bool:
    series = source.query('observe_test_value{kind="a"}')
    return bool(series) and series[0].points[-1][1] == expected


def test_targets_report_up_and_down_scrapes(source: HttpPrometheusSource) -> None:
    """targets() shows the live exporter up and the closed port down with its error."""

    def both_known() -> dict[str, str] | None:
        health = {t.job: t.health for t in source.targets()}
        return health if health.get("exporter") == "up" and health.get("down") == "down" else None

    wait_for("both targets scraped", both_known)
    down = next(t for t in source.targets() if t.job == "down")
    assert f"127.0.0.1:{DOWN_PORT}" in down.scrape_url
    assert "refused" in down.last_error


def test_instant_query_returns_a_scraped_metric(
    source: HttpPrometheusSource, exporter: Exporter
) -> None:
    """A value set in the exporter comes back from an instant query once scraped."""
    exporter.value.labels("a").set(42)
    wait_for("42 to be scraped", lambda: scraped_value(source, 42))
    (series,) = source.query('observe_test_value{kind="a"}')
    assert series.labels["job"] == "exporter"
    assert series.labels["kind"] == "a"
    assert series.name == "observe_test_value"


def test_range_query_returns_one_point_per_step(
    source: HttpPrometheusSource, exporter: Exporter
) -> None:
    """A 1 s step range query over a scraped window has one point per second."""
    exporter.value.labels("a").set(7)
    wait_for("7 to be scraped", lambda: scraped_value(source, 7))
    time.sleep(3)  # let a few 1 s scrapes of the same value accumulate
    end = time.time()
    (series,) = source.query_range('observe_test_value{kind="a"}', end - 2, end, 1.0)
    assert len(series.points) == 3
    assert series.values() == [7.0, 7.0, 7.0]
    steps = [b[0] - a[0] for a, b in zip(series.points, series.points[1:], strict=False)]
    assert steps == pytest.approx([1.0, 1.0])


def test_bad_promql_surfaces_prometheus_error(source: HttpPrometheusSource) -> None:
    """Invalid PromQL raises PrometheusQueryError with Prometheus's parse error."""
    with pytest.raises(PrometheusQueryError, match=r"bad_data.*parse error"):
        source.query("sum(rate(observe_test_requests_total[5s])")


def test_checks_over_real_windows(
    source: HttpPrometheusSource, exporter: Exporter, tmp_path: Path
) -> None:
    """A check passes over a window where the metric held and fails where it did not."""
    exporter.value.labels("a").set(0)
    wait_for("0 to be scraped", lambda: scraped_value(source, 0))
    time.sleep(2.5)
    calm_start = time.time() - 2
    calm_end = time.time()
    exporter.value.labels("a").set(5)
    wait_for("5 to be scraped", lambda: scraped_value(source, 5))
    time.sleep(2.5)
    busy_end = time.time()
    t0 = calm_start
    phases = [
        Phase("baseline", 0.0, calm_end - t0),
        Phase("fault", calm_end - t0, busy_end - t0),
    ]
    promql = 'max(observe_test_value{kind="a"})'
    # What the runner does after a run: gather the whole window into the run directory.
    store = SeriesStore(tmp_path)
    file = store.add(
        "value", promql, source.query_range(promql, t0, busy_end, 1.0), start=t0, end=busy_end,
        step=1.0,
    )  # fmt: skip
    checks = [
        Check("value is zero", promql, "baseline", Expectation("==", 0)),
        Check("value is zero", promql, "fault", Expectation("==", 0)),
    ]
    baseline, fault = evaluate_checks(
        checks, RecordedPrometheus(tmp_path), phases, t0=t0, files={promql: file}
    )
    assert baseline.status == "passed", baseline.reason
    assert baseline.points >= 2
    assert fault.status == "failed", fault.reason
    assert fault.max == 5.0
    assert fault.worst is not None and fault.worst.value == 5.0
    assert fault.first_failure is not None and fault.first_failure.t >= calm_end - 1.5
    assert fault.series_file == file


def test_builtin_shop_checks_are_valid_promql(source: HttpPrometheusSource) -> None:
    """Real Prometheus accepts every built-in PromQL (no shop here: zero or no data)."""
    t0 = time.time() - 6
    phases = [Phase("baseline", 0, 2), Phase("fault", 2, 4), Phase("recovery", 4, 6)]
    results = evaluate_checks(builtin_shop_checks(), source, phases, t0=t0)
    for result in results:
        assert "query failed" not in result.reason, result.reason
        assert result.status in ("passed", "not_evaluated"), result.reason
    errors = [r for r in results if r.check.name == "no http errors"]
    assert all(r.status == "passed" for r in errors)  # "or on() vector(0)": no errors is 0


def test_guard_trips_on_a_real_metric(source: HttpPrometheusSource, exporter: Exporter) -> None:
    """A PromQL guard trips once the scraped value has broken it for `for` seconds."""
    exporter.value.labels("a").set(1)
    wait_for("1 to be scraped", lambda: scraped_value(source, 1))
    guard = PromqlGuard("value", 'max(observe_test_value{kind="a"})', Expectation("<", 10), 2.0)
    with (
        HttpPrometheusSource(source.base_url, timeout=2.0) as guard_source,
        GuardMonitor([guard], guard_source, interval=0.5) as monitor,
    ):
        wait_for(
            "the guard to evaluate", lambda: monitor.tick() or monitor.status()[0].state == "ok"
        )
        exporter.value.labels("a").set(50)
        began = time.monotonic()
        trip = wait_for("the guard to trip", monitor.tick, timeout=30)
    assert trip.value == 50.0
    assert trip.tripped_at - trip.breached_since >= 2.0
    assert time.monotonic() - began >= 2.0


def test_guard_is_not_evaluated_when_prometheus_stops_answering(
    state_dir: Path, exporter: Exporter
) -> None:
    """A Prometheus frozen mid-run (SIGSTOP) leaves the guard not evaluated, never tripped."""
    prom = start_prometheus(
        SPARE_PROMETHEUS_PORT, state_dir / "frozen", {"exporter": [EXPORTER_PORT]}
    )
    try:
        exporter.value.labels("a").set(1)
        guard = PromqlGuard("value", 'max(observe_test_value{kind="a"})', Expectation("<", 10))
        with (
            HttpPrometheusSource(prom.url, timeout=1.0) as src,
            GuardMonitor([guard], src, interval=0.5, stale_after=3.0) as monitor,
        ):
            wait_for(
                "the guard to evaluate", lambda: monitor.status()[0].state == "ok" or monitor.tick()
            )
            os.killpg(prom.proc.pid, signal.SIGSTOP)
            exporter.value.labels("a").set(50)  # would trip at once if it were seen
            began = time.monotonic()
            ticks: list[float] = []

            def not_evaluated() -> bool:
                t0 = time.monotonic()
                assert monitor.tick() is None
                ticks.append(time.monotonic() - t0)
                return monitor.status()[0].state == "not_evaluated"

            wait_for("the guard to become not evaluated", not_evaluated, timeout=20)
            assert time.monotonic() - began < 10
            assert max(ticks) < 0.2
            assert monitor.trips == []
            assert "Prometheus" in monitor.status()[0].reason
    finally:
        exporter.value.labels("a").set(0)
        stop_group(prom.proc)
