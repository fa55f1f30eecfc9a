"""The spike seed test's smoke profile on the real stack (issue 14, part 3): a load spike is
a phase like a fault — baseline / spike / recovery — and the run reports the recovery time
after the spike in the journal and the reports, in under a minute."""

from __future__ import annotations

import json
import re

import pytest

from resilience.analysis.analyse import read_load
from resilience.analysis.data import window_stats
from resilience.vocabulary import Phase, epoch_of
from tests.integration._runs import RunCache

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_spike_smoke_reports_the_recovery_after_the_spike(runs: RunCache) -> None:
    """`spike --profile smoke` (hardened shop): 10 users, 200 for 8 s (spawned 100/s), 10
    again. The spike really stresses the shop (its p95 several times the baseline's), the
    hardened shop holds the spike's 5 % error budget and is back in its baseline band within
    10 s; the journal, summary.md and report.html name the phases and give the recovery time
    as a number."""
    result = runs.run("spike", mode="hardened")
    run_dir = result.run_dir
    assert run_dir is not None and result.journal is not None
    assert result.exit_code == 0, result.reason
    journal = json.loads((run_dir / "journal.json").read_text())
    phases = [(p["name"], p["start"], p["end"]) for p in journal["phases"]]
    assert [name for name, _, _ in phases] == ["baseline", "spike", "recovery"]
    spike = Phase(*phases[1])
    assert spike.start == 12.0 and 20.0 < spike.end < 21.5  # 190 users stopped at 250/s
    started, ended = epoch_of(journal["started_at"]), epoch_of(journal["ended_at"])
    assert started is not None and ended is not None and ended - started < 60

    recovery = journal["recovery"]
    assert isinstance(recovery["seconds"], (int, float)), recovery
    assert recovery["recovered"] is True and recovery["budget_seconds"] == 10.0
    assert recovery["heal_time"] == pytest.approx(spike.end, abs=0.01)
    assert [s["phase"] for s in journal["slo"] if s["metric"] == "error_rate"] == [
        "baseline",
        "spike",
    ]

    load = read_load(run_dir)
    baseline = Phase(*phases[0])
    before = window_stats(load, None, list(baseline.seconds()))
    during = window_stats(load, None, list(spike.seconds()))
    assert before.p95 is not None and during.p95 is not None
    assert during.p95 >= max(4 * before.p95, 100.0), (before.p95, during.p95)

    summary = (run_dir / "summary.md").read_text()
    found = re.search(r"\*\*Recovery after the spike:\*\* recovered in ([0-9.]+) s", summary)
    assert found is not None, summary
    assert float(found.group(1)) == pytest.approx(recovery["seconds"], abs=0.05)
    html = (run_dir / "report.html").read_text()
    assert "Recovery after the spike" in html
    assert re.search(r"recovered [0-9.]+ s after the spike", html)
    assert "a load spike from 12.0 s" in html
