"""A run whose observers are gone still ends with a verdict, and says what it could not judge."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from resilience.experiment.loader import load_experiment
from resilience.runner.orchestrator import RunOptions, run_experiment
from tests.integration._runs import leftovers
from tests.integration.conftest import StackHandle

pytestmark = pytest.mark.integration

SHORT = ("load.arrival_rate.0.duration=22s", "faults.0.at=7s", "faults.0.duration=6s")


def test_run_without_prometheus_and_jaeger_marks_what_needs_them_not_evaluated(
    hardened_shop: StackHandle, tmp_path: Path
) -> None:
    """Prometheus and Jaeger down: the run completes, checks and trace/metric-based findings
    are 'not evaluated' with the reason, faults are healed, and nothing waits long."""
    experiment = load_experiment("db-hang", profile="smoke", overrides=list(SHORT))
    hardened_shop.stack.down(["prometheus", "jaeger"])
    try:
        started = time.monotonic()
        result = run_experiment(
            experiment,
            RunOptions(
                out=tmp_path / "run",
                shop_mode="hardened",
                config=hardened_shop.config,
                manage_stack=False,
            ),
        )
        took = time.monotonic() - started
    finally:
        hardened_shop.stack.up(shop_mode="hardened")
    assert result.journal is not None, result.reason
    assert result.exit_code in (0, 1), result.reason
    checks = result.journal.checks
    assert checks and all(c.status == "not_evaluated" for c in checks)
    assert all("Prometheus" in (c.reason or "") for c in checks), checks[0].reason
    unjudged = [f for f in result.journal.findings if f.status == "not_evaluated"]
    assert unjudged, [f.summary for f in result.journal.findings]
    assert result.journal.recovery.recovered is not None  # client-side numbers still judged
    assert leftovers(hardened_shop) == []
    # 20 s of load plus start and analysis; an observer wait would add its timeouts on top.
    assert took < experiment.total_duration + 40, took
