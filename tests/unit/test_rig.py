"""The rig's health as facts (analysis/rig.py): overloaded phases, lost sources, the
target's outage, and what they change in the verdict; rig.jsonl written and read back."""

from __future__ import annotations

import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from resilience.analysis.rig import (
    WithoutSeconds,
    outage_finding,
    rig_report,
    rig_verdict,
)
from resilience.rundir.rig import RigSample, RigWriter, read_rig
from resilience.runner.rig import RigMonitor
from resilience.testing.analysis import LoadBuilder, fault_phases
from resilience.vocabulary import MonotonicClock

PHASES = fault_phases(end=30.0, fault=(10.0, 20.0))


def _samples(**overrides: dict[str, object]) -> list[RigSample]:
    """30 quiet seconds, with the fields in ``overrides`` (second -> dict) replaced."""
    out = []
    for second in range(30):
        fields: dict[str, object] = {
            "t": second + 0.1,
            "second": second,
            "cores": 2,
            "load1": 1.0,
            "busy": 0.4,
            "steal": 0.0,
            "idle": 0.6,
            "workers": [0.3, 0.3],
            "target_cpu": 0.3,
            "other_cpu": 0.2,
            "sources": {"prometheus": "up", "traces": "up", "toxiproxy": "up", "target": "up"},
        }
        fields.update(overrides.get(str(second), {}))
        out.append(RigSample.model_validate(fields))
    return out


def _hogged(seconds: range) -> dict[str, dict[str, object]]:
    return {str(s): {"idle": 0.0, "busy": 1.0, "other_cpu": 1.8, "load1": 3.0} for s in seconds}


def test_a_quiet_rig_says_nothing_and_changes_no_verdict() -> None:
    """Quiet seconds: no statement, the failure stays the target's (exit 1)."""
    report = rig_report(_samples(), PHASES, None, end=30.0)
    assert report.statements() == []
    assert rig_verdict(
        "failed", 1, "1 SLO(s) breached", report=report, baseline_breaches=0,
        critical_unevaluated=[],
    ) == ("failed", 1, "1 SLO(s) breached")  # fmt: skip


def test_cpu_hogs_in_the_fault_phase_make_a_failure_inconclusive() -> None:
    """Other processes taking both cores during the fault: inconclusive, exit 3, said why."""
    report = rig_report(_samples(**_hogged(range(10, 20))), PHASES, None, end=30.0)
    assert [p.phase for p in report.overloaded] == ["fault"]
    status, code, reason = rig_verdict(
        "failed", 1, "findings: cascading_failure", report=report, baseline_breaches=0,
        critical_unevaluated=[],
    )  # fmt: skip
    assert (status, code) == ("inconclusive", 3)
    assert "rig was overloaded in the fault phase" in reason
    assert "other processes using 1.8 of 2 cores" in reason
    assert "cascading_failure" in reason


def test_a_saturated_worker_is_named() -> None:
    """A load worker at 97 % of a core in most of the baseline: the generator is named."""
    hot = {str(s): {"workers": [0.97, 0.3]} for s in range(0, 10)}
    report = rig_report(_samples(**hot), PHASES, None, end=30.0)
    lines = report.statements()
    assert any("load generator was saturated" in line for line in lines)
    assert any("load worker 0 at 97% of a core" in line for line in lines)


def test_a_brief_blip_is_reported_but_not_doubted() -> None:
    """One busy second in ten: said in the reports, the verdict stands."""
    report = rig_report(_samples(**_hogged(range(12, 13))), PHASES, None, end=30.0)
    assert report.overloaded == []
    assert any(line.startswith("rig busy") for line in report.statements())


def test_prometheus_lost_mid_run_is_dated() -> None:
    """Prometheus down from second 12 to the end: "unreachable from 12.1 s to the end"."""
    down = {
        str(s): {
            "sources": {"prometheus": "down", "target": "up"},
            "why": {"prometheus": "connection refused"},
        }
        for s in range(12, 30)
    }
    report = rig_report(_samples(**down), PHASES, None, end=30.0)
    assert report.lost_text("prometheus") == (
        "Prometheus unreachable from 12.1 s to the end (connection refused)"
    )
    status, code, reason = rig_verdict(
        "passed", 0, "held", report=report, baseline_breaches=0,
        critical_unevaluated=["p99 check: not evaluated: Prometheus unreachable from 12.1 s"],
    )  # fmt: skip
    assert (status, code) == ("inconclusive", 3)
    assert reason.startswith("critical checks could not be evaluated: p99 check")


def test_the_targets_outage_is_found_and_its_seconds_left_out() -> None:
    """Every request refused from second 14 on: an outage to the end, a critical finding
    naming it, and a view without those seconds."""
    load = LoadBuilder()
    load.add("GET /catalog/items", range(0, 14), ok=20)
    load.add("GET /catalog/items", range(14, 30), ok=0, errors={"connection_error": 15})
    load.add("POST /orders", range(0, 13), ok=5)
    load.add("POST /orders", range(13, 14), ok=2, errors={"connection_error": 3})
    load.add("POST /orders", range(14, 30), ok=0, errors={"connection_error": 4})
    report = rig_report(None, PHASES, load.view, end=30.0)
    assert [o.text() for o in report.target_down] == [
        "the target unreachable from 13.0 s to the end "
        "(connection refused or reset on every endpoint)"
    ]
    assert 14 in report.down_seconds() and 13 in report.down_seconds()
    finding = outage_finding(report)
    assert finding is not None and finding.kind == "target_unreachable" and finding.fails_run
    view = WithoutSeconds(load.view, report.down_seconds())
    assert view.counts(None, 20) == {}
    assert 20 not in view.seconds
    assert view.counts(None, 5)["ok"] == 25


def test_the_baseline_breach_is_said_first() -> None:
    """A failed run whose baseline missed its SLOs says the comparison is unreliable."""
    report = rig_report(_samples(), PHASES, None, end=30.0)
    _, code, reason = rig_verdict(
        "failed", 1, "1 SLO(s) breached", report=report, baseline_breaches=1,
        critical_unevaluated=[],
    )  # fmt: skip
    assert code == 1
    assert reason.startswith("the baseline did not meet its SLOs (1 breached): the comparison")


def test_rig_file_round_trip_survives_a_torn_last_line(tmp_path: Path) -> None:
    """rig.jsonl read back in order; a half-written last line (a killed run) is skipped."""
    writer = RigWriter(tmp_path)
    for sample in _samples()[:3]:
        writer.write(sample)
    writer.close()
    with (tmp_path / "rig.jsonl").open("a") as handle:
        handle.write('{"t": 3.1, "second"')
    samples = read_rig(tmp_path)
    assert samples is not None and [s.second for s in samples] == [0, 1, 2]
    assert read_rig(tmp_path / "nowhere") is None


def test_the_monitor_notices_a_lost_source_within_a_second(tmp_path: Path) -> None:
    """A health endpoint that stops answering is a source_lost event within a second, and
    rig.jsonl holds the worker's CPU and the source's state per second."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/version"
    monitor = RigMonitor(
        tmp_path, MonotonicClock(), probes={"toxiproxy": url}, worker_pids=lambda: [os.getpid()]
    )
    monitor.start()
    try:
        deadline = time.monotonic() + 5
        while monitor.state("toxiproxy") != "up" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert monitor.state("toxiproxy") == "up"
        server.shutdown()
        server.server_close()
        lost_at = time.monotonic()
        lost = []
        while not lost and time.monotonic() < lost_at + 3:
            lost = [e for e in monitor.events() if e.kind == "source_lost"]
            time.sleep(0.02)
        noticed = time.monotonic() - lost_at
        assert lost and lost[0].source == "toxiproxy", "the loss was not noticed"
        assert noticed < 1.0, f"noticed after {noticed:.2f} s"
        assert "Toxiproxy stopped answering" in lost[0].text
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not _last_down(tmp_path):
            time.sleep(0.05)
    finally:
        monitor.stop()
    assert _last_down(tmp_path)
    samples = read_rig(tmp_path)
    assert samples is not None
    assert all(s.workers and s.workers[0] is not None for s in samples[1:])


def _last_down(run_dir: Path) -> bool:
    samples = read_rig(run_dir)
    return samples is not None and bool(samples) and samples[-1].sources.get("toxiproxy") == "down"


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: object) -> None:
        pass


def test_lost_writes_fail_the_run_on_an_overloaded_rig() -> None:
    """An acknowledged write read back missing is the target's whatever the rig did: the
    failure stands (exit 1) and says the rig was overloaded beside it; without such a
    fact the same failure is inconclusive."""
    report = rig_report(_samples(**_hogged(range(10, 20))), PHASES, None, end=30.0)
    assert report.overloaded
    status, code, reason = rig_verdict(
        "failed", 1, "findings: data_loss", report=report, baseline_breaches=0,
        critical_unevaluated=[], facts=["data_loss"],
    )  # fmt: skip
    assert (status, code) == ("failed", 1)
    assert reason.startswith("findings: data_loss (though the rig was overloaded in the fault")
    assert "data_loss does not depend on the measurement" in reason
    assert rig_verdict(
        "failed", 1, "findings: data_loss", report=report, baseline_breaches=0,
        critical_unevaluated=[],
    )[:2] == ("inconclusive", 3)  # fmt: skip


def _stolen(seconds: range, steal: float = 0.22) -> dict[str, dict[str, object]]:
    """The hypervisor taking ``steal`` of the CPU; the host otherwise mostly idle."""
    return {str(s): {"steal": steal, "idle": 0.6, "busy": 0.18} for s in seconds}


def test_a_failure_in_a_phase_the_rig_was_calm_in_stands() -> None:
    """Steal only in the recovery phase, the run failed in the fault phase (a cascade, a
    fault SLO): the failure stands (exit 1) and says so; failing only in the recovery
    phase it is inconclusive; with its phases unknown too."""
    report = rig_report(_samples(**_stolen(range(20, 30))), PHASES, None, end=30.0)
    assert [p.phase for p in report.overloaded] == ["recovery"]
    args = {"report": report, "baseline_breaches": 0, "critical_unevaluated": []}
    status, code, reason = rig_verdict(
        "failed", 1, "findings: cascading_failure", failing_phases={"fault"}, **args
    )
    assert (status, code) == ("failed", 1)
    assert "rig was overloaded in the recovery phase: CPU steal 22%" in reason
    assert "the failures in the fault phase do not depend on it" in reason
    for phases in ({"recovery"}, None):
        assert rig_verdict(
            "failed", 1, "findings: slow_recovery", failing_phases=phases, **args
        )[:2] == ("inconclusive", 3)  # fmt: skip


def test_steal_in_every_phase_is_controlled_by_a_baseline_that_held() -> None:
    """CPU steal through the whole run (a noisy hypervisor), the baseline met its SLOs on
    it: a fault-phase failure is the target's. The same failure is inconclusive when the
    baseline missed its SLOs, or when other processes (not steal) took the CPU."""
    report = rig_report(_samples(**_stolen(range(30))), PHASES, None, end=30.0)
    assert [p.phase for p in report.overloaded] == ["baseline", "fault", "recovery"]
    assert all(p.steal_only for p in report.overloaded)
    status, code, reason = rig_verdict(
        "failed", 1, "findings: cascading_failure", report=report, baseline_breaches=0,
        critical_unevaluated=[], failing_phases={"fault", "recovery"},
    )  # fmt: skip
    assert (status, code) == ("failed", 1)
    assert "the baseline measured under it met its SLOs" in reason
    assert rig_verdict(
        "failed", 1, "2 SLO(s) breached", report=report, baseline_breaches=1,
        critical_unevaluated=[], failing_phases={"baseline", "fault"},
    )[:2] == ("inconclusive", 3)  # fmt: skip
    hogs = {**_stolen(range(30)), **_hogged(range(10, 20))}
    hogged = rig_report(_samples(**hogs), PHASES, None, end=30.0)
    assert not next(p for p in hogged.phases if p.phase == "fault").steal_only
    assert rig_verdict(
        "failed", 1, "findings: cascading_failure", report=hogged, baseline_breaches=0,
        critical_unevaluated=[], failing_phases={"fault"},
    )[:2] == ("inconclusive", 3)  # fmt: skip


def test_steal_only_in_the_fault_phase_has_no_control() -> None:
    """A calm baseline is no control for steal that came with the fault: inconclusive."""
    report = rig_report(_samples(**_stolen(range(10, 30))), PHASES, None, end=30.0)
    assert rig_verdict(
        "failed", 1, "findings: cascading_failure", report=report, baseline_breaches=0,
        critical_unevaluated=[], failing_phases={"fault"},
    )[:2] == ("inconclusive", 3)  # fmt: skip


def test_the_failing_phases_come_from_slos_checks_and_findings() -> None:
    """Breached SLOs by their phase, a cascade in the stress phase, a slow recovery in the
    recovery phase; lost writes are facts (no phase); a check over the whole run, or a
    finding kind with no phase, makes them unknown (None: every phase is doubted)."""
    from resilience.analysis.analyse import failing_phases
    from resilience.analysis.detectors.base import Finding
    from resilience.analysis.slo import SloResult

    phases = ["baseline", "fault", "recovery"]
    breached = SloResult("fault", None, "p95", 0.5, 0.9, False, "s")
    held = SloResult("baseline", None, "p95", 0.5, 0.1, True, "s")

    def finding(kind: str) -> Finding:
        return Finding(kind, "critical", kind, fails_run=True)

    assert failing_phases([breached, held], [], [], phases) == {"fault"}
    assert failing_phases([], [], [finding("cascading_failure")], phases) == {"fault"}
    assert failing_phases([], [], [finding("slow_recovery")], phases) == {"recovery"}
    assert failing_phases([held], [], [finding("data_loss")], phases) == set()
    assert failing_phases([], [], [finding("memory_growth")], phases) is None
    spike = ["baseline", "spike", "recovery"]
    assert failing_phases([], [], [finding("cascading_failure")], spike) == {"spike"}
