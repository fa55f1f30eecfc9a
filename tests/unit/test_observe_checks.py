"""Unit tests for per-phase PromQL checks: the every-point rule, not-evaluated paths, files."""

from __future__ import annotations

import json
import math
import socket
import time
from pathlib import Path

from resilience.experiment.expectation import Expectation
from resilience.observe import (
    Check,
    FakePrometheusSource,
    HttpPrometheusSource,
    PhaseWindow,
    PrometheusQueryError,
    PrometheusUnavailable,
    Series,
    builtin_shop_checks,
    evaluate_checks,
    judge,
    load_series,
)
from resilience.stack.config import Ports

PHASES = [
    PhaseWindow("baseline", 0.0, 10.0),
    PhaseWindow("fault", 10.0, 20.0),
    PhaseWindow("recovery", 20.0, 30.0),
]


def ramp(labels: dict[str, str], values: dict[int, float]) -> Series:
    return Series(labels, [(float(t), v) for t, v in sorted(values.items())])


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


def test_evaluate_queries_each_phase_window_and_saves_series(tmp_path: Path) -> None:
    """Checks are range-queried over their phase and their series saved under out_dir."""
    history = ramp({"service": "orders"}, {t: (5.0 if 12 <= t <= 14 else 0.0) for t in range(30)})
    source = FakePrometheusSource({"max(shop_db_pool_waiting)": [history]})
    checks = [
        Check("pool waiters", "max(shop_db_pool_waiting)", "baseline", Expectation("==", 0)),
        Check("pool waiters", "max(shop_db_pool_waiting)", "fault", Expectation("==", 0)),
    ]
    baseline, fault = evaluate_checks(checks, source, PHASES, tmp_path / "prometheus")
    assert baseline.status == "passed"
    assert baseline.points == 11  # 0..10 inclusive
    assert fault.status == "failed"
    assert fault.first_failure is not None and fault.first_failure.t == 12.0
    assert fault.series_file == "fault-pool-waiters.json"
    meta, saved = load_series(tmp_path / "prometheus" / fault.series_file)
    assert meta["phase"] == "fault" and meta["status"] == "failed"
    assert saved[0].points[0] == (10.0, 0.0)
    entry = fault.to_dict()
    assert entry["passed"] is False
    assert entry["expect"] == "== 0"
    json.dumps(entry, allow_nan=False)


def test_run_phase_spans_from_first_start_to_last_end() -> None:
    """A 'run' check covers every phase when no explicit run window is given."""
    source = FakePrometheusSource({"q": [ramp({}, dict.fromkeys(range(-5, 40), 1.0))]})
    (result,) = evaluate_checks(
        [Check("all", "q", "run", Expectation(">", 0))], source, PHASES, None
    )
    assert result.status == "passed"
    assert result.points == 31
    assert result.windows[0].start == 0.0 and result.windows[0].end == 30.0


def test_missing_phase_is_not_evaluated() -> None:
    """A check on a phase the run never reached is not evaluated, with the reason."""
    source = FakePrometheusSource()
    (result,) = evaluate_checks(
        [Check("c", "q", "recovery", Expectation("==", 0))], source, PHASES[:2], None
    )
    assert result.status == "not_evaluated"
    assert "no recovery phase" in result.reason
    assert source.calls == []


def test_unreachable_prometheus_gives_not_evaluated_and_stops_asking() -> None:
    """Unavailable Prometheus: results say why, and after two failures nothing more is asked."""
    source = FakePrometheusSource(
        error=PrometheusUnavailable("cannot reach Prometheus at x", endpoint="x")
    )
    checks = [Check(f"c{i}", f"q{i}", "baseline", Expectation("==", 0)) for i in range(5)]
    results = evaluate_checks(checks, source, PHASES, None)
    assert [r.status for r in results] == ["not_evaluated"] * 5
    assert all("cannot reach Prometheus" in r.reason for r in results)
    assert len(source.calls) == 2
    assert results[0].to_dict()["passed"] is None


def test_rejected_query_is_not_evaluated_and_others_continue() -> None:
    """A query Prometheus refuses marks only that check not evaluated."""

    def responder(promql: str) -> list[Series]:
        if promql == "bad{":
            raise PrometheusQueryError("refused: bad_data: parse error", endpoint="x")
        return [ramp({}, {1: 0.0})]

    source = FakePrometheusSource(responder=responder)
    bad, good = evaluate_checks(
        [
            Check("bad", "bad{", "baseline", Expectation("==", 0)),
            Check("good", "ok", "baseline", Expectation("==", 0)),
        ],
        source,
        PHASES,
        None,
    )
    assert bad.status == "not_evaluated" and "parse error" in bad.reason
    assert good.status == "passed"


def test_exhausted_budget_marks_remaining_checks_not_evaluated() -> None:
    """Past the time budget, remaining checks are not evaluated instead of waiting."""
    ticks = iter([0.0, 0.0, 100.0, 200.0])
    source = FakePrometheusSource({"q": [ramp({}, {1: 0.0})]})
    checks = [Check(f"c{i}", "q", "baseline", Expectation("==", 0)) for i in range(3)]
    results = evaluate_checks(
        checks, source, PHASES, None, budget_s=50, monotonic=lambda: next(ticks)
    )
    assert [r.status for r in results] == ["passed", "not_evaluated", "not_evaluated"]
    assert "budget" in results[1].reason


def test_same_slug_gets_a_distinct_file(tmp_path: Path) -> None:
    """Two checks whose names slug alike do not overwrite each other's series."""
    source = FakePrometheusSource({"q": [ramp({}, {1: 0.0})]})
    checks = [
        Check("Pool: waiters", "q", "baseline", Expectation("==", 0)),
        Check("pool waiters", "q", "baseline", Expectation("==", 0)),
    ]
    first, second = evaluate_checks(checks, source, PHASES, tmp_path)
    assert first.series_file != second.series_file
    assert (tmp_path / str(first.series_file)).is_file()
    assert (tmp_path / str(second.series_file)).is_file()


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


def test_checks_against_a_silent_prometheus_are_bounded() -> None:
    """A Prometheus that accepts and never answers costs two timeouts, then nothing more."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", Ports().shifted(400).orders_proxy))
    sock.listen(64)
    try:
        port = sock.getsockname()[1]
        with HttpPrometheusSource(f"http://127.0.0.1:{port}", timeout=0.5) as source:
            began = time.monotonic()
            results = evaluate_checks(builtin_shop_checks(), source, PHASES, None)
            elapsed = time.monotonic() - began
    finally:
        sock.close()
    assert elapsed < 3.0
    assert {r.status for r in results} == {"not_evaluated"}
    assert all("did not answer" in r.reason for r in results)
