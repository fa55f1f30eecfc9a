"""The analysis as a pure step: a synthetic run directory judged without any network, and
re-judged with a changed SLO (the old verdict kept beside the new one)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from resilience import histogram as hist
from resilience.analysis.analyse import analyse
from resilience.rundir.journal import FaultRecord, Journal
from resilience.rundir.layout import RunDir
from resilience.rundir.load import LoadFiles
from resilience.runner.rejudge import rejudge
from resilience.vocabulary import OUTCOMES

T0 = 1_767_225_600.0
EXPERIMENT = """\
name: synthetic
target: {url: "http://127.0.0.1:9"}
proxies: [{name: db, listen: "127.0.0.1:25999", upstream: "127.0.0.1:5432"}]
load:
  stages: [{duration: 40s, users: 5, spawn_rate: 5}]
  warmup: 0s
  workload: {requests: [{name: "GET /a", path: /a}]}
faults: [{at: 10s, duration: 10s, proxy: db, type: outage}]
slo:
  baseline: {p95: 500ms, error_rate: 1%}
  fault: {error_rate: 10%}
  recovery: {within: 10s}
"""


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt to open a connection fails the test."""

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the analysis must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


def write_run(run_dir: Path, *, fault_errors: int) -> Path:
    """40 s of 20 requests a second to one endpoint (10 ms); during the fault (10-20 s)
    ``fault_errors`` of each second's requests fail with a 5xx at 2 ms."""
    layout = RunDir(run_dir).create()
    layout.experiment.write_text(EXPERIMENT, encoding="utf-8")
    journal = Journal.start(
        layout.journal, experiment="synthetic", profile=None, t0=T0, builtin=False, load_end=40.0
    )
    journal.update(
        faults=[
            FaultRecord(
                index=0, proxy="db", type="outage", scheduled_at=10.0, scheduled_end=20.0,
                applied_at=10.0, healed_at=20.0,
            )
        ]
    )  # fmt: skip
    files = LoadFiles(run_dir, t0=T0)
    for second in range(40):
        errors = fault_errors if 10 <= second < 20 else 0
        counts = dict.fromkeys(OUTCOMES, 0)
        counts["ok"], counts["5xx"] = 20 - errors, errors
        latencies = [10_000] * (20 - errors) + [2_000] * errors
        files.write_second(
            second,
            {"GET /a": counts},
            {"GET /a": hist.Histogram.from_values(latencies)},
            {"GET /a": 0},
        )
    files.write_meta({"t0": T0, "endpoints": ["GET /a"], "seconds": 40})
    files.close()
    journal.finish("passed", ended=T0 + 41, exit_code=0, reason="to be judged")
    return run_dir


@pytest.mark.usefixtures("no_network")
def test_a_run_directory_is_judged_from_its_files_alone(tmp_path: Path) -> None:
    """Phases from the journal's stamps, SLOs from the load files, recovery measured; the
    fault-phase error rate (50 %) breaks its 10 % SLO; nothing asked of the network."""
    run_dir = write_run(tmp_path / "run", fault_errors=10)
    verdict = analyse(run_dir)
    assert [(p.name, p.start, p.end) for p in verdict.phases] == [
        ("baseline", 0.0, 10.0),
        ("fault", 10.0, 20.0),
        ("recovery", 20.0, 40.0),
    ]
    assert verdict.status == "failed" and verdict.exit_code == 1
    breached = [(s.phase, s.metric, s.observed) for s in verdict.slo if s.passed is False]
    assert breached == [("fault", "error_rate", 0.5)]
    assert verdict.recovery is not None and verdict.recovery.recovered
    reasons = {c.reason for c in verdict.checks}
    assert all("not gathered" in r or "no Prometheus" in r for r in reasons)


@pytest.mark.usefixtures("no_network")
def test_the_same_directory_gives_the_same_verdict(tmp_path: Path) -> None:
    """Judging twice gives the same verdict, field for field."""
    run_dir = write_run(tmp_path / "run", fault_errors=10)
    first, second = analyse(run_dir), analyse(run_dir)
    assert first.journal_fields() == second.journal_fields()
    assert (first.status, first.exit_code, first.reason) == (
        second.status,
        second.exit_code,
        second.reason,
    )


@pytest.mark.usefixtures("no_network")
def test_rejudging_with_a_changed_slo_changes_the_verdict_and_keeps_the_old(
    tmp_path: Path,
) -> None:
    """resilience analyse DIR --set: the new SLO decides, the journal keeps the old verdict."""
    run_dir = write_run(tmp_path / "run", fault_errors=10)
    strict = rejudge(run_dir, reports=False)
    assert (strict.status, strict.exit_code) == ("failed", 1)
    lenient = rejudge(run_dir, ["slo.fault.error_rate=60%"], reports=False)
    assert (lenient.status, lenient.exit_code) == ("passed", 0)
    assert lenient.previous_status == "failed"
    journal = json.loads((run_dir / "journal.json").read_text())
    assert journal["status"] == "passed" and journal["exit_code"] == 0
    assert [v["status"] for v in journal["previous_verdicts"]] == ["passed", "failed"]
    assert journal["previous_verdicts"][-1]["slo"]
    assert journal["analysis"]["phase_rule"]
