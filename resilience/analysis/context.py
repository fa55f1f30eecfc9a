"""Everything a detector may look at, gathered once after the run.

The context is built from the run directory (journal, load data, saved traces, saved
Prometheus series) plus live sources that may be missing: a Prometheus source (None when
unreachable, with the reason) and an HTTP reader for the target (used by the data-loss
read-back). Detectors never reach for anything that is not here, so each one can be unit
tested on synthetic contexts built from fakes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resilience.analysis.data import LoadView
from resilience.analysis.recovery import RecoveryResult
from resilience.vocabulary import FaultWindow, Phase, phase_named

if TYPE_CHECKING:
    from resilience.experiment.model import DetectorSettings, Experiment
    from resilience.load.samples import TraceRef, WriteAck
    from resilience.observe.prometheus import PrometheusSource
    from resilience.observe.spans import Trace


HttpGet = Callable[[str], tuple[int, Any]]
"""GET a path on the target; returns (status, parsed JSON or None). Raises on transport errors."""


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
    traces: Mapping[str, Trace] = field(default_factory=dict)
    traces_unavailable: str | None = None
    prometheus: PrometheusSource | None = None
    prometheus_unavailable: str | None = None
    writes: Sequence[WriteAck] = ()
    http_get: HttpGet | None = None
    recovery: RecoveryResult | None = None
    builtin_shop: bool = False
    shop_mode: str | None = None
    faulted_dependencies: dict[str, set[str]] = field(default_factory=dict)
    """Per faulted proxy: the peer addresses / services behind it (e.g. postgres →
    {"127.0.0.1:25432", "postgresql"}), to decide which endpoints' traces touch it."""

    def phase(self, name: str) -> Phase | None:
        return phase_named(self.phases, name)

    def settings(self, kind: str) -> DetectorSettings | None:
        return self.experiment.detectors.get(kind)  # type: ignore[call-overload,no-any-return]

    def param(self, kind: str, name: str, default: float) -> float:
        settings = self.settings(kind)
        if settings is None or name not in settings.params:
            return default
        return float(settings.params[name])

    def refs_in(self, phase: Phase, *, endpoint: str | None = None) -> list[TraceRef]:
        return [
            r
            for r in self.trace_refs
            if phase.start <= r.t < phase.end and (endpoint is None or r.endpoint == endpoint)
        ]
