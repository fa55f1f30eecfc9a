"""Everything a detector may look at, read from the run directory.

The context holds the run's phases and fault windows, its load data, the trace ids the
load engine kept and the traces saved for them, the Prometheus series gathered after the
run (behind the ``PrometheusSource`` interface, answered from files), and what reading
back the acknowledged writes found. A source that is missing is None with the reason.
Detectors never reach for anything that is not here — no network, no clock — so each one
can be unit tested on synthetic contexts, and a run can be re-judged from its directory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from resilience.analysis.phases import PhasedLoad
from resilience.analysis.recovery import RecoveryResult
from resilience.rundir.load import LoadView
from resilience.vocabulary import (
    STRESS_PHASES,
    FaultWindow,
    Phase,
    ShopMode,
    phase_named,
    stress_phase,
)

if TYPE_CHECKING:
    from resilience.analysis.resources import Resources
    from resilience.experiment.model import DetectorSettings, Experiment
    from resilience.observe.prometheus import PrometheusSource
    from resilience.observe.spans import Trace
    from resilience.rundir.readback import ReadBack
    from resilience.rundir.records import TraceRef, WriteSummary


@dataclass
class AnalysisContext:
    """The inputs of every detector. Optional parts are None with a reason when missing."""

    experiment: Experiment
    run_dir: Path
    t0: float
    """Wall-clock epoch of experiment-clock 0 (to query Prometheus over the run window)."""
    phases: list[Phase]
    faults: list[FaultWindow]
    load: LoadView
    trace_refs: Sequence[TraceRef] = ()
    trace_refs_read: int | None = None
    """How many kept trace ids the run's file held, when ``trace_refs`` is a sample of them
    (a long run: ``resilience.rundir.load.sample_trace_refs``); None: all of them."""
    traces: Mapping[str, Trace] = field(default_factory=dict)
    traces_unavailable: str | None = None
    prometheus: PrometheusSource | None = None
    prometheus_unavailable: str | None = None
    series_files: Mapping[str, str] = field(default_factory=dict)
    """PromQL -> the file under ``prometheus/`` its gathered series are in (evidence)."""
    writes: WriteSummary | None = None
    """The acknowledged writes, summarised (``resilience.rundir.load.scan_writes``)."""
    readback: ReadBack | None = None
    """What reading back the acknowledged writes found (gathered after the run)."""
    readback_unavailable: str | None = None
    recovery: RecoveryResult | None = None
    builtin_shop: bool = False
    shop_mode: ShopMode | None = None
    faulted_dependencies: dict[str, set[str]] = field(default_factory=dict)
    """Per faulted proxy: the peer addresses / services behind it (e.g. postgres →
    {"127.0.0.1:25432", "postgresql"}), to decide which endpoints' traces touch it."""
    target_down_seconds: frozenset[int] = frozenset()
    """Seconds the target did not answer at all (analysis/rig.py): cascade judgements
    leave them out, so a dead target is never read as a dependency's cascade."""
    phased: PhasedLoad | None = None
    """The load split by phase (requests placed by their [sent, ended] interval); None:
    by send time (``load`` and each phase's seconds)."""
    resources: Resources | None = None
    """The resources behind the load, per second (analysis/resources.py: the rig's per-process
    figures and the gathered pool and process series); None when the run recorded none."""
    spike: bool = False
    """The phase under stress is a load spike (a stage far above the baseline's load), not a
    Toxiproxy fault: findings say "the spike". Set by itself when ``phases`` has a phase
    named ``spike``."""

    def __post_init__(self) -> None:
        if phase_named(self.phases, "spike") is not None:
            self.spike = True

    def phase(self, name: str) -> Phase | None:
        """The phase named ``name``; ``fault`` asks for the phase under stress, which in a
        spike run is the spike (so every detector of a fault phase judges a spike alike)."""
        if name == "fault":
            return stress_phase(self.phases)
        return phase_named(self.phases, name)

    def _phased(self) -> PhasedLoad:
        if self.phased is None:
            load = self.load
            if self.target_down_seconds:
                from resilience.analysis.rig import WithoutSeconds  # rig imports detectors

                load = WithoutSeconds(load, set(self.target_down_seconds))
            self.phased = PhasedLoad(load, self.phases)
        return self.phased

    def phase_load(self, name: str) -> LoadView:
        """Only the requests of phase ``name`` (per send second)."""
        return self._phased().view(name)

    def phase_seconds(self, name: str) -> list[int]:
        """The send seconds holding requests of phase ``name``."""
        return self._phased().seconds(name)

    def phase_words(self, name: str) -> str:
        """How findings name a phase: "the baseline", "the fault" (or "the spike"), "the
        recovery"; a run without faults has only its load."""
        if name in STRESS_PHASES:
            return "the spike" if self.spike else "the fault"
        if name == "baseline" and not self.faults and not self.spike:
            return "the load"
        return f"the {name}"

    @property
    def ended(self) -> str:
        """What recovery is measured from, in words: "the heal" or "the spike"."""
        return "the spike" if self.spike else "the heal"

    def settings(self, kind: str) -> DetectorSettings | None:
        return next((v for k, v in self.experiment.detectors.items() if k == kind), None)

    def param(self, kind: str, name: str, default: float) -> float:
        settings = self.settings(kind)
        if settings is None or name not in settings.params:
            return default
        return float(settings.params[name])

    def refs_in(self, phase: Phase, *, endpoint: str | None = None) -> list[TraceRef]:
        """The kept trace ids of phase ``phase``: by their [sent, ended] interval against
        the run's phase marks when it has them, else by send time."""
        rule = self.phased.rule if self.phased is not None else None
        out: list[TraceRef] = []
        for ref in self.trace_refs:
            if endpoint is not None and ref.endpoint != endpoint:
                continue
            if rule is not None and phase.name in ("baseline", *STRESS_PHASES, "recovery"):
                inside = ref.t >= (self.phased.warmup if self.phased else 0.0) and (
                    rule.phase_of_interval(ref.t, ref.t + ref.latency) == phase.name
                )
            else:
                inside = phase.start <= ref.t < phase.end
            if inside:
                out.append(ref)
        return out
