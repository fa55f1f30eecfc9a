"""Every detector's ``params``: name, type, default and meaning, declared once.

The detectors (``resilience/analysis/detectors/``) read their defaults from here and the
loader checks ``detectors.<kind>.params`` against it, so a misspelt name (``colour:``) or
a value of the wrong type is refused when the file is loaded (exit 2, at its key and
line) instead of being ignored, or failing that one detector when the run is judged. It
lives with the experiment model, below the detectors, because both read it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from resilience.experiment._problems import Problem, describe

ParamType = Literal["number", "integer", "text"]
ParamValue = float | int | str


@dataclass(frozen=True)
class DetectorParam:
    """One parameter: its type, its default (``None``: unset unless given), meaning and
    range (numbers: ``low`` ≤ value, or ``low`` < value when ``low_open``; value ≤ ``high``,
    or < ``high`` when ``high_open``)."""

    type: ParamType
    default: ParamValue | None
    meaning: str
    low: float | None = None
    low_open: bool = False
    high: float | None = None
    high_open: bool = False

    def problem(self, value: object) -> tuple[str, str] | None:
        """``(expected, got)`` when ``value`` is not of this parameter's type or range."""
        expected = {
            "text": "text (a non-empty string)",
            "number": "a number",
            "integer": "a whole number",
        }[self.type]
        if isinstance(value, bool):
            return expected, describe(value)
        if self.type == "text":
            ok = isinstance(value, str) and bool(value.strip())
            return None if ok else (expected, describe(value))
        if not isinstance(value, int | float) or (
            self.type == "integer" and isinstance(value, float) and not value.is_integer()
        ):
            return expected, describe(value)
        try:
            inside = self.within(float(value))
        except OverflowError:  # an integer of hundreds of digits
            inside = False
        if not inside:
            return f"{expected} {self.range_text()}", describe(value)
        return None

    def within(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def range_text(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'above' if self.low_open else 'at least'} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'below' if self.high_open else 'at most'} {self.high:g}")
        return " and ".join(parts)


def _n(default: float, meaning: str, *, positive: bool = False) -> DetectorParam:
    """A number ≥ 0 (> 0 when ``positive``)."""
    return DetectorParam("number", default, meaning, low=0.0, low_open=positive)


def _i(default: int, meaning: str, *, least: int = 0) -> DetectorParam:
    """A whole number ≥ ``least``."""
    return DetectorParam("integer", default, meaning, low=float(least))


def _p(default: float, meaning: str) -> DetectorParam:
    """A significance level: strictly between 0 and 1."""
    return DetectorParam(
        "number", default, meaning, low=0.0, low_open=True, high=1.0, high_open=True
    )


def _share(default: float, meaning: str) -> DetectorParam:
    """A share: above 0, at most 1."""
    return DetectorParam("number", default, meaning, low=0.0, low_open=True, high=1.0)


def _t(meaning: str) -> DetectorParam:
    return DetectorParam("text", None, meaning)


DETECTOR_PARAMS: Final[Mapping[str, Mapping[str, DetectorParam]]] = {
    "cascading_failure": {
        "error_rate_margin": _n(0.05, "rise of the error rate that counts as degraded"),
        "min_errors": _i(3, "failures an endpoint needs to be degraded by errors", least=1),
        "p95_ratio": _n(3.0, "fault p95 over baseline p95 that counts as degraded", positive=True),
        "p95_floor_ms": _n(250.0, "and at least this many ms above the baseline's p95"),
        "min_affected_seconds": _i(2, "seconds of the fault the rise must hold", least=1),
        "min_samples": _i(30, "one-second samples per side for the significance test", least=3),
        "alpha": _p(0.05, "significance level"),
    },
    "timeout": {
        "min_client_timeouts": _i(3, "client timeouts before a finding", least=1),
        "min_timeout_spans": _i(3, "timeout spans before a finding", least=1),
        "inversion_tolerance_s": _n(0.5, "slack before a caller's timeout counts as inverted"),
        "long_after_s": _n(1.0, "a callee still working this long after its caller gave up"),
        "min_inversions": _i(2, "inversions before a finding", least=1),
    },
    "slow_recovery": {},
    "pool_exhaustion": {
        "in_use_metric": _t("gauge of connections in use (another target's pool)"),
        "size_metric": _t("gauge of the pool's size"),
        "waiting_metric": _t("gauge of waiters for a connection"),
        "pool_label": _t("the label that names the pool"),
        "min_saturated_seconds": _i(2, "seconds at full use before a finding", least=1),
        "min_stuck_seconds": _i(
            10, "consecutive seconds at full use after the recovery budget", least=1
        ),
        "min_long_waits": _i(3, "long pool waits in traces before a finding", least=1),
        "wait_threshold_ms": _n(500.0, "a pool wait longer than this is long"),
    },
    "retry_amplification": {
        "factor": _n(1.5, "downstream calls per request that count as amplified"),
        "min_traces": _i(3, "traces with retries before a finding", least=1),
        "min_requests": _n(20, "requests the ratio needs"),
        "downstream_promql": _t("counter of calls to the dependency (another target)"),
        "requests_promql": _t("counter of requests the target served"),
    },
    "latency_trend": {
        "warmup_s": _n(60.0, "seconds left out at the start"),
        "min_seconds": _n(300.0, "shortest load judged for a trend"),
        "bucket_s": _i(10, "seconds per point of the trend", least=1),
        "min_bucket_requests": _i(5, "requests a point needs", least=1),
        "alpha": _p(0.05, "significance level"),
        "min_growth_ratio": _n(0.2, "growth over the run that counts"),
        "min_growth_ms": _n(50.0, "and at least this many ms"),
    },
    "memory_growth": {
        "memory_promql": _t("resident memory of the target (another target)"),
        "min_seconds": _n(300.0, "shortest run judged"),
        "step_s": DetectorParam("number", 10.0, "seconds between samples", low=1.0),
        "alpha": _p(0.05, "significance level"),
        "min_growth_ratio": _n(0.1, "growth over the run that counts"),
        "min_growth_mb": _n(20.0, "and at least this many MB"),
        "min_recovery_points": _i(10, "samples of recovery to tell a step from a growth", least=2),
    },
    "cpu_saturation": {
        "min_seconds": _i(3, "seconds above the share before a finding", least=1),
        "share": _share(0.9, "share of the CPU limit that counts as saturated"),
        "throttled": _share(0.2, "share of throttled periods that counts"),
    },
    "connection_limit": {
        "min_seconds": _i(3, "seconds above the share before a finding", least=1),
        "share": _share(0.8, "share of the descriptor or connection limit that counts"),
    },
    "data_loss": {
        "budget_s": _n(60.0, "seconds the read-back may take"),
        "max_reads": _i(2000, "read-back requests at most"),
        "concurrency": _i(4, "read-back requests at once", least=1),
    },
    "phase_comparison": {
        "min_samples": _i(30, "one-second samples per phase", least=3),
        "alpha": _p(0.05, "significance level"),
        "min_effect": _n(0.2, "effect size that counts"),
    },
}
"""Detector kind → parameter name → declaration. ``DETECTOR_KINDS`` are exactly its keys."""


def declared(kind: str, name: str) -> DetectorParam:
    """The declaration of ``kind``'s parameter ``name``; ``KeyError`` for an undeclared one
    (a detector reading a parameter it did not declare is a bug, caught by the tests)."""
    return DETECTOR_PARAMS[kind][name]


def param_problems(kind: str, params: Mapping[str, object]) -> list[Problem]:
    """Unknown names and values of the wrong type or out of range in ``detectors.<kind>.params``, at
    paths relative to ``params``."""
    known = DETECTOR_PARAMS.get(kind, {})
    listed = ", ".join(known) or "none (this detector takes no params)"
    problems: list[Problem] = []
    for name, value in params.items():
        spec = known.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(
                Problem(
                    f"unknown {kind} param {name!r}{hint}",
                    expected=f"one of {listed}",
                    got=repr(name),
                    path=(name,),
                )
            )
            continue
        wrong = spec.problem(value)
        if wrong is not None:
            problems.append(
                Problem(
                    f"invalid value for {kind} param {name!r} ({spec.meaning})",
                    expected=wrong[0],
                    got=wrong[1],
                    path=(name,),
                )
            )
    return problems
