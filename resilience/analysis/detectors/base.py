"""The detector extension point: a tiny base class, one module per detector.

A detector looks at an ``AnalysisContext`` and returns findings. It declares what it needs
(``needs``: "traces", "prometheus", "readback"); when a need is missing the runner records a
``not_evaluated`` finding with the reason instead of calling it, so nothing hangs and the
verdict says what could not be judged. Severity and whether a finding fails the run have
per-detector defaults that an experiment may override (``detectors: {kind: {severity,
fails_run, enabled, params}}``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from resilience.analysis.context import AnalysisContext
from resilience.vocabulary import FindingStatus, Severity

if TYPE_CHECKING:
    from resilience.experiment.model import Experiment


@dataclass
class Finding:
    """A detector's conclusion with its evidence (numbers, seconds, trace ids, series)."""

    kind: str
    severity: Severity
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fails_run: bool = False
    status: FindingStatus = "found"

    def to_record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "summary": self.summary,
            "evidence": self.evidence,
            "fails_run": self.fails_run,
            "status": self.status,
        }


class Detector:
    """Base class: set ``kind``, ``needs`` and the defaults; implement ``detect``."""

    kind: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    default_severity: ClassVar[Severity] = "warning"
    default_fails_run: ClassVar[bool] = False

    def promql(self, experiment: Experiment, builtin_shop: bool) -> dict[str, str]:
        """Name -> PromQL of every series this detector reads. The runner gathers them over
        the whole run into the run directory; ``detect`` then reads them through
        ``ctx.prometheus``. Expressions not declared here are not there to read."""
        return {}

    def detect(self, ctx: AnalysisContext) -> list[Finding]:
        """Return findings (possibly none). Must not raise for missing data: return
        a finding with status ``inconclusive`` and the reason instead."""
        raise NotImplementedError

    def finding(
        self,
        ctx: AnalysisContext,
        summary: str,
        evidence: dict[str, Any] | None = None,
        *,
        severity: Severity | None = None,
        fails_run: bool | None = None,
        status: FindingStatus = "found",
    ) -> Finding:
        """A finding with this detector's kind and the experiment's overrides applied."""
        settings = ctx.settings(self.kind)
        sev: Severity = severity or self.default_severity
        fails = self.default_fails_run if fails_run is None else fails_run
        if settings is not None:
            if settings.severity is not None:
                sev = settings.severity
            if settings.fails_run is not None:
                fails = settings.fails_run
        if status != "found":
            fails = False
        return Finding(self.kind, sev, summary, evidence or {}, fails, status)
