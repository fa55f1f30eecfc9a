"""Regression between two runs of the same experiment: A is the reference, B the candidate.

For each phase (baseline, fault, recovery) and each endpoint (and all endpoints together)
the merged-histogram numbers of A and B are set side by side, and two things are judged:
p95 latency and error rate. A metric *regresses* when

- the Mann-Whitney judgement on the one-second samples (``analysis.statistics.compare``:
  significant and past its effect-size floor) says B is higher AND the merged number moved
  by at least a small practical floor (``latency_floor_ms``, ``error_floor``); or
- whatever the test says, and as the only rule when it is inconclusive (fewer than 30
  one-second samples a side), the merged numbers are worse by the threshold rule AND the
  change is significant against the runs' own noise: p95 higher by more than 25 % AND more
  than 50 ms, with significantly more of B's requests above A's p95 than A's own 5 %
  (one-sided two-proportion z-test over the requests, p < 0.05 divided by the number of
  phase x endpoint rows compared: Bonferroni, since every row is a test); error rate higher
  by more than one percentage point AND significantly so (the same test over errors). (Per-second
  error rates are mostly zeros, where a rank test of medians is blind to errors spread
  thinly; the threshold rule catches those.)

A side with fewer than ``min_requests`` (50) requests is **inconclusive**, never a
regression: a p95 from a few dozen requests moves by one slow request.

The recovery phase is compared from the moment both runs were back in their baseline band
(the transition itself is the recovery-time comparison's to judge). Besides: recovery
(recovered → not recovered, or slower by more than max(5 s, 50 %)),
findings added and removed (by kind and endpoint; an added finding that fails the run is
a regression), and the run status (A passed, B did not). All thresholds live in ``Rules``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from resilience.analysis.data import WindowStats, second_series, window_stats
from resilience.analysis.phases import phased_of_run
from resilience.analysis.statistics import compare, proportion_increase_p
from resilience.errors import ExperimentError
from resilience.histogram import Histogram, lowest_equivalent_us
from resilience.report.summary import finding_endpoints, fmt_ms, fmt_ratio
from resilience.rundir.journal import FindingRecord, JournalData
from resilience.rundir.load import LoadView
from resilience.rundir.reader import RunData, read_run
from resilience.vocabulary import SEVERITIES, Phase, phase_named

PHASES = ("baseline", "fault", "spike", "recovery")
Outcome = Literal["regression", "improvement", "same", "inconclusive", "no data"]


@dataclass(frozen=True)
class Rules:
    """The thresholds of the comparison (see the module docstring)."""

    p95_ratio: float = 0.25
    p95_abs_ms: float = 50.0
    error_rate_pp: float = 0.01
    alpha: float = 0.05
    """The threshold rule for error rates also needs a two-proportion z-test at this level:
    two runs shedding ~33 % of requests differ by a few points by chance alone."""
    latency_floor_ms: float = 10.0
    error_floor: float = 0.002
    recovery_abs_s: float = 5.0
    recovery_ratio: float = 0.5
    min_requests: int = 50
    min_samples: int = 30


@dataclass(frozen=True)
class Judgement:
    outcome: Outcome
    method: Literal["mann-whitney", "threshold", "none"]
    reason: str


@dataclass(frozen=True)
class Side:
    """One run's numbers for a phase and endpoint (latencies in ms)."""

    requests: int
    error_rate: float | None
    p50: float | None
    p95: float | None
    p99: float | None

    @classmethod
    def of(cls, stats: WindowStats) -> Side:
        return cls(stats.requests, stats.error_rate, stats.p50, stats.p95, stats.p99)


@dataclass(frozen=True)
class PhaseDelta:
    phase: str
    endpoint: str | None
    a: Side
    b: Side
    latency: Judgement
    errors: Judgement

    @property
    def regressed(self) -> bool:
        return "regression" in (self.latency.outcome, self.errors.outcome)

    @property
    def where(self) -> str:
        return f"{self.phase} {self.endpoint or 'all endpoints'}"


@dataclass(frozen=True)
class RecoveryDelta:
    a_seconds: float | None
    b_seconds: float | None
    a_recovered: bool | None
    b_recovered: bool | None
    outcome: Outcome
    reason: str

    @property
    def delta_seconds(self) -> float | None:
        if self.a_seconds is None or self.b_seconds is None:
            return None
        return self.b_seconds - self.a_seconds


@dataclass(frozen=True)
class FindingChange:
    kind: str
    endpoint: str
    severity: str
    fails_run: bool
    summary: str


@dataclass(frozen=True)
class FindingGroup:
    """The changes of one finding kind, across the endpoints it concerns (one line each)."""

    kind: str
    endpoints: tuple[str, ...]
    severity: str
    fails_run: bool
    summaries: tuple[str, ...]

    @property
    def where(self) -> str:
        return f" on {', '.join(self.endpoints)}" if self.endpoints else ""


def _severity_rank(severity: str) -> int:
    """info < warning < critical; an unknown name ranks lowest."""
    return next((rank for rank, name in enumerate(SEVERITIES) if name == severity), -1)


def group_by_kind(changes: Sequence[FindingChange]) -> list[FindingGroup]:
    """One group per finding kind, in first-seen order; the worst severity of its members."""
    kinds: dict[str, list[FindingChange]] = {}
    for change in changes:
        kinds.setdefault(change.kind, []).append(change)
    return [
        FindingGroup(
            kind=kind,
            endpoints=tuple(dict.fromkeys(m.endpoint for m in members if m.endpoint)),
            severity=max((m.severity for m in members), key=_severity_rank),
            fails_run=any(m.fails_run for m in members),
            summaries=tuple(dict.fromkeys(m.summary for m in members)),
        )
        for kind, members in kinds.items()
    ]


@dataclass(frozen=True)
class Comparison:
    run_a: str
    run_b: str
    experiment_a: str
    experiment_b: str
    status_a: str
    status_b: str
    deltas: list[PhaseDelta]
    recovery: RecoveryDelta
    findings_added: list[FindingChange]
    findings_removed: list[FindingChange]
    rules: Rules
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[str]:
        """One sentence per regression, in report order."""
        out: list[str] = []
        if self.status_a == "passed" and self.status_b != "passed":
            out.append(f"status: A passed, B {self.status_b}")
        for d in self.deltas:
            if d.latency.outcome == "regression":
                out.append(f"{d.where} p95: {d.latency.reason}")
            if d.errors.outcome == "regression":
                out.append(f"{d.where} error rate: {d.errors.reason}")
        if self.recovery.outcome == "regression":
            out.append(f"recovery: {self.recovery.reason}")
        out.extend(
            f"new finding {g.kind}{g.where} fails the run: {'; '.join(g.summaries)}"
            for g in group_by_kind([f for f in self.findings_added if f.fails_run])
        )
        return out

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["regressed"] = self.regressed
        data["regressions"] = self.regressions
        for key, changes in (
            ("findings_added_by_kind", self.findings_added),
            ("findings_removed_by_kind", self.findings_removed),
        ):
            data[key] = [asdict(g) for g in group_by_kind(changes)]
        clean: dict[str, Any] = _finite(data)
        return clean


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: make them null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _merged(view: LoadView, endpoint: str | None, seconds: Sequence[int]) -> Histogram:
    return view.window(endpoint, seconds)[0]


def _samples(
    view: LoadView, endpoint: str | None, seconds: Sequence[int]
) -> tuple[list[float], list[float]]:
    """One-second p95 (ms) and error-rate samples of the seconds that had requests."""
    series = second_series(view, endpoint, seconds)
    p95 = [v for v in series.p95 if v is not None]
    rates = [series.errors[i] / n for i, n in enumerate(series.requests) if n]
    return p95, rates


def _too_few(a: Side, b: Side, rules: Rules) -> Judgement | None:
    if a.requests == 0 or b.requests == 0:
        return Judgement("no data", "none", "no requests on a side")
    if a.requests < rules.min_requests or b.requests < rules.min_requests:
        return Judgement(
            "inconclusive",
            "none",
            f"fewer than {rules.min_requests} requests on a side "
            f"({a.requests} / {b.requests}): too few to tell a change from noise",
        )
    return None


def tail_shift_p(hist_a: Histogram, hist_b: Histogram, threshold_ms: float) -> float:
    """One-sided p-value that more of B's requests than of A's are at or above
    ``threshold_ms`` (A's p95, so about 5 % of A's): a p95 that moved because the tail really
    grew, not by the chance of a few slow requests."""
    # At or above: above the value just below the threshold's histogram bucket.
    below = lowest_equivalent_us(int(threshold_ms * 1000.0)) - 1
    above_a = hist_a.count_above(below)
    above_b = hist_b.count_above(below)
    return proportion_increase_p(above_a, hist_a.total, above_b, hist_b.total)


def _judge_latency(  # noqa: PLR0911 (one return per rule of the latency judgement)
    a: Side,
    b: Side,
    sa: Sequence[float],
    sb: Sequence[float],
    rules: Rules,
    *,
    tails: tuple[Histogram, Histogram] | None = None,
) -> Judgement:
    if (few := _too_few(a, b, rules)) is not None:
        return few
    if a.p95 is None or b.p95 is None:
        return Judgement("no data", "none", "no latency recorded on a side")
    diff = b.p95 - a.p95
    numbers = f"p95 {fmt_ms(a.p95)} → {fmt_ms(b.p95)}"
    worse = diff > rules.p95_abs_ms and b.p95 > a.p95 * (1 + rules.p95_ratio)
    better = -diff > rules.p95_abs_ms and a.p95 > b.p95 * (1 + rules.p95_ratio)
    if tails is not None:
        hist_a, hist_b = tails
        worse = worse and tail_shift_p(hist_a, hist_b, a.p95) < rules.alpha
        better = better and tail_shift_p(hist_b, hist_a, b.p95) < rules.alpha
    test = compare(sa, sb, min_samples=rules.min_samples)
    if test.verdict == "higher" and diff >= rules.latency_floor_ms:
        return Judgement("regression", "mann-whitney", f"{numbers} (Mann-Whitney {test.reason})")
    if worse:
        return Judgement(
            "regression",
            "threshold",
            f"{numbers} ({_rule_text(rules)}, more requests above the reference's p95 than "
            f"chance allows)",
        )
    if test.verdict == "lower" and -diff >= rules.latency_floor_ms:
        return Judgement("improvement", "mann-whitney", f"{numbers} (Mann-Whitney {test.reason})")
    if better:
        return Judgement("improvement", "threshold", numbers)
    method: Literal["mann-whitney", "threshold"] = (
        "threshold" if test.verdict == "inconclusive" else "mann-whitney"
    )
    return Judgement("same", method, f"{numbers} ({test.reason})")


def _rule_text(rules: Rules) -> str:
    return f"worse by > {rules.p95_ratio:.0%} and > {rules.p95_abs_ms:g} ms"


def _judge_errors(
    a: Side, b: Side, sa: Sequence[float], sb: Sequence[float], rules: Rules
) -> Judgement:
    if (few := _too_few(a, b, rules)) is not None:
        return few
    ra, rb = a.error_rate or 0.0, b.error_rate or 0.0
    diff = rb - ra
    numbers = f"error rate {fmt_ratio(ra)} → {fmt_ratio(rb)}"
    test = compare(sa, sb, min_samples=rules.min_samples)
    if test.verdict == "higher" and diff >= rules.error_floor:
        return Judgement("regression", "mann-whitney", f"{numbers} (Mann-Whitney {test.reason})")
    errors_a = round(ra * a.requests)
    errors_b = round(rb * b.requests)
    worse_p = proportion_increase_p(errors_a, a.requests, errors_b, b.requests)
    better_p = proportion_increase_p(errors_b, b.requests, errors_a, a.requests)
    if diff > rules.error_rate_pp and worse_p < rules.alpha:
        return Judgement(
            "regression",
            "threshold",
            f"{numbers} (worse by > {rules.error_rate_pp * 100:g} percentage points, "
            f"p={worse_p:.2g})",
        )
    if (test.verdict == "lower" and -diff >= rules.error_floor) or (
        -diff > rules.error_rate_pp and better_p < rules.alpha
    ):
        return Judgement(
            "improvement", "mann-whitney" if test.verdict == "lower" else "threshold", numbers
        )
    method: Literal["mann-whitney", "threshold"] = (
        "threshold" if test.verdict == "inconclusive" else "mann-whitney"
    )
    return Judgement("same", method, f"{numbers} ({test.reason})")


def _phase_deltas(
    run_a: RunData, run_b: RunData, rules: Rules, notes: list[str]
) -> list[PhaseDelta]:
    if run_a.load is None or run_b.load is None:
        missing = " and ".join(n for n, r in (("A", run_a), ("B", run_b)) if r.load is None)
        notes.append(f"no load data for {missing}: latency and error rates not compared")
        return []
    va, vb = run_a.load, run_b.load
    endpoints: list[str | None] = [None, *sorted(set(va.endpoints) | set(vb.endpoints))]
    deltas: list[PhaseDelta] = []
    phases_a, phases_b = run_a.phases, run_b.phases
    by_phase_a = phased_of_run(run_a.journal, va, phases_a)
    by_phase_b = phased_of_run(run_b.journal, vb, phases_b)
    # Many rows are tested at once: the threshold rules' tests are held at alpha over the
    # number of rows (Bonferroni), or one row in twenty would "regress" by chance alone.
    rules = replace(rules, alpha=rules.alpha / max(1, len(PHASES) * len(endpoints)))
    for name in PHASES:
        pa, pb = phase_named(phases_a, name), phase_named(phases_b, name)
        if pa is None or pb is None:
            if pa is not None or pb is not None:
                notes.append(f"the {name} phase exists in only one run: not compared")
            continue
        if name == "recovery":
            pa, pb = _after_recovery(pa, pb, run_a, run_b, notes)
        view_a, secs_a = by_phase_a.of(name)
        view_b, secs_b = by_phase_b.of(name)
        secs_a = [s for s in secs_a if s + 0.5 >= pa.start]
        secs_b = [s for s in secs_b if s + 0.5 >= pb.start]
        for endpoint in endpoints:
            a = Side.of(window_stats(view_a, endpoint, secs_a))
            b = Side.of(window_stats(view_b, endpoint, secs_b))
            lat_a, err_a = _samples(view_a, endpoint, secs_a)
            lat_b, err_b = _samples(view_b, endpoint, secs_b)
            tails = (_merged(view_a, endpoint, secs_a), _merged(view_b, endpoint, secs_b))
            deltas.append(
                PhaseDelta(
                    phase=name,
                    endpoint=endpoint,
                    a=a,
                    b=b,
                    latency=_judge_latency(a, b, lat_a, lat_b, rules, tails=tails),
                    errors=_judge_errors(a, b, err_a, err_b, rules),
                )
            )
    return deltas


def _after_recovery(
    pa: Phase, pb: Phase, run_a: RunData, run_b: RunData, notes: list[str]
) -> tuple[Phase, Phase]:
    """The recovery phases from the moment both runs were back in their baseline band.

    The seconds between a heal and recovery are what the recovery-time comparison judges;
    counting their errors again here would call a breaker that closed a second later a
    regression of the whole phase. What is compared is the state the target settled in.
    """
    settled = [
        r.journal.recovery.seconds
        for r in (run_a, run_b)
        if r.journal.recovery.recovered and r.journal.recovery.seconds is not None
    ]
    if len(settled) < 2:
        return pa, pb
    skip = max(settled)
    notes.append(
        f"recovery phases compared from {skip:g} s after the heal, when both had recovered"
    )
    return (
        Phase(pa.name, min(pa.start + skip, pa.end), pa.end),
        Phase(pb.name, min(pb.start + skip, pb.end), pb.end),
    )


def _recovery(ja: JournalData, jb: JournalData, rules: Rules) -> RecoveryDelta:  # noqa: PLR0911 (one return per recovery outcome pair)
    ra, rb = ja.recovery, jb.recovery

    def delta(outcome: Outcome, reason: str) -> RecoveryDelta:
        return RecoveryDelta(ra.seconds, rb.seconds, ra.recovered, rb.recovered, outcome, reason)

    if ra.recovered is None or rb.recovered is None:
        return delta("no data", "recovery was not measured in both runs")
    if ra.recovered and not rb.recovered:
        return delta("regression", f"A recovered in {ra.seconds} s, B did not recover")
    if not ra.recovered and rb.recovered:
        return delta("improvement", f"A did not recover, B recovered in {rb.seconds} s")
    if not ra.recovered:
        return delta("same", "neither run recovered")
    if ra.seconds is None or rb.seconds is None:
        return delta("no data", "recovery seconds missing")
    allowed = max(rules.recovery_abs_s, rules.recovery_ratio * ra.seconds)
    diff = rb.seconds - ra.seconds
    text = f"{ra.seconds:g} s → {rb.seconds:g} s"
    if diff > allowed:
        return delta("regression", f"{text} (slower by more than {allowed:g} s)")
    if -diff > allowed:
        return delta("improvement", text)
    return delta("same", text)


def _finding_keys(findings: Sequence[FindingRecord]) -> dict[tuple[str, str], FindingRecord]:
    keys: dict[tuple[str, str], FindingRecord] = {}
    for f in findings:
        if f.status != "found":
            continue
        for endpoint in finding_endpoints(f) or [""]:
            keys.setdefault((f.kind, endpoint), f)
    return keys


def _changes(
    keys: Sequence[tuple[str, str]], source: dict[tuple[str, str], FindingRecord]
) -> list[FindingChange]:
    changes: list[FindingChange] = []
    for kind, endpoint in keys:
        f = source[(kind, endpoint)]
        changes.append(FindingChange(kind, endpoint, f.severity, f.fails_run, f.summary))
    return changes


def compare_run_data(
    run_a: RunData, run_b: RunData, *, rules: Rules | None = None, force: bool = False
) -> Comparison:
    """Compare two runs already read (see ``compare_runs``)."""
    rules = rules or Rules()
    ja, jb = run_a.journal, run_b.journal
    notes: list[str] = []
    if ja.experiment != jb.experiment:
        if not force:
            raise ExperimentError(
                f"the runs are of different experiments ({ja.experiment!r} in {run_a.run_dir}, "
                f"{jb.experiment!r} in {run_b.run_dir}); use --force to compare anyway"
            )
        notes.append(
            f"different experiments compared with --force: {ja.experiment} vs {jb.experiment}"
        )
    if ja.profile != jb.profile:
        notes.append(f"different profiles: {ja.profile or 'default'} vs {jb.profile or 'default'}")
    for name, journal in (("A", ja), ("B", jb)):
        if journal.status == "running":
            notes.append(f"run {name} has not finished (status running)")
    keys_a, keys_b = _finding_keys(ja.findings), _finding_keys(jb.findings)
    return Comparison(
        run_a=str(run_a.run_dir),
        run_b=str(run_b.run_dir),
        experiment_a=ja.experiment,
        experiment_b=jb.experiment,
        status_a=ja.status,
        status_b=jb.status,
        deltas=_phase_deltas(run_a, run_b, rules, notes),
        recovery=_recovery(ja, jb, rules),
        findings_added=_changes([k for k in keys_b if k not in keys_a], keys_b),
        findings_removed=_changes([k for k in keys_a if k not in keys_b], keys_a),
        rules=rules,
        notes=notes,
    )


def compare_runs(
    a: Path,
    b: Path,
    *,
    load_a: LoadView | None = None,
    load_b: LoadView | None = None,
    rules: Rules | None = None,
    force: bool = False,
) -> Comparison:
    """Compare run directory ``b`` (candidate) against ``a`` (reference).

    Raises ``ExperimentError`` when a directory cannot be read, or when the runs are of
    different experiments and ``force`` is not set.
    """
    run_a = read_run(Path(a), load=load_a)
    run_b = read_run(Path(b), load=load_b)
    return compare_run_data(run_a, run_b, rules=rules, force=force)
