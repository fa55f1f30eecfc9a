"""Phases by overlap on the real stack: requests in flight when a fault begins and failed by
it belong to the fault phase, so the baseline's SLOs judge only the baseline.

Every call from the gateway to orders is held 1 s on its way there (a latency toxic of
the test's own on the `orders` proxy's upstream stream, present for the whole run), so at
any moment several order requests are in flight and not yet at orders. When the database goes away at 8 s, the ones in flight fail:
sent in the baseline, ended in the fault. Phased by send time they made the hardened shop
miss a 0.1 % baseline error-rate SLO for nothing (issue 9); phased by overlap it holds.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from resilience.experiment.loader import load_experiment
from resilience.faults.toxiproxy import Toxic, ToxiproxyClient
from resilience.runner.orchestrator import RunOptions, RunResult, run_experiment
from resilience.runner.rejudge import rejudge
from tests.integration.conftest import StackHandle

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOLD = Toxic(
    name="test-orders-hold",
    type="latency",
    stream="upstream",  # the request reaches orders 1 s late: after the outage, for some
    attributes={"latency": 1000, "jitter": 0},
)


@pytest.fixture
def held_orders(hardened_shop: StackHandle) -> Iterator[StackHandle]:
    """The hardened shop with every gateway → orders call held 1 s (removed after)."""
    with ToxiproxyClient(hardened_shop.toxiproxy_url) as client:
        client.add_toxic("orders", HOLD)
    try:
        yield hardened_shop
    finally:
        with ToxiproxyClient(hardened_shop.toxiproxy_url) as client:
            client.remove_toxic("orders", HOLD.name)


def _run(handle: StackHandle, out: Path) -> RunResult:
    experiment = load_experiment(
        "db-outage",
        profile="smoke",
        overrides=[
            "slo.baseline={p95: 2s, error_rate: 0.1%}",
            "slo.fault=null",
            "detectors={cascading_failure: {enabled: false}}",
        ],
    )
    return run_experiment(
        experiment, RunOptions(out=out, shop_mode="hardened", config=handle.config)
    )


def test_requests_failed_by_the_fault_in_flight_do_not_count_in_the_baseline(
    held_orders: StackHandle, tmp_path: Path
) -> None:
    """Order requests sent before the outage and failed by it are fault-phase requests: the
    baseline error-rate SLO holds, and the load files show where they went."""
    result = _run(held_orders, tmp_path / "run")
    assert result.journal is not None, result.reason
    journal = result.journal
    assert journal.analysis["phase_rule"] == "overlap"
    assert [m.kind for m in journal.marks] == ["apply", "heal"]
    baseline_errors = [s for s in journal.slo if s.phase == "baseline" and s.metric == "error_rate"]
    assert baseline_errors and baseline_errors[0].passed, baseline_errors
    # The straddlers are in the load files: a second split at the outage, its failed part
    # placed "sent before, ended after" (0-1).
    straddled = 0
    for line in (tmp_path / "run" / "load.jsonl").read_text().splitlines():
        body = json.loads(line)
        for part in body.get("parts", []):
            if part["seg"] == "0-1":
                straddled += part["5xx"] + part["timeout"] + part["connection_error"]
        if body.get("seg") == "0-1":
            straddled += body["5xx"] + body["timeout"] + body["connection_error"]
    assert straddled > 0, "no request was in flight when the outage began"
    # The same run judged by send time (its marks removed) charges them to the baseline.
    copy = tmp_path / "by-send-time"
    shutil.copytree(tmp_path / "run", copy)
    raw = json.loads((copy / "journal.json").read_text())
    raw["marks"] = []
    (copy / "journal.json").write_text(json.dumps(raw))
    rejudged = rejudge(copy, reports=False)
    by_send = [
        s for s in rejudged.verdict.slo if s.phase == "baseline" and s.metric == "error_rate"
    ]
    assert by_send and by_send[0].observed is not None and by_send[0].observed > 0.001
