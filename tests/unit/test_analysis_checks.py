"""PromQL checks judged from the series a run gathered: the every-point rule, phases on the
experiment clock, gathered files as evidence, and sources that could not be gathered."""

from __future__ import annotations

import json
import math
import socket
import time
from pathlib import Path

from resilience.analysis.checks import Check, builtin_shop_checks, evaluate_checks, judge
from resilience.experiment.expectation import Expectation
from resilience.experiment.loader import parse_experiment
from resilience.observe import (
    HttpPrometheusSource,
    PrometheusQueryError,
    PrometheusUnavailable,
    Series,
)
from resilience.rundir.journal import JournalData
from resilience.rundir.layout import RunDir
from resilience.rundir.series import RecordedPrometheus, SeriesStore
from resilience.runner.evidence import Sources, gather_series
from resilience.stack.config import Ports
from resilience.testing.observe_fakes import FakePrometheusSource
from resilience.vocabulary import Phase

T0 = 1_000.0
PHASES = [Phase("baseline", 0.0, 10.0), Phase("fault", 10.0, 20.0), Phase("recovery", 20.0, 30.0)]


def ramp(labels: dict[str, str], values: dict[int, float], t0: float = 0.0) -> Series:
    return Series(labels, [(t0 + t, v) for t, v in sorted(values.items())])


def test_check_passes_only_when_every_point_of_every_series_holds() -> None:
    """One failing point in one of two series fails the check and is reported as worst."""
    check = Check("waiters", "q", "fault", Expectation("==", 0))
    a = ramp({"svc": "a"}, dict.fromkeys(range(10, 21), 0.0))
    b = ramp({"svc": "b"}, {**dict.fromkeys(range(10, 21), 0.0), 14: 3.0, 15: 7.0})
    result = judge(check, [a, b])
    assert result.status == "failed"
    assert result.failing_points == 2
    assert result.points == 22
    assert result.worst is not None
    assert (result.worst.labels, result.worst.t, result.worst.value) == ({"svc": "b"}, 15.0, 7.0)
    assert result.first_failure is not None and result.first_failure.t == 14.0
    assert (result.min, result.max) == (0.0, 7.0)
    assert result.fails_run


def test_all_points_holding_passes_with_min_max_last() -> None:
    """A series that holds everywhere passes and reports min, max and last."""
    check = Check("p95", "q", "baseline", Expectation("<", 0.5))
    result = judge(check, [ramp({}, {0: 0.1, 1: 0.3, 2: 0.2})])
    assert result.status == "passed"
    assert (result.min, result.max, result.last) == (0.1, 0.3, 0.2)
    assert result.worst is not None and result.worst.value == 0.3  # nearest to failing


def test_nan_points_are_skipped_and_inf_points_judged() -> None:
    """NaN means no data and is left out; +Inf is a real value that fails '< 1'."""
    check = Check("p95", "q", "fault", Expectation("<", 1))
    only_nan = judge(check, [ramp({}, {0: math.nan, 1: math.nan})])
    assert only_nan.status == "not_evaluated"
    assert "no data" in only_nan.reason
    with_inf = judge(check, [ramp({}, {0: math.nan, 1: 0.2, 2: math.inf})])
    assert with_inf.status == "failed"
    assert with_inf.points == 2
    assert with_inf.max == math.inf


def gathered(tmp_path: Path, series: dict[str, list[Series]]) -> RecordedPrometheus:
    """A run directory whose gathering saved ``series`` (PromQL -> series)."""
    store = SeriesStore(tmp_path)
    for promql, found in series.items():
        store.add(promql, promql, found, start=T0 - 2, end=T0 + 32, step=1.0)
    return RecordedPrometheus(tmp_path)


def test_checks_are_judged_over_their_phase_from_the_gathered_series(tmp_path: Path) -> None:
    """Phases on the experiment clock pick their points (t0 + start .. t0 + end) from the
    gathered file, which the result names as its evidence."""
    history = ramp(
        {"service": "orders"}, {t: (5.0 if 12 <= t <= 14 else 0.0) for t in range(30)}, T0
    )
    source = gathered(tmp_path, {"max(shop_db_pool_waiting)": [history]})
    checks = [
        Check("pool waiters", "max(shop_db_pool_waiting)", "baseline", Expectation("==", 0)),
        Check("pool waiters", "max(shop_db_pool_waiting)", "fault", Expectation("==", 0)),
    ]
    files = {p: g.file for p, g in source.store.index().items() if g.file}
    baseline, fault = evaluate_checks(checks, source, PHASES, t0=T0, files=files)
    assert baseline.status == "passed"
    assert baseline.points == 11  # 0..10 inclusive
    assert fault.status == "failed"
    assert fault.first_failure is not None and fault.first_failure.t == T0 + 12
    assert fault.series_file == files["max(shop_db_pool_waiting)"]
    assert (RunDir(tmp_path).prometheus / str(fault.series_file)).is_file()
    entry = fault.to_dict()
    assert entry["passed"] is False
    assert entry["expect"] == "== 0"
    json.dumps(entry, allow_nan=False)


def test_run_phase_spans_from_first_start_to_last_end() -> None:
    """A 'run' check covers every phase when no explicit run window is given."""
    source = FakePrometheusSource({"q": [ramp({}, dict.fromkeys(range(-5, 40), 1.0))]})
    (result,) = evaluate_checks(
        [Check("all", "q", "run", Expectation(">", 0))], source, PHASES, t0=0.0
    )
    assert result.status == "passed"
    assert result.points == 31
    assert result.windows[0].start == 0.0 and result.windows[0].end == 30.0


def test_missing_phase_is_not_evaluated() -> None:
    """A check on a phase the run never reached is not evaluated, with the reason."""
    source = FakePrometheusSource()
    (result,) = evaluate_checks(
        [Check("c", "q", "recovery", Expectation("==", 0))], source, PHASES[:2], t0=0.0
    )
    assert result.status == "not_evaluated"
    assert "no recovery phase" in result.reason
    assert source.calls == []


def test_an_expression_not_gathered_is_not_evaluated_with_the_reason(tmp_path: Path) -> None:
    """Asking the run directory for series it never gathered is 'not evaluated', not a fail."""
    source = gathered(tmp_path, {"q": [ramp({}, {1: 0.0}, T0)]})
    (result,) = evaluate_checks(
        [Check("new", "other_metric", "baseline", Expectation("==", 0))], source, PHASES, t0=T0
    )
    assert result.status == "not_evaluated"
    assert "not gathered" in result.reason


def _experiment(checks: str) -> object:
    return parse_experiment(
        "name: x\nload: {stages: [{duration: 30s, users: 1, spawn_rate: 1}], workload: "
        "{requests: [{path: /}]}}\n" + checks
    )


def _journal() -> JournalData:
    return JournalData(experiment="x", started_at="2026-01-01T00:00:00Z", t0=T0, load_end=30.0)


def test_gathering_from_an_unreachable_prometheus_records_why_once(tmp_path: Path) -> None:
    """Prometheus down: one health call, every expression recorded as not gathered with the
    reason, and the check later says so instead of failing."""
    experiment = _experiment("checks: [{name: c, promql: q1, phase: baseline, expect: '== 0'}]\n")
    source = FakePrometheusSource(
        error=PrometheusUnavailable("cannot reach Prometheus at x", endpoint="x")
    )
    evidence = gather_series(
        RunDir(tmp_path),
        experiment,
        _journal(),
        PHASES,
        Sources(source, None, None),  # type: ignore[arg-type]
    )
    assert evidence.status == "unavailable" and "cannot reach Prometheus" in str(evidence.reason)
    assert source.calls == [("query", "1")]  # the query API: all a Prometheus-like backend serves
    (result,) = evaluate_checks(
        [Check("c", "q1", "baseline", Expectation("==", 0))],
        RecordedPrometheus(tmp_path),
        PHASES,
        t0=T0,
    )
    assert result.status == "not_evaluated" and "cannot reach Prometheus" in result.reason


def test_a_rejected_query_is_recorded_and_the_others_gathered(tmp_path: Path) -> None:
    """A query Prometheus refuses is recorded as not gathered; the others are gathered."""

    def responder(promql: str) -> list[Series]:
        if promql == "bad{":
            raise PrometheusQueryError("refused: bad_data: parse error", endpoint="x")
        return [ramp({}, {1: 0.0}, T0)]

    experiment = _experiment(
        "checks: [{name: bad, promql: 'bad{', phase: baseline, expect: '== 0'},"
        " {name: good, promql: ok, phase: baseline, expect: '== 0'}]\n"
    )
    evidence = gather_series(
        RunDir(tmp_path),
        experiment,
        _journal(),
        PHASES,
        Sources(FakePrometheusSource(responder=responder), None, None),  # type: ignore[arg-type]
    )
    assert evidence.status == "partial" and evidence.gathered >= 1
    source = RecordedPrometheus(tmp_path)
    bad, good = evaluate_checks(
        [
            Check("bad", "bad{", "baseline", Expectation("==", 0)),
            Check("good", "ok", "baseline", Expectation("==", 0)),
        ],
        source,
        PHASES,
        t0=T0,
    )
    assert bad.status == "not_evaluated" and "parse error" in bad.reason
    assert good.status == "passed"


def test_builtin_shop_checks_cover_the_shop_metrics_with_documented_severities() -> None:
    """Built-in checks use the shop's metric names; baseline ones warn, others inform."""
    checks = builtin_shop_checks()
    keys = [(c.name, c.phase) for c in checks]
    assert len(keys) == len(set(keys))
    text = " ".join(c.promql for c in checks)
    for metric in (
        "shop_db_pool_waiting",
        "shop_db_pool_in_use",
        "shop_db_pool_size",
        "shop_http_errors_total",
        "shop_http_request_duration_seconds_bucket",
        'shop_upstream_requests_total{outcome="timeout"}',
        "shop_breaker_state",
    ):
        assert metric in text
    for check in checks:
        assert check.severity == ("warning" if check.phase == "baseline" else "info")
        assert check.description


def test_gathering_from_a_silent_prometheus_is_bounded(tmp_path: Path) -> None:
    """A Prometheus that accepts and never answers costs one timeout, then nothing more."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", Ports().shifted(400).orders_proxy))
    sock.listen(64)
    experiment = _experiment("")
    try:
        port = sock.getsockname()[1]
        with HttpPrometheusSource(f"http://127.0.0.1:{port}", timeout=0.5) as source:
            began = time.monotonic()
            journal = _journal()
            journal.builtin = True
            evidence = gather_series(
                RunDir(tmp_path), experiment, journal, PHASES, Sources(source, None, None)
            )  # type: ignore[arg-type]
            elapsed = time.monotonic() - began
    finally:
        sock.close()
    assert elapsed < 3.0
    assert evidence.status == "unavailable" and "did not answer" in str(evidence.reason)
    results = evaluate_checks(builtin_shop_checks(), RecordedPrometheus(tmp_path), PHASES, t0=T0)
    assert {r.status for r in results} == {"not_evaluated"}
