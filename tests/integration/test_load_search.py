"""A capacity search on the built-in shop: it finds a breaking point and stops by itself a
bounded time after the SLOs broke (a smoke run under 60 s)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from resilience.experiment.loader import load_experiment
from resilience.runner.orchestrator import RunOptions, run_experiment
from tests.integration.conftest import StackHandle

EXPERIMENT = Path(__file__).parent / "experiments" / "search-smoke.yaml"


def test_a_search_finds_the_breaking_point_and_stops_after_the_slos_broke(
    hardened_shop: StackHandle, tmp_path: Path
) -> None:
    """Stepped requests per second against tight SLOs: the live judge sees the break, the
    load ends `after` seconds later (well before its plan's end), and the analysis names
    the breaking point (load held, served rate, second, what broke first) in the journal
    and the reports."""
    experiment = load_experiment(EXPERIMENT)
    search = experiment.load.search
    assert search is not None
    began = time.monotonic()
    result = run_experiment(
        experiment,
        RunOptions(out=tmp_path / "run", shop_mode="hardened", config=hardened_shop.config),
    )
    took = time.monotonic() - began
    assert result.run_dir is not None
    journal = json.loads((result.run_dir / "journal.json").read_text())
    assert result.exit_code == 0, (result.reason, journal.get("events"))
    broke = [e for e in journal["events"] if e["kind"] == "search_slo_broke"]
    assert len(broke) == 1, journal["events"]
    sure_at = broke[0]["t"]
    load_end = journal["load_end"]
    # Stopped by itself, `after` seconds once the break was sure, before its plan ended.
    assert sure_at + search.after - 0.5 <= load_end <= sure_at + search.after + 1.5
    assert load_end < experiment.total_duration - 1.0
    point = journal["analysis"]["breaking_point"]
    assert point["broke"] is True
    assert point["unit"] == "rps"
    assert point["second"] is not None and point["second"] <= sure_at
    assert point["load"] is not None and point["load"] >= search.steps.from_
    assert point["served_rps"] is not None and point["served_rps"] > 0
    assert point["first_broke"], point
    assert result.reason.startswith("breaking point: ")
    for report in ("summary.md", "junit.xml", "report.html"):
        assert "breaking point: " in (result.run_dir / report).read_text(), report
    assert took < 90.0
